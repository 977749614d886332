"""The ranking history read from the warehouse: DuckDB codes the ids and orders the pairs, and the
matrix equals the one built from the signals frame in pandas."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.recsys.matrices import InteractionMatrix, engaged_rows
from personalization_pipeline.steps.inputs import read_history, read_signals
from personalization_pipeline.steps.splitting import read_evaluation_split, split_for_evaluation


def _signals(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    con.execute(
        "CREATE OR REPLACE TABLE mart_user_item_signals (user_id VARCHAR, item_id VARCHAR, weight DOUBLE, "
        "last_at TIMESTAMP, n_dismiss INTEGER)"
    )
    con.executemany("INSERT INTO mart_user_item_signals VALUES (?, ?, ?, ?, ?)", rows)


def _assert_same(got: InteractionMatrix, expected: InteractionMatrix) -> None:
    assert np.array_equal(got.users.ids, expected.users.ids) and np.array_equal(got.items.ids, expected.items.ids)
    for name in ("weights", "seen", "engaged"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr), name
    assert got.sequence is not None and expected.sequence is not None
    assert got.sequence.dtype == expected.sequence.dtype and np.array_equal(got.sequence, expected.sequence)


def test_the_coded_history_equals_the_frames_with_ties_nulls_and_non_ascii_ids():
    rows = [
        ("u2", "é1", 1.5, "2026-01-02 00:00:00", 0),
        ("u2", "a9", -1.0, "2026-01-01 00:00:00", 2),  # dismissed: seen, not engaged
        ("u2", "b", 2.0, "2026-01-02 00:00:00", 0),  # the same time as é1: ties by item
        ("u10", "b", None, None, None),  # no weight, no time: seen, engaged (not a dismissal)
        ("u10", "z", 1e-50, "2026-01-03 00:00:00", 0),  # below float32's range: still positive
        ("U1", "a9", 0.0, "2025-12-31 00:00:00", 1),
        ("u2", "ä", 3.0, "2025-12-30 00:00:00", 0),
    ]
    with duckdb.connect() as con:
        _signals(con, rows)
        _assert_same(read_history(con), InteractionMatrix.from_frame(read_signals(con)))
        got = read_history(con)
    assert list(got.users.ids) == ["U1", "u10", "u2"] and list(got.items.ids) == ["a9", "b", "z", "ä", "é1"]
    u2 = got.sequence[got.seen.indptr[2] : got.seen.indptr[3]]
    assert list(got.items.ids[u2]) == ["ä", "a9", "b", "é1"]  # latest event first to last, ties by item


def _random_rows(seed: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    pairs = {(f"user{rng.integers(300)}", f"item{rng.integers(80)}") for _ in range(3000)}
    return [
        (
            u,
            i,
            float(rng.choice([-1.0, 0.0, 0.5, 2.0])),
            None if rng.random() < 0.02 else f"2026-01-{rng.integers(1, 4):02d} 00:00:00",
            int(rng.integers(2)),
        )
        for u, i in sorted(pairs)
    ]


def test_the_coded_history_equals_the_frames_on_random_signals():
    rows = _random_rows()
    with duckdb.connect() as con:
        _signals(con, rows)
        _assert_same(read_history(con), InteractionMatrix.from_frame(read_signals(con)))


def test_repeated_pairs_are_refused_rather_than_misaligning_the_sequence():
    with duckdb.connect() as con:
        _signals(con, [("u1", "i1", 1.0, "2026-01-01", 0), ("u1", "i1", 2.0, "2026-01-02", 0)])
        with pytest.raises(ValueError, match="sequence lists 2 pairs, the rows 1 distinct pairs"):
            read_history(con)


def test_a_null_id_is_refused_as_the_frame_refuses_it():
    with duckdb.connect() as con:
        _signals(con, [("u1", "i1", 1.0, "2026-01-01", 0), (None, "i1", 2.0, "2026-01-02", 0)])
        with pytest.raises(ValueError, match=r"mart_user_item_signals\.user_id contains null ids"):
            read_history(con)
        with pytest.raises(ValueError, match="null ids"):
            InteractionMatrix.from_frame(read_signals(con))


@pytest.mark.parametrize("split", ["temporal", "random"])
def test_the_coded_evaluation_split_equals_the_frames(split):
    """The evaluation's split on coded ids gives the train matrix, the engaged test pairs and the
    newest train time the frame split gives: with time ties, pairs without a time (the latest,
    for the temporal split), dismissals, and items or users left only in the test part."""
    rows = [*_random_rows(5), ("lone", "only_in_test", 1.0, "2026-02-01", 0), ("lone", "item1", 1.0, "2026-01-01", 0)]
    settings = Settings(eval_split=split, holdout_fraction=0.3, seed=11)
    with duckdb.connect() as con:
        _signals(con, rows)
        got = read_evaluation_split(con, settings)
        train, test = split_for_evaluation(read_signals(con), settings)
    _assert_same(got.train, InteractionMatrix.from_frame(train))
    truth = test[engaged_rows(test)][["user_id", "item_id"]].sort_values(["user_id", "item_id"], ignore_index=True)
    assert got.truth.equals(truth) and len(truth) > 100
    assert got.as_of == train["occurred_at"].max().to_pydatetime()
    if split == "temporal":  # the lone user's latest item is tested, and no one else has it
        assert "only_in_test" not in got.train.items.ids and "only_in_test" in set(truth["item_id"])
