"""``BENCHMARKS.md``: one section per tier, replaced when that tier is measured again."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ..steps.rerank import RANKER
from .endpoint import EndpointResult
from .run import TierResult

HEADER = """# Benchmarks

Written by `personalization-pipeline bench --tier XS|S|M|L` (generated data, seed 42, default
settings): the nightly then the weekly job (in one process, or under the executor the section
names), each step's wall time, CPU time (process and children, dbt included) and peak RSS
(sampled every 50 ms), the rows it reported writing, then the bare kernels on what the run left,
with the pipeline step / bare kernel ratio.
`bench --tier S --endpoint` loads the endpoint on that tier's published data. Read ratios rather
than absolute times on a shared machine.
"""


def _seconds(value: float) -> str:
    """One decimal from 10 s, two from 0.1 s, three below."""
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def last_job_steps(result: TierResult) -> dict[str, float]:
    """Wall seconds of each step in the last job that ran it and succeeded: the models the kernels load."""
    return {row.step: row.usage.wall_seconds for row in result.steps if row.job != result.failed_job}


def tier_section(result: TierResult, machine: str) -> str:
    """The markdown section of one tier."""
    tier = result.tier
    executor = "" if result.executor == "in_process" else f" ({result.executor} executor)"
    lines = [
        f"## Tier {tier.name}{executor}",
        "",
        f"{tier.users:,} users, {tier.items:,} items, {result.events:,} events; measured {result.measured_at} UTC "
        f"on {machine}, `{result.executor}` executor, rankings over {result.buckets} user bucket(s). Peak RSS of "
        f"the whole run: {result.peak_rss_mb:,.0f} MB.",
        "",
        "| job | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|",
        *(
            f"| {job} | {_seconds(u.wall_seconds)} | {_seconds(u.cpu_seconds)} | {u.peak_rss_mb:,.0f} |"
            for job, u in result.jobs.items()
        ),
        "",
        "| job | step | wall s | CPU s | peak RSS MB | rows out |",
        "|---|---|---|---|---|---|",
        *(
            f"| {row.job} | {row.step} | {_seconds(row.usage.wall_seconds)} | {_seconds(row.usage.cpu_seconds)} | "
            f"{row.usage.peak_rss_mb:,.0f} | {'' if row.rows_out is None else f'{row.rows_out:,}'} |"
            for row in result.steps
        ),
        "",
    ]
    if result.pending:
        still = ", ".join(result.pending)
        lines += [f"**Written while the run went on**: still to run then: {still}.", ""]
        return "\n".join(lines)
    lines += [
        "| bare kernel | what | kernel s | pipeline step | step s (last job) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    last = last_job_steps(result)
    for kernel in result.kernels:
        step = last.get(kernel.step)
        ratio = f"{step / kernel.seconds:.1f}" if step is not None and kernel.seconds > 0 else ""
        step_text = "" if step is None else _seconds(step)
        lines.append(
            f"| {kernel.name} | {kernel.what} | {_seconds(kernel.seconds)} | {kernel.step} | {step_text} | {ratio} |"
        )
    lines += [
        "",
        *(
            [f"**The {result.failed_job} job failed** (the steps above are what it ran): {result.failure}", ""]
            if result.failed_job
            else []
        ),
        "The kernels load the models of the last job that succeeded; its `user_rankings` ranked with "
        f"`{result.serving_model}`, so the kernel beside it is "
        + (
            "LightGBM's predict over the candidate rows, and beside that the personal models' top-N of "
            "candidates per scope plus that predict: the floor of re-ranking."
            if result.serving_model == RANKER
            else "that model's top-N."
        ),
        "",
    ]
    return "\n".join(lines)


_GENERATORS = {"wrk": "wrk, one thread", "python": "one asyncio process"}


def endpoint_section(tier: str, result: EndpointResult, machine: str, measured_at: datetime) -> str:
    """The markdown section of an endpoint load test on ``tier``'s published data."""
    load = result.load
    share = load.rate / result.bare_rate if result.bare_rate else 0.0
    return "\n".join(
        [
            f"## Endpoint (tier {tier} data)",
            "",
            f"`GET /v1/rankings/{{scope}}?limit=10`, {result.connections} concurrent keep-alive clients on loopback "
            f"({_GENERATORS[result.generator]}), {result.users:,} distinct users' tokens, {load.seconds:.0f} s after "
            "a 2 s warm-up; the endpoint started as `serve` starts it (`PERSONALIZATION_API_WORKERS` workers, default "
            f"the core count); measured {measured_at} UTC on {machine}.",
            "",
            "| requests | errors | req/s | p50 ms | p95 ms | p99 ms | bare PK lookups/s (1 connection, prepared) "
            "| endpoint / bare |",
            "|---|---|---|---|---|---|---|---|",
            f"| {load.requests:,} | {load.errors:,} | {load.rate:,.0f} | {load.p50_ms:.1f} | {load.p95_ms:.1f} | "
            f"{load.p99_ms:.1f} | {result.bare_rate:,.0f} | {share:.0%} |",
            "",
        ]
    )


ORDER = ["Tier XS", "Tier S", "Tier M", "Tier L"]


def write_report(path: Path, section: str) -> None:
    """Put ``section`` (a markdown text opening with its ``## `` title) into ``path`` (created
    with its header), replacing the section of the same title; tiers in size order (a tier run under
    another executor beside it), then the rest."""
    text = path.read_text() if path.exists() else HEADER
    sections: dict[str, str] = {}
    for match in re.finditer(r"(?ms)^## (.+?)\n.*?(?=^## |\Z)", text):
        sections[match.group(1)] = match.group(0).rstrip() + "\n"
    title = section.split("\n", 1)[0].removeprefix("## ")
    sections[title] = section.rstrip() + "\n"
    head = text.split("\n## ", 1)[0].rstrip() + "\n"
    base = {t: t.split(" (")[0] for t in sections}  # "Tier S (multiprocess executor)" sorts with "Tier S"
    ordered = sorted(sections, key=lambda t: (ORDER.index(base[t]) if base[t] in ORDER else len(ORDER), t))
    path.write_text(head + "\n" + "\n".join(sections[t] for t in ordered))
