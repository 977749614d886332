"""The recommender contract for every registered model, and EASE against a hand-computed case."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.recsys.ease import EASE, EASEParams, ease_fits
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


def test_ease_is_skipped_beyond_its_limits():
    assert ease_fits(0, 100, 100) == "no item is held by enough users"
    assert "exceed the EASE item limit of 1000" in ease_fits(1500, 1000, 10_000)
    assert "more than the EASE memory limit of 10 MB" in ease_fits(1000, 20_000, 10)  # 1000² x 24 B = 23 MB
    assert ease_fits(500, 20_000, 10) is None
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "weight": 1.0})
    reason = EASE().skip_reason(InteractionMatrix.from_frame(frame))  # every item has one user
    assert reason == "no item is held by enough users"
