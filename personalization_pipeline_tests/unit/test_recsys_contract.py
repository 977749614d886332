"""The recommender contract for every registered model, and EASE against a hand-computed case."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.recsys.ease import EASE, EASEParams, ease_fits, sequence_cooccurrence
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.registry import GLOBAL_MODELS, MODELS, build
from personalization_pipeline_tests.unit.test_recsys_als import two_clusters

USERS = np.array(["u00", "u07", "u31", "u59", "nobody"])


@pytest.fixture(scope="module")
def history() -> InteractionMatrix:
    return InteractionMatrix.from_frame(two_clusters())


@pytest.mark.parametrize("name", GLOBAL_MODELS)
def test_every_model_round_trips_to_identical_scores(name, history, tmp_path):
    model = build(name, Settings.from_env()).fit(history)
    scores = model.score(USERS, history)
    assert scores.shape == (len(USERS), len(model.item_ids))
    assert list(model.item_ids) == sorted(model.item_ids)
    model.save(tmp_path / name)
    loaded = MODELS[name].load(tmp_path / name)
    assert loaded.version == model.version and loaded.params == model.params
    np.testing.assert_array_equal(loaded.score(USERS, history), scores)
    if name != "popularity":
        assert np.isnan(scores[-1]).all() and np.isfinite(scores[:-1]).all()  # an unknown user gets no scores


@pytest.mark.parametrize("name", GLOBAL_MODELS)
def test_versions_follow_data_and_params_only(name, history):
    settings = Settings.from_env()
    first, again = build(name, settings).fit(history), build(name, settings).fit(history)
    assert first.version == again.version and first.version.startswith(f"{name}-")
    more = InteractionMatrix.from_frame(
        pd.concat(
            [
                two_clusters(),
                pd.DataFrame([("u01", "a39", 3.0), ("u02", "a38", 2.0)], columns=["user_id", "item_id", "weight"]),
            ]
        )
    )
    assert build(name, settings).fit(more).version != first.version
    field = dataclasses.fields(first.params)[0]
    changed = dataclasses.replace(first.params, **{field.name: _other(getattr(first.params, field.name))})
    assert MODELS[name](changed).fit(history).version != first.version


def _other(value):
    return {"weight": "users"}.get(value, value) if isinstance(value, str) else type(value)(value * 2 + 1)


def test_a_model_of_another_kind_is_refused(history, tmp_path):
    build("als", Settings.from_env()).fit(history).save(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a 'als' model, not 'ease'"):
        EASE.load(tmp_path / "m")


def test_ease_matches_the_hand_computed_weights():
    """X: u1 {a, b}, u2 {b, c}, u3 {a, b, c}, u4 {d}; λ = 1. G + λI = [[3,2,1],[2,4,2],[1,2,3]] over a, b, c
    (d has one user and is left out); its inverse is [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]], so
    B = -P / diag(P) off the diagonal = [[0,.5,0],[.5,0,.5],[0,.5,0]]."""
    rows = [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "a"), ("u3", "b"), ("u3", "c"), ("u4", "d")]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(weight=2.5)  # weights are binarised
    history = InteractionMatrix.from_frame(frame)
    model = EASE(EASEParams(regularization=1.0)).fit(history)
    assert list(model.item_ids) == ["a", "b", "c"]
    np.testing.assert_allclose(model.weights, [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]], atol=1e-6)
    scores = model.score(np.array(["u2", "u4"]), history)
    np.testing.assert_allclose(scores[0], [0.5, 0.5, 0.5], atol=1e-6)  # x = [0, 1, 1]: x B
    assert np.isnan(scores[1]).all()  # u4's only item is not modelled


def test_ease_weights_are_row_major_after_fit_and_load(history, tmp_path):
    """Scoring multiplies a sparse batch by the weights; column-major weights would be copied whole per batch."""
    model = build("ease", Settings.from_env()).fit(history)
    model.save(tmp_path / "ease")
    assert model.weights.flags["C_CONTIGUOUS"] and EASE.load(tmp_path / "ease").weights.flags["C_CONTIGUOUS"]


def test_ease_is_skipped_beyond_its_limits():
    assert ease_fits(0, 100, 100) == "no item is held by enough users"
    assert "exceed the EASE item limit of 1000" in ease_fits(1500, 1000, 10_000)
    assert "more than the EASE memory limit of 10 MB" in ease_fits(1000, 20_000, 10)  # 1000² x 28 B = 27 MB
    assert ease_fits(500, 20_000, 10) is None
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "weight": 1.0})
    reason = EASE().skip_reason(InteractionMatrix.from_frame(frame))  # every item has one user
    assert reason == "no item is held by enough users"


def _timed(sequences: dict[str, list[str]], dismissed: frozenset[tuple[str, str]] = frozenset()) -> pd.DataFrame:
    """One event a day per item, in the listed order, for each user."""
    rows = [
        (user, item, pd.Timestamp("2024-01-01") + pd.Timedelta(days=day), (user, item) in dismissed)
        for user, items in sequences.items()
        for day, item in enumerate(items)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at", "dismissed"])
    return frame.assign(weight=np.where(frame["dismissed"], -1.0, 1.0))


def test_sequence_cooccurrence_counts_items_within_the_window_and_skips_dismissals():
    history = InteractionMatrix.from_frame(
        _timed({"u1": ["a", "b", "c", "d"], "u2": ["d", "x", "c"]}, frozenset({("u2", "x")}))
    )
    keep = np.arange(len(history.items))  # a b c d x
    one = sequence_cooccurrence(history, keep, window=1).toarray()
    # u1: a-b, b-c, c-d; u2: x is a dismissal, so d and c stand next to each other
    expected = np.zeros((5, 5))
    for i, j in [(0, 1), (1, 2), (2, 3), (2, 3)]:
        expected[i, j] += 1
        expected[j, i] += 1
    np.testing.assert_array_equal(one, expected)
    two = sequence_cooccurrence(history, keep, window=2).toarray()
    assert two[0, 2] == two[1, 3] == 1  # two places apart in u1's history
    assert two[0, 3] == 0  # three places apart
    np.testing.assert_array_equal(
        sequence_cooccurrence(history, np.array([0, 2]), window=2).toarray(), [[0, 1], [1, 0]]
    )


def test_the_sequence_model_adds_its_own_ease_weights_to_the_whole_history_ones():
    history = InteractionMatrix.from_frame(_timed({"u1": ["a", "b", "c"], "u2": ["b", "c", "a"], "u3": ["c", "a"]}))
    params = EASEParams(regularization=2.0, sequence_weight=0.5, sequence_window=1, sequence_regularization=3.0)
    model = EASE(params).fit(history)

    def ease_b(gram: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(gram)
        b = -inverse / np.diag(inverse)
        np.fill_diagonal(b, 0.0)
        return b

    x = history.engaged.toarray().astype(float)
    whole = x.T @ x + 2.0 * np.eye(3)
    near = np.array([[3.0, 1, 2], [1, 2, 2], [2, 2, 3]]) + 3.0 * np.eye(3)  # neighbours: a-b, b-c, b-c, c-a, c-a
    np.testing.assert_allclose(model.weights, ease_b(whole) + 0.5 * ease_b(near), atol=1e-6)
    plain = EASE(dataclasses.replace(params, sequence_weight=0.0)).fit(history)
    np.testing.assert_allclose(plain.weights, ease_b(whole), atol=1e-6)


def test_items_that_follow_each_other_outrank_items_only_held_together():
    """Every user engages with p, then q at once, and r only after six fillers: whole-history
    co-occurrence cannot tell q from r (both are held with p by everyone), the sequence can."""
    rng = np.random.default_rng(0)
    fillers = [f"f{i}" for i in range(30)]
    sequences = {f"u{n:02d}": ["p", "q", *rng.choice(fillers, 6, replace=False), "r"] for n in range(20)}
    sequences["new"] = ["p"]
    history = InteractionMatrix.from_frame(_timed(sequences))
    plain = EASE(EASEParams(sequence_weight=0.0, regularization=5.0)).fit(history)
    ordered = EASE(EASEParams(regularization=5.0)).fit(history)
    column = {item: i for i, item in enumerate(ordered.item_ids)}
    before = plain.score(np.array(["new"]), history)[0]
    after = ordered.score(np.array(["new"]), history)[0]
    assert before[column["q"]] == pytest.approx(before[column["r"]], abs=1e-5)
    assert after[column["q"]] > after[column["r"]] + 0.05
