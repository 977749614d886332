"""Per-user models and their gate on planted data, and the composite over a global model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.per_user import (
    REPORT_COLUMNS,
    ItemFeatures,
    PerUserComposite,
    PerUserParams,
    _auc,
    fit_logistic_batch,
    fit_per_user,
    ndcg_judgement,
    standardised,
)
from personalization_pipeline.recsys.popularity import Popularity

ITEMS = [f"a{i:02d}" for i in range(30)] + [f"b{i:02d}" for i in range(30)]
PARAMS = PerUserParams(min_interactions=40)


def world(seed: int = 0):
    """Everyone else loves the b items (so the global popularity model ranks them first); ``idio``
    accepts a items and dismisses b items, ``noisy`` answers at random, ``small`` has 20 pairs."""
    rng = np.random.default_rng(seed)
    crowd = [(f"c{u:03d}", item, 1.0) for u in range(80) for item in rng.choice(ITEMS[30:], 10, replace=False)]
    crowd += [(f"c{u:03d}", ITEMS[u], 1.0) for u in range(30)]  # every a item has one fan
    history = InteractionMatrix.from_frame(pd.DataFrame(crowd, columns=["user_id", "item_id", "weight"]))
    base = Popularity().fit(history)
    catalog = pd.DataFrame(
        {"item_id": ITEMS, "category": [i[0] for i in ITEMS], "popularity": base.scores, "age_days": 10}
    )
    features = ItemFeatures.build(base.item_ids, catalog, PARAMS.max_categories)
    pairs = []
    for user, n in (("idio", 60), ("noisy", 60), ("small", 20)):
        for t, item in enumerate(rng.choice(ITEMS, n, replace=False)):
            label = int(item[0] == "a") if user != "noisy" else int(rng.random() < 0.5)
            pairs.append((user, item, label, pd.Timestamp("2024-01-01") + pd.Timedelta(days=t)))
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id", "label", "occurred_at"])
    z = standardised(base.score(np.array(["x"]), history).astype(np.float64))[0]  # the same row for everyone
    frame["global_z"] = z[np.searchsorted(base.item_ids, frame["item_id"])]
    return base, history, features, frame


def test_an_idiosyncratic_user_keeps_a_model_that_beats_the_global_one():
    _, _, features, pairs = world()
    fitted = fit_per_user(pairs, features, PARAMS)
    report = fitted.report.set_index("user_id")
    assert list(report.index) == ["idio", "noisy"]  # 'small' has too few pairs to be eligible
    assert report.loc["idio", "kept"] and report.loc["idio", "auc"] >= 0.9
    assert report.loc["idio", "global_auc"] < 0.5 < report.loc["idio", "auc"]  # the global model gets them wrong
    assert not report.loc["noisy", "kept"]  # no taste to learn: the global model keeps serving them
    assert list(fitted.user_ids) == ["idio"]


def test_the_composite_reranks_kept_users_only_and_round_trips(tmp_path):
    base, history, features, pairs = world()
    composite = PerUserComposite.from_fit(PARAMS, fit_per_user(pairs, features, PARAMS), features, base)
    scores = composite.score(np.array(["idio", "c001"]), history)
    top = np.asarray(composite.item_ids)[np.argsort(-scores[0])[:10]]
    assert all(item.startswith("a") for item in top)  # their own taste, against the crowd
    np.testing.assert_array_equal(scores[1], base.score(np.array(["c001"]), history)[0])
    composite.save(tmp_path / "pu")
    loaded = PerUserComposite.load(tmp_path / "pu").over(base)
    assert loaded.version == composite.version and loaded.base_version == base.version
    np.testing.assert_array_equal(loaded.score(np.array(["idio", "c001"]), history), scores)
    gone = composite.without({"idio"})
    assert len(gone.users) == 0 and gone.version != composite.version


def test_a_kept_model_reorders_only_the_global_models_best_unseen_items():
    base, history, features, pairs = world()
    params = dataclasses.replace(PARAMS, candidates=10)
    global_scores = pd.Series(base.score(np.array(["c001"]), history)[0], index=base.item_ids)
    for user in ("idio", "c001"):  # idio has no history here; c001 has seen eleven items
        fitted = fit_per_user(pairs.replace({"idio": user}), features, params)
        (row,) = PerUserComposite.from_fit(params, fitted, features, base).score(np.array([user]), history)
        listed = set(np.asarray(base.item_ids)[np.isfinite(row)])
        unseen = global_scores.drop(list(history.seen_items(user)))
        assert len(listed) == 10 and not listed & set(history.seen_items(user))
        assert global_scores[list(listed)].min() >= unseen.nlargest(10).min()  # the global model's best ten


def test_the_ndcg_judgement_scores_both_lists_on_the_same_holdout():
    truth = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["x", "y", "z"]})
    own = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["x", "q", "z"], "rank": [1, 2, 1]})
    glob = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["q", "y"], "rank": [1, 2]})  # nothing for v
    judged = ndcg_judgement(own, glob, truth, k=2).set_index("user_id")
    ideal = 1 + 1 / np.log2(3)
    assert judged.loc["u", "ndcg"] == pytest.approx(1 / ideal)  # x at 1 of {x, y}
    assert judged.loc["u", "global_ndcg"] == pytest.approx((1 / np.log2(3)) / ideal)  # y at 2
    assert judged.loc["v", "ndcg"] == 1.0 and judged.loc["v", "global_ndcg"] == 0.0


def test_the_models_stay_only_when_they_raise_held_out_ndcg_beyond_its_noise():
    _, _, features, pairs = world()
    both = pairs[pairs["user_id"] == "idio"].assign(user_id="idio2")
    fitted = fit_per_user(pd.concat([pairs, both]), features, PARAMS)
    assert list(fitted.user_ids) == ["idio", "idio2"]  # both pass the AUC gate
    users = ["idio", "idio2", "x", "y"]  # judged users need not have a kept model on the whole data
    wins = pd.DataFrame({"user_id": users, "ndcg": [0.5, 0.6, 0.5, 0.7], "global_ndcg": [0.3, 0.3, 0.4, 0.4]})
    kept = fitted.judged(wins, margin_stderrs=1.0)
    gains = np.array([0.2, 0.3, 0.1, 0.3])
    assert kept.ndcg_gain == pytest.approx(gains.mean())
    assert kept.ndcg_gain_stderr == pytest.approx(gains.std(ddof=1) / 2)
    assert list(kept.user_ids) == ["idio", "idio2"]  # as a whole: a user's own figures do not pick them
    report = kept.report.set_index("user_id")
    assert report.loc["idio2", "ndcg"] == 0.6 and report.loc["noisy", "reason"] == "below the AUC floor"
    np.testing.assert_array_equal(kept.coefficients, fitted.coefficients)
    noisy = wins.assign(ndcg=[0.5, 0.1, 0.5, 0.45])  # gains 0.2, -0.2, 0.1, 0.05: mean 0.0375, SE 0.085
    assert list(fitted.judged(noisy, margin_stderrs=0.0).user_ids) == ["idio", "idio2"]
    dropped = fitted.judged(noisy, margin_stderrs=1.0)
    assert len(dropped.user_ids) == 0 and not dropped.report["kept"].any()
    assert dropped.report.set_index("user_id").loc["idio", "reason"].startswith("the models lower held-out NDCG")
    unjudged = fitted.judged(wins.iloc[:0], margin_stderrs=1.0)  # nothing shows the models help
    assert len(unjudged.user_ids) == 0
    assert set(unjudged.report.loc[unjudged.report["user_id"].str.startswith("idio"), "reason"]) == {
        "no held-out engagement to judge the models on"
    }


def test_the_batched_fit_matches_scikit_learn_user_by_user():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    lengths = [30, 45, 60]
    x = np.zeros((3, 60, 4))
    y = np.zeros((3, 60))
    mask = np.zeros((3, 60))
    for b, n in enumerate(lengths):
        x[b, :n] = rng.normal(size=(n, 4))
        y[b, :n] = (x[b, :n] @ [1.5, -2.0, 0.0, 0.5] + rng.normal(size=n) > 0).astype(float)
        mask[b, :n] = 1.0
    weights, intercepts = fit_logistic_batch(x, y, mask, l2=2.0)
    for b, n in enumerate(lengths):
        reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x[b, :n], y[b, :n])
        np.testing.assert_allclose(weights[b], reference.coef_[0], atol=1e-5)
        np.testing.assert_allclose(intercepts[b], reference.intercept_[0], atol=1e-5)


def test_the_auc_counts_correctly_ordered_pairs_with_ties_as_half():
    assert _auc(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.875)  # 3.5 of 4
    rng = np.random.default_rng(0)
    for _ in range(200):
        labels = np.r_[1.0, 0.0, rng.integers(0, 2, 20)]
        scores = rng.integers(0, 5, 22).astype(np.float64)  # many ties
        assert _auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_no_pair_of_a_known_item_fits_nothing():
    _, _, features, pairs = world()
    for unusable in (pairs.iloc[:0], pairs.assign(item_id="not-in-the-catalogue")):
        fitted = fit_per_user(unusable, features, PARAMS)
        assert len(fitted.user_ids) == 0 and fitted.report.empty and list(fitted.report.columns) == REPORT_COLUMNS


def test_z_scores_ignore_nan_entries_and_match_whatever_the_batch_holds():
    rng = np.random.default_rng(8)
    scores = rng.normal(size=(6, 500)) * 3 + 1
    scores[4] = 2.0  # flat: all zeros
    clean = standardised(scores)
    assert np.allclose(clean[:4].mean(axis=1), 0) and np.allclose(clean[:4].std(axis=1), 1) and (clean[4] == 0).all()
    holed = scores.copy()
    holed[5, :100] = np.nan  # an unknown item for one user: the row is scored over the rest
    z = standardised(holed)
    assert np.isnan(z[5, :100]).all() and np.allclose(z[5, 100:], standardised(scores[5:, 100:])[0])
    assert np.array_equal(z[:5], clean[:5])  # a NaN elsewhere in the batch changes no other row
