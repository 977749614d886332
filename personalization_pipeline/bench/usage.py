"""Resource use of a process tree over time, and its share per pipeline step.

A :class:`Sampler` thread records, every ``interval`` seconds, the resident memory and the CPU
time of this process and its children (dbt runs as one). :func:`step_usage` cuts the samples at
each step's start and end: wall time, CPU time, peak RSS. Sampling can miss a peak shorter than
the interval; the process's own high-water mark bounds the run as a whole.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import psutil


@dataclass(frozen=True)
class Usage:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float


class Sampler(threading.Thread):
    """Samples (time, cpu seconds, rss bytes) of this process tree until :meth:`stop`."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []
        self._done = threading.Event()
        self._me = psutil.Process()
        self._finished_children_cpu = 0.0

    def sample(self) -> tuple[float, float, float]:
        cpu = self._me.cpu_times()
        total_cpu = cpu.user + cpu.system + cpu.children_user + cpu.children_system
        rss = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                child_cpu = child.cpu_times()
                total_cpu += child_cpu.user + child_cpu.system
                rss += child.memory_info().rss
            except psutil.Error:  # it ended between the listing and the read
                continue
        return time.time(), total_cpu, float(rss)

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append(self.sample())
            self._done.wait(self.interval)

    def stop(self) -> list[tuple[float, float, float]]:
        self._done.set()
        self.join()
        self.samples.append(self.sample())
        return self.samples


def step_usage(samples: list[tuple[float, float, float]], start: float, end: float) -> Usage:
    """Wall time of [start, end], CPU time over it (interpolated between samples) and the peak RSS
    of the samples inside it (the nearest sample when none falls inside)."""
    times, cpu, rss = (np.asarray(column, dtype=np.float64) for column in zip(*samples, strict=True))
    spent = float(np.interp(end, times, cpu) - np.interp(start, times, cpu))
    inside = (times >= start) & (times <= end)
    peak = rss[inside].max() if inside.any() else rss[np.abs(times - (start + end) / 2).argmin()]
    return Usage(end - start, max(spent, 0.0), float(peak) / 2**20)
