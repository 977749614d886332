"""Exact dot products and the proposal path of factor models' top-n."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from personalization_pipeline.recsys import factor_topk
from personalization_pipeline.recsys.als import ALS, ALSParams
from personalization_pipeline.recsys.cold_start import ColdStartBlend, ColdStartParams
from personalization_pipeline.recsys.dots import dots
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix
from personalization_pipeline.recsys.ranking import Scopes, _rank_all, rank_batch, user_rankings


def exact_dot(u: np.ndarray, v: np.ndarray) -> np.float32:
    return np.float32(math.fsum((u.astype(np.float64) * v.astype(np.float64)).tolist()))


def test_dots_are_fsum_rounded_whichever_rows_share_the_call():
    rng = np.random.default_rng(5)
    users = rng.normal(size=(40, 16)).astype(np.float32)
    items = rng.normal(size=(300, 16)).astype(np.float32)
    items[7] = [1.0, 2.0**-24] + [0.0] * 14  # with a user (1, 1, 0...): a sum exactly on a float32 midpoint
    users[3] = [1.0, 1.0] + [0.0] * 14
    whole = dots(users, items)
    assert np.array_equal(whole, [[exact_dot(u, v) for v in items] for u in users])
    assert whole[3, 7] == np.float32(1.0)  # the midpoint rounds to even
    assert np.array_equal(dots(users[::-1], items)[::-1], whole)
    assert np.array_equal(dots(users[5:6], items)[0], whole[5])
    picked = rng.integers(0, len(items), size=(40, 25))
    assert np.array_equal(dots(users, items, picked), np.take_along_axis(whole, picked, axis=1))


def factor_model(rng: np.random.Generator, n_users: int, n_items: int) -> ALS:
    item_factors = rng.normal(size=(n_items, 8)).astype(np.float32)
    item_factors[100:140] = item_factors[100]  # forty identical items: exact ties at any cut
    model = ALS(ALSParams(factors=8))
    model.restore(
        {
            "user_ids": np.array([f"u{i:03d}" for i in range(n_users)]),
            "item_ids": np.array([f"i{i:05d}" for i in range(n_items)]),
            "user_factors": rng.normal(size=(n_users, 8)).astype(np.float32),
            "item_factors": item_factors,
        }
    )
    model.user_factors[0] = model.item_factors[100] * 5  # user 0's best items are the tied ones
    return model


def history_of(rng: np.random.Generator, model: ALS, heavy: str) -> InteractionMatrix:
    users, items = model.users.ids, model.items.ids
    frame = pd.DataFrame(
        {"user_id": rng.choice(users, size=2000), "item_id": rng.choice(items, size=2000), "weight": 1.0}
    )
    heavy_rows = pd.DataFrame({"user_id": heavy, "item_id": items[: factor_topk.HEAVY_SEEN + 50], "weight": 1.0})
    frame = pd.concat([frame, heavy_rows]).drop_duplicates(["user_id", "item_id"])
    return InteractionMatrix.from_frame(frame)


@pytest.fixture(scope="module")
def case() -> tuple[ALS, InteractionMatrix, Scopes]:
    rng = np.random.default_rng(11)
    model = factor_model(rng, 60, 3000)
    history = history_of(rng, model, heavy="u007")
    items = model.items.ids
    catalog = pd.DataFrame({"item_id": items, "scope": rng.choice(["a", "b"], size=len(items))})
    catalog = pd.concat([catalog, pd.DataFrame({"item_id": items[::3], "scope": "every third"})])
    return model, history, Scopes.build(items, catalog)


def test_proposals_certify_most_users_and_leave_ties_and_heavy_users_to_dense(case):
    model, history, _ = case
    users = model.users.ids
    seen = history.seen[history.users.positions(users)][:, IdIndex(history.items.ids).positions(model.items.ids)]
    rows = factor_topk.FactorRows(np.arange(len(users)), model.user_factors, model.item_factors)
    top = factor_topk.top_n(rows, seen.tocsr(), 10)
    dense = set(users[top.dense_rows])
    assert {"u000", "u007"} <= dense  # tied at the cut; seen more than HEAVY_SEEN
    assert len(dense) < len(users) // 4
    certified = np.unique(top.rows)
    assert len(top.rows) == 10 * len(certified) and not set(users[certified]) & dense


def test_proposal_path_equals_scoring_every_item(case):
    model, history, scopes = case
    users = model.users.ids
    to_model = IdIndex(model.item_ids).positions(history.items.ids)
    fast = rank_batch(model, users, history, scopes, to_model, 10)
    full = _rank_all(model, users, history, scopes, to_model, 10).by_scope()
    for field in fast.__dataclass_fields__:
        assert np.array_equal(getattr(fast, field), getattr(full, field)), field
    catalog = pd.DataFrame({"item_id": model.item_ids[scopes.columns[0]], "scope": scopes.names[0]})
    whole = user_rankings(model, users, catalog, history, 10)
    assert whole.groupby("user_id").size().eq(10).all()
    pd.testing.assert_frame_equal(whole, user_rankings(model, users[::-1], catalog, history, 10, batch_size=7))


def test_cold_start_blend_ranks_every_factor_user_by_proposals_and_equals_dense(case):
    model, history, scopes = case
    rng = np.random.default_rng(3)
    catalog = pd.DataFrame(
        {
            "item_id": model.item_ids,
            "category": rng.choice(["c1", "c2", "c3", "c4"], size=len(model.item_ids)),
            "approved_at": datetime(2026, 1, 1, tzinfo=UTC)
            - pd.to_timedelta(rng.integers(0, 300, len(model.item_ids)), "D"),
        }
    )
    blend = ColdStartBlend(model, catalog, history, datetime(2026, 6, 1, tzinfo=UTC), ColdStartParams(max_history=40))
    users = np.append(model.users.ids, "stranger")
    groups = blend.factor_rows(users, history)
    plain, blended = (g for g in groups if g.affine is None), [g for g in groups if g.affine is not None]
    engaged = np.diff(history.engaged.indptr)[history.users.positions(users)]
    assert (engaged[next(plain).positions] >= 40).all()
    assert len(blended) == 1 and (engaged[blended[0].positions] < 40).all() and len(blended[0].positions) > 10
    assert sorted(np.concatenate([g.positions for g in groups])) == list(range(len(users) - 1))  # all but the stranger
    to_model = IdIndex(model.item_ids).positions(history.items.ids)
    fast = rank_batch(blend, users, history, scopes, to_model, 10)
    full = _rank_all(blend, users, history, scopes, to_model, 10).by_scope()
    for field in fast.__dataclass_fields__:
        assert np.array_equal(getattr(fast, field), getattr(full, field)), field
    cold = blended[0]
    proposed = factor_topk.top_n(cold, sp.csr_matrix((len(cold.positions), len(cold.items)), dtype=bool), 10)
    assert len(proposed.dense_rows) < len(cold.positions) // 4  # most blended users are certified
    listed = catalog.assign(scope=np.where(np.arange(len(catalog)) % 2, "odd", "even"))
    whole = user_rankings(blend, users, listed, history, 10)
    pd.testing.assert_frame_equal(whole, user_rankings(blend, users[::-1], listed, history, 10, batch_size=7))


def test_the_factored_blend_standardises_as_the_rows_own_scores_do(case):
    """The blend's spread and mean from the item factors' moments agree with each row's own."""
    model, history, _ = case
    catalog = pd.DataFrame(
        {"item_id": model.item_ids, "category": "c", "approved_at": datetime(2026, 1, 1, tzinfo=UTC)}
    )
    blend = ColdStartBlend(model, catalog, history, datetime(2026, 6, 1, tzinfo=UTC), ColdStartParams(max_history=40))
    users = model.users.ids
    cold = next(g for g in blend.factor_rows(users, history) if g.affine is not None)
    affine = cold.affine
    raw = model.score(users[cold.positions], history).astype(np.float64)
    z = (raw - raw.mean(axis=1, keepdims=True)) / raw.std(axis=1, keepdims=True)
    weight = 1 - affine.rule_weight[:, None]  # h / (h + damping)
    expected = weight * z + (1 - weight) * affine.item_terms + affine.category_terms[:, [0]]
    np.testing.assert_allclose(cold.scores(np.arange(len(cold.positions))), expected, rtol=0, atol=1e-4)


