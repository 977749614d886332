"""The terminal's view of a run: each step as it starts and finishes, with its elapsed time, rows
and peak memory, failed checks and causes, under a status line naming the steps running."""

from __future__ import annotations

import time

import dagster as dg
from rich.console import Console
from rich.status import Status

from .runner import root_cause

_Type = dg.DagsterEventType


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s" if minutes else f"{rest:.1f}s"


class StepProgress:
    """An ``on_event`` for :func:`~.runner.run_job` that prints to ``console`` and keeps ``status``
    current."""

    def __init__(self, console: Console, status: Status, job: str) -> None:
        self.console, self.status, self.job = console, status, job
        self.began = time.monotonic()
        self.running: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self.peak_mb: dict[str, float] = {}
        self.finished = 0

    def __call__(self, event: dg.DagsterEvent) -> None:
        step, kind = event.step_key, event.event_type
        if kind == _Type.STEP_START and step:
            self.running[step] = time.monotonic()
            self.console.print(f"  [dim]started[/]  {step}")
        elif kind == _Type.ASSET_MATERIALIZATION and step:
            metadata = event.step_materialization_data.materialization.metadata
            if isinstance(count := getattr(metadata.get("dagster/row_count"), "value", None), int):
                self.rows[step] = self.rows.get(step, 0) + count
            if isinstance(peak := getattr(metadata.get("peak_rss_mb"), "value", None), int | float):
                self.peak_mb[step] = max(self.peak_mb.get(step, 0.0), float(peak))
        elif kind == _Type.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if not check.passed:
                name = f"{check.asset_key.to_user_string()}.{check.check_name}"
                self.console.print(f"  [red]check failed[/] {name}: {check.description or ''}")
        elif kind in (_Type.STEP_SUCCESS, _Type.STEP_FAILURE, _Type.STEP_SKIPPED, _Type.STEP_UP_FOR_RETRY) and step:
            self._finish(step, event)
        self._refresh()

    def _finish(self, step: str, event: dg.DagsterEvent) -> None:
        seconds = time.monotonic() - self.running.pop(step, time.monotonic())
        kind = event.event_type
        if kind == _Type.STEP_FAILURE:
            self.console.print(f"  [red bold]failed[/]   {step} after {_elapsed(seconds)}: {root_cause(event)}")
        elif kind == _Type.STEP_UP_FOR_RETRY:
            self.console.print(f"  [yellow]retrying[/] {step} after {_elapsed(seconds)}: {root_cause(event)}")
        elif kind == _Type.STEP_SKIPPED:
            self.console.print(f"  [dim]skipped[/]  {step}")
        else:
            self.finished += 1
            details = [f"{self.rows[step]:,} rows"] if step in self.rows else []
            details += [f"peak {self.peak_mb[step]:,.0f} MB"] if step in self.peak_mb else []
            suffix = f"  [dim]{', '.join(details)}[/]" if details else ""
            self.console.print(f"  [green]done[/]     {step}  {_elapsed(seconds)}{suffix}")

    def _refresh(self) -> None:
        running = ", ".join(self.running) or "-"
        total = _elapsed(time.monotonic() - self.began)
        self.status.update(f"{self.job}: {self.finished} steps done, running {running} ({total})")
