"""Nearest neighbours of users: planted clusters, threshold, K, zero vectors, exact against approximate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.similarity import (
    NeighbourIndex,
    SearchParams,
    approximate_recall,
    nearest_neighbours,
)


def clusters(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Users a00.. near direction (1, 0, 0, 0), b00.. near (0, 1, 0, 0), c00.. near (0, 0, 1, 1)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32)
    ids, vectors = [], []
    for c, prefix in enumerate("abc"):
        for i in range(n // 3):
            ids.append(f"{prefix}{i:02d}")
            vectors.append(centres[c] * rng.uniform(0.5, 3) + rng.normal(scale=0.05, size=4))
    return np.array(ids), np.array(vectors, dtype=np.float32)


def test_neighbours_come_from_the_planted_cluster_within_k_and_threshold():
    ids, vectors = clusters()
    found = nearest_neighbours(ids, vectors, SearchParams(k=5, threshold=0.5))
    assert (found["user_id"].str[0] == found["similar_user_id"].str[0]).all()
    assert (found.groupby("user_id").size() == 5).all() and set(found["user_id"]) == set(ids)
    assert (found["user_id"] != found["similar_user_id"]).all() and (found["similarity_score"] >= 0.5).all()
    ordered = found.sort_values(["user_id", "similarity_score", "similar_user_id"], ascending=[True, False, True])
    assert ordered.reset_index(drop=True).equals(found)
    everyone = nearest_neighbours(ids, vectors, SearchParams(k=30, threshold=0.9))
    assert everyone.groupby("user_id").size().max() == 19  # the whole cluster, nobody across (cosine ~0)


def test_ids_out_of_order_with_tied_scores_come_out_by_user_then_neighbour_id():
    ids = np.array(["u5", "u1", "u4", "u2", "u3", "v1"])
    vectors = np.array([[1, 0]] * 5 + [[0, 1]], dtype=np.float32)  # u1..u5 tie exactly, v1 apart
    found = nearest_neighbours(ids, vectors, SearchParams(k=5, threshold=0.5))
    pairs = list(zip(found["user_id"], found["similar_user_id"], strict=True))
    users = ["u1", "u2", "u3", "u4", "u5"]
    assert pairs == [(user, other) for user in users for other in users if other != user]


def test_zero_vectors_and_high_thresholds_leave_users_out():
    ids, vectors = clusters(12)
    vectors[0] = 0.0
    found = nearest_neighbours(ids, vectors, SearchParams(k=3, threshold=0.5))
    assert ids[0] not in set(found["user_id"]) | set(found["similar_user_id"])
    assert nearest_neighbours(ids, vectors, SearchParams(k=3, threshold=1.01)).empty
    assert nearest_neighbours(ids[:1], vectors[:1]).empty


def test_the_graph_search_agrees_with_the_exact_one_and_is_deterministic():
    rng = np.random.default_rng(4)
    ids = np.array([f"u{i:04d}" for i in range(3000)])
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    graph = SearchParams(k=10, threshold=-1.0, exact_max=0)
    first, second = nearest_neighbours(ids, vectors, graph), nearest_neighbours(ids, vectors, graph)
    assert first.equals(second)
    exact = nearest_neighbours(ids, vectors, SearchParams(k=10, threshold=-1.0))
    overlap = len(first.merge(exact, on=["user_id", "similar_user_id"])) / len(exact)
    assert overlap >= 0.95
    assert approximate_recall(NeighbourIndex.build(ids, vectors, graph), graph, sample=200) == pytest.approx(
        overlap, abs=0.03
    )


@pytest.mark.parametrize("exact_max", [0, 10_000], ids=["graph", "exact"])
def test_a_saved_index_searched_in_parts_gives_the_whole_search(tmp_path, exact_max):
    rng = np.random.default_rng(5)
    ids = np.array([f"u{i:04d}" for i in range(1500)])
    vectors = rng.normal(size=(1500, 8)).astype(np.float32)
    vectors[7] = 0.0  # left out of the index: positions shift past it
    params = SearchParams(k=10, threshold=0.2, exact_max=exact_max)
    whole = nearest_neighbours(ids, vectors, params)
    NeighbourIndex.build(ids, vectors, params).save(tmp_path)
    loaded = NeighbourIndex.load(tmp_path, params)  # as a bucket's process reads it
    assert len(loaded.ids) == 1499 and ids[7] not in set(loaded.ids)
    parts = [loaded.search(rows, params) for rows in np.array_split(rng.permutation(len(loaded.ids)), 3)]
    joined = pd.concat(parts).sort_values(
        ["user_id", "similarity_score", "similar_user_id"], ascending=[True, False, True]
    )
    pd.testing.assert_frame_equal(joined.reset_index(drop=True), whole, check_exact=True)
    assert loaded.search(np.array([], dtype=np.int64), params).empty
