"""Resource use of a process tree over time, and its share per pipeline step.

A :class:`Sampler` records, every ``interval`` seconds, the resident memory and the CPU time of
this process and its children (dbt runs as one) from a process of its own: a sampling thread in
the measured process took its interpreter lock often enough to make NumPy- and Python-heavy
steps up to twice as slow as without it. :func:`step_usage` cuts the samples at each step's
spans: wall time, CPU time, peak RSS. Sampling can miss a peak shorter than the
interval; the process's own high-water mark bounds the run as a whole.

``python -m personalization_pipeline.bench.usage PID INTERVAL`` is that process: it prints one
``time cpu rss`` line per sample of PID's tree (itself left out) until its standard input closes,
then a last one.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

Sample = tuple[float, float, float]
"""(epoch seconds, CPU seconds of the tree, resident bytes of the tree)."""


@dataclass(frozen=True)
class Usage:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def sample_tree(root: psutil.Process, skip: int | None = None) -> Sample:
    """One sample of ``root`` and its children (``skip``: a child pid left out)."""
    cpu = root.cpu_times()
    total_cpu = cpu.user + cpu.system + cpu.children_user + cpu.children_system
    rss = root.memory_info().rss
    for child in root.children(recursive=True):
        if child.pid == skip:
            continue
        try:
            child_cpu = child.cpu_times()
            total_cpu += child_cpu.user + child_cpu.system
            rss += child.memory_info().rss
        except psutil.Error:  # it ended between the listing and the read
            continue
    return time.time(), total_cpu, float(rss)


class Sampler:
    """Samples this process tree from a separate process until :meth:`stop`; ``samples`` so far."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        handle, name = tempfile.mkstemp(prefix="bench-samples-", suffix=".txt")
        os.close(handle)  # the sampling process writes the file
        self._file = Path(name)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._file.open("wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(os.getpid()), str(self.interval)],
                stdin=subprocess.PIPE,
                stdout=out,
            )

    @property
    def samples(self) -> list[Sample]:
        lines = self._file.read_text().split("\n")[:-1]  # the last may be half written
        return [(float(t), float(c), float(r)) for t, c, r in (line.split() for line in lines)]

    def stop(self) -> list[Sample]:
        """Stop sampling (after a last sample); every sample."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait()
        samples = self.samples
        self._file.unlink(missing_ok=True)
        return samples


def _sample_until_closed(pid: int, interval: float) -> None:
    root, me = psutil.Process(pid), os.getpid()
    while True:
        closed = bool(select.select([sys.stdin], [], [], interval)[0])  # readable: end of input
        t, cpu, rss = sample_tree(root, skip=me)
        print(f"{t:.3f} {cpu:.3f} {rss:.0f}", flush=True)
        if closed:
            return


def step_usage(samples: list[Sample], spans: Sequence[tuple[float, float]]) -> Usage:
    """Wall time of the (disjoint) ``spans``, CPU time over them (interpolated between samples)
    and the peak RSS of the samples inside them (the nearest sample when none falls inside)."""
    times, cpu, rss = (np.asarray(column, dtype=np.float64) for column in zip(*samples, strict=True))
    wall = sum(end - start for start, end in spans)
    spent = sum(float(np.interp(end, times, cpu) - np.interp(start, times, cpu)) for start, end in spans)
    inside = np.zeros(len(times), dtype=bool)
    for start, end in spans:
        inside |= (times >= start) & (times <= end)
    if inside.any():
        peak = rss[inside].max()
    else:
        middles = np.array([(start + end) / 2 for start, end in spans])
        peak = rss[np.abs(times[:, None] - middles[None, :]).min(axis=1).argmin()]
    return Usage(wall, max(spent, 0.0), float(peak) / 2**20)


if __name__ == "__main__":
    _sample_until_closed(int(sys.argv[1]), float(sys.argv[2]))
