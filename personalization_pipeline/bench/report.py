"""``BENCHMARKS.md``: one section per tier, replaced when that tier is measured again."""

from __future__ import annotations

import re
from pathlib import Path

from ..steps.rerank import RANKER
from .run import TierResult

HEADER = """# Benchmarks

Written by `personalization-pipeline bench --tier XS|S|M|L` (generated data, seed 42, default
settings): the nightly then the weekly job in one process, each step's wall time, CPU time
(process and children, dbt included) and peak RSS (sampled every 50 ms), the rows it reported
writing, then the bare kernels on what the run left, with the pipeline step / bare kernel ratio.
Read ratios rather than absolute times on a shared machine.
"""


def _seconds(value: float) -> str:
    """One decimal from 10 s, two from 0.1 s, three below."""
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def tier_section(result: TierResult, machine: str) -> str:
    """The markdown section of one tier."""
    tier = result.tier
    lines = [
        f"## Tier {tier.name}",
        "",
        f"{tier.users:,} users, {tier.items:,} items, {result.events:,} events; measured {result.measured_at} UTC "
        f"on {machine}. Peak RSS of the whole run: {result.peak_rss_mb:,.0f} MB.",
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
        "| bare kernel | what | kernel s | pipeline step | step s (nightly) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    nightly = {row.step: row.usage.wall_seconds for row in result.steps if row.job == "nightly"}
    for kernel in result.kernels:
        step = nightly.get(kernel.step)
        ratio = f"{step / kernel.seconds:.1f}" if step is not None and kernel.seconds > 0 else ""
        step_text = "" if step is None else _seconds(step)
        lines.append(
            f"| {kernel.name} | {kernel.what} | {_seconds(kernel.seconds)} | {kernel.step} | {step_text} | {ratio} |"
        )
    lines += [
        "",
        f"`user_rankings` ranked with `{result.serving_model}` (the run's serving choice), so its kernel is "
        + ("LightGBM's predict over the candidate rows." if result.serving_model == RANKER else "that model's top-N."),
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, result: TierResult, machine: str) -> None:
    """Put the tier's section into ``path`` (created with its header), replacing an older one and
    keeping the tiers in XS, S, M, L order."""
    text = path.read_text() if path.exists() else HEADER
    sections: dict[str, str] = {}
    for match in re.finditer(r"(?ms)^## Tier (\w+)\n.*?(?=^## Tier |\Z)", text):
        sections[match.group(1)] = match.group(0).rstrip() + "\n"
    sections[result.tier.name] = tier_section(result, machine)
    head = text.split("## Tier ", 1)[0].rstrip() + "\n"
    order = ["XS", "S", "M", "L"]
    body = "\n".join(sections[name] for name in sorted(sections, key=lambda n: order.index(n) if n in order else 9))
    path.write_text(head + "\n" + body)
