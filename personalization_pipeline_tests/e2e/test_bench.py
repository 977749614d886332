"""``personalization-pipeline bench`` on the smallest tier: the report it writes describes the runs
it made (no timing is asserted: CI machines vary)."""

from __future__ import annotations

import re
import shutil

import duckdb
import psycopg
import pytest

from personalization_pipeline.bench.kernels import PER_USER_FRAMES
from personalization_pipeline.bench.tiers import TIERS
from personalization_pipeline.cli import main


def _table(section: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header row starts with ``header``."""
    lines = section.split(header, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_bench_runs_both_jobs_measures_every_step_and_times_the_kernels(tmp_path, clean_pg, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_TUNING_MAX_TRIALS", "1")
    out, workdir = tmp_path / "BENCHMARKS.md", tmp_path / "xs"
    assert (
        main(["bench", "--tier", "XS", "--out", str(out), "--workdir", str(workdir), "--database-url", clean_pg]) == 0
    )
    section = out.read_text().split("## Tier XS\n", 1)[1]
    tier = TIERS["XS"]
    assert f"{tier.users:,} users, {tier.items:,} items" in section
    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        events = con.execute("SELECT count(*) FROM raw_interactions").fetchone()[0]
        ranked = con.execute("SELECT count(*) FROM user_rankings").fetchone()[0]
        subjects = con.execute("SELECT count(*) FROM user_features").fetchone()[0]
    assert re.search(rf"\b{events:,} events", section)  # every generated event was loaded
    steps = {(row[0], row[1]): row for row in _table(section, "| job | step |")}
    for job, step in [
        ("nightly", "raw_tables"),
        ("nightly", "dbt_models"),
        ("nightly", "user_rankings"),
        ("nightly", "serving_tables"),
        ("weekly", "tuned_settings"),
        ("weekly", "per_user_models"),
    ]:
        wall, cpu, rss = (float(v.replace(",", "")) for v in steps[job, step][2:5])
        assert wall > 0 and cpu >= 0 and rss > 50  # a Python process with pandas loaded holds more than 50 MB
    assert ("weekly", "raw_tables") not in steps  # the weekly job does not re-ingest
    assert steps["weekly", "user_rankings"][5] == f"{ranked:,}"  # rows out: what the step wrote
    kernels = {row[0]: row for row in _table(section, "| bare kernel |")}
    reranked = "re-ranker predict" in kernels  # then also its floor: the base models' top-N of candidates + predict
    assert {"ALS fit", "publish COPY", "similar-user search"} <= set(kernels) and len(kernels) == 4 + reranked
    if reranked:
        assert float(kernels["candidates + predict"][2]) >= float(kernels["re-ranker predict"][2])
    searched = re.fullmatch(r"faiss flat, ([\d,]+) users", kernels["similar-user search"][1])
    assert searched and 0 < int(searched.group(1).replace(",", "")) <= subjects  # ALS factors of the weekly's subjects
    with psycopg.connect(clean_pg) as conn:
        served = sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in PER_USER_FRAMES.values())
    assert kernels["publish COPY"][1].startswith(f"{served:,} per-user rows")  # the kernel copies what was published
    for row in kernels.values():
        kernel, step = float(row[2]), float(row[4].replace(",", ""))
        if kernel >= 0.1:  # shown to two decimals at least: the ratio is the step's time over the kernel's
            assert float(row[5]) == pytest.approx(step / kernel, rel=0.1)

    # the endpoint under load on what the tier published, and the bare lookups beside it: the asyncio
    # client, then the default generator (wrk where it is installed), each replacing the section
    args = ["bench", "--tier", "XS", "--endpoint", "--seconds", "2", "--users", "50", "--connections", "4"]
    args += ["--out", str(out), "--workdir", str(workdir), "--database-url", clean_pg]
    assert main([*args, "--load-generator", "python"]) == 0
    assert "on loopback (one asyncio process)" in out.read_text()
    assert main(args) == 0
    generator = "wrk, one thread" if shutil.which("wrk") else "one asyncio process"
    endpoint = out.read_text().split("## Endpoint (tier XS data)\n", 1)[1]
    assert f"on loopback ({generator})" in endpoint and out.read_text().count("## Endpoint (tier XS data)") == 1
    assert "## Tier XS" in out.read_text()  # the tier's section is kept
    distinct = re.search(r"([\d,]+) distinct users' tokens", endpoint)
    assert distinct and 0 < int(distinct.group(1)) <= 50 and "4 concurrent" in endpoint  # 50 (user, scope) rows
    ((requests, errors, rate, p50, p95, p99, bare, share),) = _table(endpoint, "| requests |")
    assert int(requests.replace(",", "")) > 0 and float(rate.replace(",", "")) > 0 and errors == "0"  # all 200s
    assert float(p50) <= float(p95) <= float(p99)
    assert float(bare.replace(",", "")) > 0 and share.endswith("%")