def test_items_whose_float32_scores_cancel_to_zero_are_still_found():
    # trap . user = (1 + 2^-19 + 2^-40) - (1 + 2^-19) = 2^-40 exactly, but float32 keeps 0 of it;
    # bait . user = 2^-46 in any precision: float32 proposes the baits, the exact top-3 is the traps
    e = 2.0**-20
    user = np.array([[1 + e, 1.0]], dtype=np.float32)
    trap, bait, low = [1 + e, -(1 + 2 * e)], [0.0, 2.0**-46], [-1.0, 0.0]
    items = np.array([low] * 95 + [bait] * 100 + [trap] * 5, dtype=np.float32)
    assert dots(user, items[[195]])[0, 0] == np.float32(2.0**-40)
    no_history = factor_topk.sp.csr_matrix((1, len(items)), dtype=bool)
    top = factor_topk.top_n(factor_topk.FactorRows(np.arange(1), user, items), no_history, 3)
    assert list(top.dense_rows) == [0] and len(top.rows) == 0  # the near-zero cut cannot be certified
    picks = rank_batch(
        _als(user, items),
        np.array(["u"]),
        InteractionMatrix.from_frame(pd.DataFrame({"user_id": ["u"], "item_id": ["x"], "weight": [1.0]})),
        Scopes(np.array(["all"]), [np.arange(len(items))]),
        np.array([-1]),
        3,
    )
    assert list(picks.cols) == [195, 196, 197]


