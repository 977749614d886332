"""The benchmark's pure parts: a step's share of sampled resource use, and the report's sections."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime

import pytest

from personalization_pipeline.bench.kernels import KernelTime, reranking_floor
from personalization_pipeline.bench.report import tier_section, write_report
from personalization_pipeline.bench.run import StepRow, TierResult
from personalization_pipeline.bench.tiers import TIERS
from personalization_pipeline.bench.usage import Sampler, Usage, step_usage
from personalization_pipeline.runner import asset_spans

MB = 2**20


def test_a_steps_usage_is_cut_from_the_samples_at_its_start_and_end():
    samples = [(0.0, 0.0, 100 * MB), (1.0, 1.0, 300 * MB), (2.0, 1.5, 200 * MB), (3.0, 3.5, 150 * MB)]
    usage = step_usage(samples, [(0.5, 2.5)])
    assert usage.wall_seconds == 2.0
    assert usage.cpu_seconds == pytest.approx(2.5 - 0.5)  # cpu 0.5 at t 0.5, 2.5 at t 2.5 (interpolated)
    assert usage.peak_rss_mb == 300  # the samples inside [0.5, 2.5]
    short = step_usage(samples, [(2.9, 2.95)])  # no sample inside: the nearest one
    assert short.peak_rss_mb == 150 and short.cpu_seconds == pytest.approx(0.1)


def test_a_steps_usage_leaves_out_what_ran_between_its_spans():
    """A graph-backed asset whose steps ran with another step between them: the gap (here the
    busiest second, and the highest memory) is not its time."""
    samples = [(0.0, 0.0, 100 * MB), (1.0, 0.5, 120 * MB), (2.0, 2.5, 900 * MB), (3.0, 3.0, 110 * MB)]
    usage = step_usage(samples, [(0.0, 1.0), (2.2, 3.0)])
    assert usage.wall_seconds == pytest.approx(1.8)
    assert usage.cpu_seconds == pytest.approx(0.5 + (3.0 - 2.6))  # cpu at t 2.2 interpolates to 2.6
    assert usage.peak_rss_mb == 120


def test_a_graph_assets_steps_count_as_one_without_the_steps_run_between_them():
    spans = {
        "similar_users.plan": (0.0, 10.0),
        "offline_eval": (10.0, 80.0),  # run by the executor between the asset's steps
        "similar_users.search[bucket_0]": (80.0, 120.0),
        "similar_users.search[bucket_1]": (85.0, 130.0),  # parallel buckets overlap: merged
        "similar_users.load": (130.0, 150.0),  # touching: merged
        "per_user_models": (150.0, 160.0),
    }
    assert asset_spans(spans) == {
        "similar_users": [(0.0, 10.0), (80.0, 150.0)],
        "offline_eval": [(10.0, 80.0)],
        "per_user_models": [(150.0, 160.0)],
    }


def test_the_sampler_sees_this_process_and_its_children_from_outside():
    """CPU spent here and a child's memory show in the samples, taken by a process of its own
    (this one runs no sampling thread), ending with a sample taken at the stop."""
    sampler, threads = Sampler(interval=0.05), threading.active_count()
    sampler.start()
    assert threading.active_count() == threads
    while not sampler.samples:  # the sampler's process is up
        time.sleep(0.01)
    allocate = "import sys; b = b'x' * (300 * 2**20); print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", allocate], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        busy_until = time.process_time() + 0.5
        while time.process_time() < busy_until:
            pass
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(0.3)  # samples of the child's memory
        seen_so_far = sampler.samples
    finally:
        child.communicate(b"")
    samples = sampler.stop()
    assert len(seen_so_far) >= 5 and samples[: len(seen_so_far)] == seen_so_far
    times, cpu, rss = zip(*samples, strict=True)
    assert list(times) == sorted(times) and cpu[-1] - cpu[0] >= 0.4
    assert max(rss) - rss[0] >= 250 * MB  # the child's 300 MB
    assert rss[-1] < max(rss) - 250 * MB  # the last sample, after the child ended


def _result(tier: str, wall: float) -> TierResult:
    usage = Usage(wall, wall / 2, 512)
    return TierResult(
        TIERS[tier],
        1234,
        {"nightly": usage, "weekly": usage},
        [StepRow("nightly", "als_model", usage, None), StepRow("nightly", "user_rankings", usage, 4321)],
        [KernelTime("ALS fit", "als_model", wall / 4, "implicit"), KernelTime("copy", "serving_tables", 1, "x")],
        600,
        "ease",
        datetime(2026, 1, 1),
    )


def test_the_report_keeps_one_section_per_tier_in_size_order(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    write_report(out, tier_section(_result("S", 8.0), "a machine"))
    write_report(out, "## Endpoint (tier S data)\n\nfigures\n")
    write_report(out, tier_section(_result("XS", 2.0), "a machine"))
    write_report(out, tier_section(_result("S", 4.0), "another machine"))  # measured again: replaced
    text = out.read_text()
    assert text.startswith("# Benchmarks") and text.count("## Tier S\n") == 1 and text.count("## Tier XS\n") == 1
    assert text.index("## Tier XS") < text.index("## Tier S\n") < text.index("## Endpoint (tier S data)\n\nfigures")
    section = text.split("## Tier S\n")[1].split("## Endpoint")[0]
    assert "another machine" in section and "a machine." not in section
    assert "| ALS fit | implicit | 1.00 | als_model | 4.00 | 4.0 |" in section  # step / kernel
    assert "| copy | x | 1.00 | serving_tables |  |  |" in section  # a step the run did not report
    assert "| nightly | user_rankings | 4.00 | 2.00 | 512 | 4,321 |" in section
    assert "another machine, `in_process` executor, rankings over 1 user bucket(s)." in section


def test_a_tier_under_another_executor_has_its_own_section_beside_the_tier(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    write_report(out, "## Endpoint (tier S data)\n\nfigures\n")
    write_report(out, tier_section(_result("S", 8.0), "a machine"))
    write_report(out, tier_section(_result("M", 8.0), "a machine"))
    write_report(out, tier_section(replace(_result("S", 6.0), executor="multiprocess", buckets=2), "a machine"))
    text = out.read_text()
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles == ["## Tier S", "## Tier S (multiprocess executor)", "## Tier M", "## Endpoint (tier S data)"]
    assert "`multiprocess` executor, rankings over 2 user bucket(s)" in text.split("## Tier S (multiprocess")[1]


def test_a_failed_later_job_is_reported_with_the_steps_it_ran_and_kept_out_of_the_ratios(tmp_path):
    usage = Usage(30.0, 15.0, 512)
    failed = replace(
        _result("S", 8.0),
        steps=[
            StepRow("nightly", "als_model", Usage(8.0, 4.0, 512), None),
            StepRow("weekly", "als_model", usage, None),  # the failed job's: not beside the kernel
        ],
        failed_job="weekly",
        failure="per_user_models: out of memory",
    )
    out = tmp_path / "BENCHMARKS.md"
    write_report(out, tier_section(failed, "a machine"))
    section = out.read_text().split("## Tier S\n")[1]
    assert "| weekly | als_model | 30.0 | 15.0 | 512 |  |" in section
    assert "| ALS fit | implicit | 2.00 | als_model | 8.00 | 4.0 |" in section
    assert "**The weekly job failed** (the steps above are what it ran): per_user_models: out of memory" in section
    assert "failed" not in tier_section(_result("S", 8.0), "a machine")


def test_a_report_written_while_the_run_goes_on_says_what_is_still_to_run(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    so_far = replace(_result("L", 8.0), jobs={"nightly": Usage(8.0, 4.0, 512)}, kernels=[], pending=("weekly",))
    write_report(out, tier_section(so_far, "a machine"))
    section = out.read_text().split("## Tier L\n")[1]
    assert "| nightly | user_rankings | 8.00 | 4.00 | 512 | 4,321 |" in section
    assert "**Written while the run went on**: still to run then: weekly." in section
    assert "bare kernel" not in section  # no empty kernel table, no claim about the kernels
    write_report(out, tier_section(_result("L", 8.0), "a machine"))  # the finished run replaces it
    assert "still to run" not in out.read_text() and "| ALS fit | implicit |" in out.read_text()


def test_the_floor_of_re_ranking_adds_the_personal_models_top_n_to_the_predict():
    predict = KernelTime("re-ranker predict", "user_rankings", 2.5, "LightGBM, 10 rows x 3 features")
    sources = [
        KernelTime("top-N scoring", "user_rankings", 4.0, "als flat index search, 5 users x 2 scopes"),
        KernelTime("top-N scoring", "user_rankings", 1.5, "ease dense partial sort, 5 users x 2 scopes"),
    ]
    floor = reranking_floor(predict, sources)
    assert floor.step == "user_rankings" and floor.seconds == pytest.approx(8.0)
    assert floor.what == "top-N of als + ease, then the predict above"
