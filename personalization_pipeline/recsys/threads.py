"""Batches ranked on several threads, their results in order.

Ranking a batch is mostly NumPy, SciPy and faiss work that releases the GIL; between a batch's
searches its bookkeeping holds one core, so one thread per core, each searching on one thread
(OpenMP's thread count is per calling thread), keeps every core busy where one thread with a
multi-threaded search leaves a core idle outside the searches.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import faiss

MAX_THREADS = 4  # beyond a few threads the GIL-bound bookkeeping, not the cores, sets the pace
T = TypeVar("T")
R = TypeVar("R")


def ranking_threads() -> int:
    """Threads to rank on: one per core this process may use, at most :data:`MAX_THREADS`."""
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))


def ordered_map(work: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> Iterator[R]:
    """``work(item)`` for each of ``items``, in their order, computed on ``threads`` threads
    (:func:`ranking_threads` when omitted) whose faiss searches run on one thread each; at most
    two items per thread are in flight, so memory stays bounded by a few batches."""
    threads = threads or ranking_threads()
    with ThreadPoolExecutor(threads, initializer=faiss.omp_set_num_threads, initargs=(1,)) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