def test_a_proposal_left_unscored_that_may_beat_the_list_leaves_the_user_to_dense():
    # 25 baits (2^-46) outrank 5 traps (float32 0, exactly 2^-40) in the index and fill the
    # n + MARGIN re-scored candidates; the last proposal (-1) is far below. Only the best
    # proposal left out (a bait) bounds what was not re-scored, and it is too close to certify.
    e = 2.0**-20
    user = np.array([[1 + e, 1.0]], dtype=np.float32)
    trap, bait, low = [1 + e, -(1 + 2 * e)], [0.0, 2.0**-46], [-1.0, 0.0]
    items = np.array([low] * 100 + [bait] * 25 + [trap] * 5, dtype=np.float32)
    n, seen_low = 3, 20
    seen = factor_topk.sp.csr_matrix((np.ones(seen_low, dtype=bool), ([0] * seen_low, range(seen_low))), (1, 130))
    top = factor_topk.top_n(factor_topk.FactorRows(np.arange(1), user, items), seen, n)
    assert n + factor_topk.MARGIN < 25 < n + seen_low + factor_topk.MARGIN  # baits fill the candidates, not k
    assert list(top.dense_rows) == [0] and len(top.rows) == 0
    history = pd.DataFrame({"user_id": "u", "item_id": [f"i{i:03d}" for i in range(seen_low)], "weight": 1.0})
    picks = rank_batch(
        _als(user, items),
        np.array(["u"]),
        InteractionMatrix.from_frame(history),
        Scopes(np.array(["all"]), [np.arange(len(items))]),
        np.arange(seen_low),
        n,
    )
    assert list(picks.cols) == [125, 126, 127]


def _als(users: np.ndarray, items: np.ndarray) -> ALS:
    model = ALS(ALSParams(factors=users.shape[1]))
    model.restore(
        {
            "user_ids": np.array(["u"]),
            "item_ids": np.array([f"i{i:03d}" for i in range(len(items))]),
            "user_factors": users,
            "item_factors": items,
        }
    )
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_n_best_proposals_are_the_full_sorts_first_n_with_ties_and_seen_items(dtype):
    rng = np.random.default_rng(11)
    scores = rng.normal(size=(300, 40)).astype(dtype)
    scores[::7, 5:20] = -np.inf  # seen proposals
    scores[3] = 1.0  # every proposal tied: the lowest columns win
    scores[4, :12] = np.round(scores[4, :12])  # ties at the cut
    scores[6] = -np.inf  # nothing unseen
    cols = np.stack([rng.choice(1000, 40, replace=False) for _ in range(300)])
    full = np.lexsort((cols, -scores.astype(np.float64)), axis=1)
    for n in (1, 10, 40, 50):
        assert np.array_equal(factor_topk._best(scores, cols, n), full[:, :n])
    assert np.array_equal(np.sort(cols[3, factor_topk._best(scores, cols, 10)[3]]), np.sort(cols[3])[:10])
