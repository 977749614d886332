"""Wall time, CPU time and peak resident memory of a block of work in this process."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux); False where it cannot be."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _peak_mb(reset: bool) -> float:
    """The peak RSS since the reset (VmHWM), or since the process started where none was possible."""
    if reset:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """A dict filled, when the block ends, with its ``wall_seconds``, ``cpu_seconds`` (this
    process) and ``peak_rss_mb`` (the process's high-water mark over the block where Linux allows
    resetting it, else since the process started)."""
    reset = _reset_peak()
    usage: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    try:
        yield usage
    finally:
        usage["wall_seconds"] = round(time.perf_counter() - started, 3)
        usage["cpu_seconds"] = round(time.process_time() - cpu, 3)
        usage["peak_rss_mb"] = round(_peak_mb(reset), 1)
