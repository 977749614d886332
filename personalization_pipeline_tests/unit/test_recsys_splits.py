"""Train/test splits: which rows go to test, determinism, seen pairs dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.splits import (
    random_pairs_held,
    stratified_random_split,
    temporal_holdout,
)

T0 = pd.Timestamp("2025-01-01T00:00:00Z")


def frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(user, item, day offset) rows; weight 1."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "occurred_at": [T0 + pd.Timedelta(days=r[2]) for r in rows],
            "weight": 1.0,
        }
    )


def pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["user_id"], df["item_id"], strict=True))


HISTORY = frame(
    [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "c", 3),
        ("u1", "d", 4),
        ("u1", "e", 5),
        ("u1", "a", 6),  # a again after e: a was discovered first, stays in train
        ("u2", "y", 1),
        ("u2", "x", 1),  # same time: ties by item_id, so y is the later one
        ("u3", "z", 1),  # one item only: never tested
        ("u4", "p", 1),
        ("u4", "p", 2),  # one distinct item, two rows: never tested
    ]
)


def test_temporal_holdout_takes_latest_discovered_items():
    train, test = temporal_holdout(HISTORY, fraction=0.2)
    # u1: 5 items, round(0.2 * 5) = 1 -> e ; u2: 2 items, max(1, round(0.4)) = 1 -> y
    assert pairs(test) == {("u1", "e"), ("u2", "y")}
    assert len(train) + len(test) == len(HISTORY)
    assert ("u1", "a") in pairs(train) and (train["item_id"] == "a").sum() == 2
    assert pairs(train).isdisjoint(pairs(test))
    assert list(train.columns) == list(HISTORY.columns)


def test_temporal_holdout_fraction_and_min_train():
    _, test = temporal_holdout(HISTORY, fraction=0.4)
    # u1: round(0.4 * 5) = 2 -> d, e
    assert pairs(test) == {("u1", "d"), ("u1", "e"), ("u2", "y")}
    _, test = temporal_holdout(HISTORY, fraction=0.5, min_train=4)
    # u1: wants round(2.5 half up) = 3 but may give only 5 - 4 = 1 ; u2 cannot keep 4 in train
    assert pairs(test) == {("u1", "e")}


def test_temporal_holdout_ignores_row_order():
    shuffled = HISTORY.sample(frac=1.0, random_state=11)
    train, test = temporal_holdout(shuffled, fraction=0.4)
    assert pairs(test) == {("u1", "d"), ("u1", "e"), ("u2", "y")}
    # rows keep their input order
    held = [(u, i) in pairs(test) for u, i in zip(shuffled["user_id"], shuffled["item_id"], strict=True)]
    pd.testing.assert_frame_equal(train, shuffled[[not h for h in held]].reset_index(drop=True))


def test_invalid_fraction_is_rejected():
    with pytest.raises(ValueError):
        temporal_holdout(HISTORY, fraction=1.0)
    with pytest.raises(ValueError):
        stratified_random_split(HISTORY, fraction=0.0)


def random_history(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(40):
        items = rng.choice(30, size=int(rng.integers(1, 12)), replace=False)
        for item in items:
            for _ in range(int(rng.integers(1, 3))):  # some pairs repeat
                rows.append((f"u{u}", f"i{item}", int(rng.integers(0, 100))))
    return frame(rows)


def test_stratified_random_split_counts_and_determinism():
    history = random_history()
    train, test = stratified_random_split(history, fraction=0.3, seed=1)
    sizes = history.groupby("user_id")["item_id"].nunique()
    held = test.groupby("user_id")["item_id"].nunique().reindex(sizes.index, fill_value=0)
    expected = sizes.map(lambda n: 0 if n < 2 else min(max(1, int(np.floor(0.3 * n + 0.5))), n - 1))
    assert (held == expected).all()
    assert pairs(train).isdisjoint(pairs(test))
    assert len(train) + len(test) == len(history)  # every row of a held-out pair went to test

    shuffled = history.sample(frac=1.0, random_state=2)
    again_train, again_test = stratified_random_split(shuffled, 0.3, seed=1)
    assert pairs(again_test) == pairs(test) and pairs(again_train) == pairs(train)
    _, other = stratified_random_split(history, fraction=0.3, seed=2)
    assert pairs(other) != pairs(test)


def test_the_random_holdout_of_coded_pairs_follows_its_definition_whatever_their_order():
    """Pairs ordered by user, then by a key drawn per pair in (user, item) order; each user's last
    ones by the counting rule are held: the same pairs for any order the pairs come in."""
    rng = np.random.default_rng(8)
    codes = np.unique(rng.integers(0, 40, 2000) * 1000 + rng.integers(0, 300, 2000))
    users, items = codes // 1000, codes % 1000  # in (user, item) order
    keys = np.random.default_rng(4).random(len(codes))
    order = np.lexsort((keys, users))
    position = np.arange(len(order)) - np.searchsorted(users[order], users[order])
    size = np.bincount(users)[users[order]]
    wanted = np.maximum(1, np.floor(0.25 * size + 0.5))
    expected = np.zeros(len(codes), dtype=bool)
    expected[order] = (size >= 2) & (position >= size - np.minimum(size - 1, wanted))
    assert np.array_equal(random_pairs_held(users, items, 0.25, seed=4), expected)
    shuffle = rng.permutation(len(codes))
    assert np.array_equal(random_pairs_held(users[shuffle], items[shuffle], 0.25, seed=4), expected[shuffle])
