"""The numpy building blocks of coded candidate lists against their pandas/numpy definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys import matrices
from personalization_pipeline.recsys.candidates import list_spans
from personalization_pipeline.recsys.matrices import marked_unique_inverse, unique_inverse
from personalization_pipeline.recsys.rerank_features import _list_max_std


def test_list_max_and_std_match_pandas_groupby_with_missing_values():
    rng = np.random.default_rng(3)
    users = np.sort(rng.integers(0, 40, 600))
    frame = pd.DataFrame({"user_code": users, "scope_code": rng.integers(0, 2, 600)})
    frame = frame.sort_values(["user_code", "scope_code"], kind="stable").reset_index(drop=True)
    values = np.where(rng.random(600) < 0.3, np.nan, rng.normal(size=600))
    values[frame["user_code"].to_numpy() == frame["user_code"].iloc[0]] = np.nan  # a list with no value
    top, spread = _list_max_std(values, list_spans(frame))
    groups = frame.assign(v=values).groupby(["user_code", "scope_code"])["v"]
    np.testing.assert_allclose(top, groups.transform("max").to_numpy(np.float64), equal_nan=True)
    np.testing.assert_allclose(spread, groups.transform("std").to_numpy(np.float64), rtol=1e-12, equal_nan=True)


def test_unique_inverse_agrees_with_numpy():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 500, 2_000)
    unique, inverse = unique_inverse(values)
    expected, expected_inverse = np.unique(values, return_inverse=True)
    assert (unique == expected).all() and (inverse == expected_inverse).all()


@pytest.mark.parametrize("step", [1, 7, 64, 1 << 20])
def test_marked_unique_inverse_agrees_with_numpy_whatever_its_step(monkeypatch, step):
    monkeypatch.setattr(matrices, "MARKS_PER_STEP", step)
    rng = np.random.default_rng(6)
    values = rng.integers(0, 300, 1_000) * 3 + 2  # gaps, and a range past the last value
    unique, inverse = marked_unique_inverse(values, 1_000)
    expected, expected_inverse = np.unique(values, return_inverse=True)
    assert (unique == expected).all() and (inverse == expected_inverse).all()
    empty, none = marked_unique_inverse(values[:0], 0)
    assert len(empty) == len(none) == 0
