"""Interaction matrices and id indexes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix, engaged_rows

FRAME = pd.DataFrame(
    {
        "user_id": [10, 10, 10, 9, 9, 7],  # integer ids become strings: "10" < "7" < "9"
        "item_id": ["b", "b", "c", "a", "c", "c"],
        "weight": [1.0, 2.0, 4.0, -3.0, 0.5, 0.0],
    }
)


def test_ids_are_sorted_strings_and_weights_summed():
    m = InteractionMatrix.from_frame(FRAME)
    assert m.users.ids.tolist() == ["10", "7", "9"]
    assert m.items.ids.tolist() == ["a", "b", "c"]
    assert m.weights.toarray().tolist() == [[0.0, 3.0, 4.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]
    assert m.positive_counts.tolist() == [2, 0, 1]


def test_dismissed_and_zero_weight_items_are_seen_but_not_trained():
    m = InteractionMatrix.from_frame(FRAME)
    assert m.seen_items("9").tolist() == ["a", "c"]  # a was dismissed (weight -3)
    assert m.seen_items("7").tolist() == ["c"]  # weight 0
    assert m.seen_items("unknown").tolist() == []
    assert m.seen.toarray().sum() == 5  # five distinct (user, item) pairs


def test_positions_mark_unknown_ids():
    index = IdIndex.from_values(["b", "a", "b", "c"])
    assert index.ids.tolist() == ["a", "b", "c"]
    assert index.positions(["c", "zz", "a", ""]).tolist() == [2, -1, 0, -1]
    assert IdIndex.from_values([]).positions(["a"]).tolist() == [-1]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="weight"):
        InteractionMatrix.from_frame(FRAME.drop(columns="weight"))
    with pytest.raises(ValueError, match="null"):
        InteractionMatrix.from_frame(FRAME.assign(item_id=["a", None, "b", "c", "c", "c"]))
    with pytest.raises(ValueError):
        IdIndex(np.array(["b", "a"]))


def test_a_positive_signal_too_small_for_float32_stays_positive():
    frame = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["old", "new"], "weight": [1e-73, 2.0]})
    matrix = InteractionMatrix.from_frame(frame)
    assert matrix.weights.nnz == 2 and (matrix.weights.data > 0).all()
    assert list(matrix.positive_counts) == [2]


def test_engaged_pairs_and_each_users_items_in_time_order():
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "a"],
            "item_id": ["x", "y", "z", "x", "y", "x"],
            "weight": [1.0, -1.0, -2.0, 1.0, 1.0, 1.0],
            "occurred_at": pd.to_datetime(
                ["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01", "2020-01-01", "2020-01-04"]
            ),
            "dismissed": [False, True, False, False, False, False],
        }
    )
    m = InteractionMatrix.from_frame(frame)
    # a: x positive, y dismissed (not engaged), z a low answer that is not a dismissal (engaged)
    assert m.engaged.toarray().tolist() == [[True, False, True], [True, True, False]]
    assert engaged_rows(frame).tolist() == [True, False, True, True, True, True]
    # a: y (Jan 1), z (Jan 2), x (latest event Jan 4); b: x and y at the same time, by item
    assert m.sequence.tolist() == [1, 2, 0, 0, 1]
    assert m.seen.indptr.tolist() == [0, 3, 5]


def test_without_time_or_dismissal_columns_every_pair_is_engaged_and_there_is_no_sequence():
    m = InteractionMatrix.from_frame(FRAME)
    assert m.sequence is None
    assert (m.engaged.toarray() == m.seen.toarray()).all()  # a negative weight alone is not a dismissal
