"""Batches ranked on several threads: results in order, bounded work in flight, one-threaded searches."""

from __future__ import annotations

import time

import faiss
import pytest

from personalization_pipeline.recsys.threads import ordered_map


def test_results_come_in_order_with_at_most_two_items_per_thread_pulled_ahead():
    pulled = []

    def items():
        for i in range(20):
            pulled.append(i)
            yield i

    def work(i: int) -> tuple[int, int]:
        time.sleep(0.001 * (20 - i))  # later items finish first
        return i, faiss.omp_get_max_threads()

    callers = faiss.omp_get_max_threads()
    results = ordered_map(work, items(), threads=2)
    first = next(results)
    assert first == (0, 1) and len(pulled) == 4  # searches on one thread; two items per thread in flight
    rest = list(results)
    assert [i for i, _ in rest] == list(range(1, 20)) and {t for _, t in rest} == {1}
    assert faiss.omp_get_max_threads() == callers  # the caller's own count untouched


def test_an_error_in_a_batch_reaches_the_caller():
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("batch 3")
        return i

    results = ordered_map(work, range(10), threads=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="batch 3"):
        next(results)
