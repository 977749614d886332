"""Ranking metrics against hand-computed values and an independent implementation (ranx)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ranx

from personalization_pipeline.recsys.metrics import (
    average_precision_at_k,
    evaluate,
    evaluate_per_user,
    hit_rate_at_k,
    ndcg_at_k,
    paired_stderr,
    precision_at_k,
    recall_at_k,
)

LOG2_3 = math.log2(3)  # 1.58496
ALL = (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k, hit_rate_at_k)


def metrics(ranked, relevant, k):
    """[precision, recall, ndcg, ap, hit rate], comparable to 5-decimal hand values."""
    return [pytest.approx(f(ranked, relevant, k), abs=1e-5) for f in ALL]


def test_two_hits_among_three_relevant():
    # hits at positions 2 (b) and 5 (e); x is never recommended
    # precision = 2/5 = 0.4 ; recall = 2/3
    # DCG  = 1/log2(3) + 1/log2(6) = 0.63093 + 0.38685 = 1.01778
    # IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5 = 2.13093  (min(3, 5) = 3)
    # NDCG = 1.01778 / 2.13093 = 0.47762
    # AP   = (1/2 + 2/5) / min(3, 5) = 0.9 / 3 = 0.3
    assert metrics(["a", "b", "c", "d", "e"], {"b", "e", "x"}, 5) == [0.4, 0.66667, 0.47762, 0.3, 1.0]


def test_fewer_relevant_than_k():
    # one relevant item, found first: precision = 1/4, everything else is perfect
    # IDCG over min(1, 4) = 1 position = 1 ; AP = (1/1) / min(1, 4) = 1
    assert metrics(["a", "b", "c", "d"], {"a"}, 4) == [0.25, 1.0, 1.0, 1.0, 1.0]


def test_only_first_k_positions_count():
    # relevant c, d sit at positions 3 and 4: nothing in the first 2
    assert metrics(["a", "b", "c", "d"], {"c", "d"}, 2) == [0.0, 0.0, 0.0, 0.0, 0.0]
    # k = 3: hit at 3 -> precision 1/3, recall 1/2
    # DCG = 1/log2(4) = 0.5 ; IDCG = 1 + 1/log2(3) = 1.63093 -> NDCG = 0.30657
    # AP = (1/3) / min(2, 3) = 0.16667
    assert metrics(["a", "b", "c", "d"], {"c", "d"}, 3) == [0.33333, 0.5, 0.30657, 0.16667, 1.0]


def test_more_relevant_than_k():
    # both slots hit; recall = 2/4 ; IDCG and AP normalise over min(4, 2) = 2
    # AP = (1/1 + 2/2) / 2 = 1
    assert metrics(["a", "b"], {"a", "b", "c", "d"}, 2) == [1.0, 0.5, 1.0, 1.0, 1.0]


def test_list_shorter_than_k_is_not_rewarded():
    # one hit in a one-item list with k = 3: precision = 1/3 (denominator k)
    assert precision_at_k(["a"], {"a"}, 3) == pytest.approx(1 / 3)


def test_duplicate_counts_once_but_keeps_its_slot():
    # a, a, b with relevant {a, b}: hits at 1 and 3 (second a is not a hit)
    # precision = 2/3 ; recall = 2/2
    # DCG = 1 + 1/log2(4) = 1.5 ; IDCG = 1 + 1/log2(3) = 1.63093 -> NDCG = 0.91972
    # AP = (1/1 + 2/3) / 2 = 0.83333
    assert metrics(["a", "a", "b"], {"a", "b"}, 3) == [0.66667, 1.0, 0.91972, 0.83333, 1.0]


def test_empty_list_and_empty_relevant_set_score_zero():
    assert metrics([], {"a"}, 5) == [0.0] * 5
    assert metrics(["a", "b"], set(), 5) == [0.0] * 5


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        precision_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError):
        recs = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "rank": [1]})
        evaluate(recs, recs[["user_id", "item_id"]], 0, 1, 1)


def test_evaluate_hand_case():
    recs = pd.DataFrame(
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u1", "c", 3),
            ("u1", "f", 4),  # f is beyond k = 3
            ("u2", "c", 1),
            ("u2", "d", 2),
            ("u3", "e", 1),  # u3 has no truth: coverage only
        ],
        columns=["user_id", "item_id", "rank"],
    ).sample(frac=1.0, random_state=3)  # row order must not matter
    truth = pd.DataFrame(
        [("u1", "b"), ("u1", "f"), ("u2", "c"), ("u4", "a")],  # u4 has no recommendations
        columns=["user_id", "item_id"],
    )
    result = evaluate(recs, truth, k=3, catalog_size=10, n_users_total=6)
    # u1: hit at 2 of 2 relevant -> P 1/3, R 1/2, AP (1/2)/2 = 0.25,
    #     NDCG (1/log2 3) / (1 + 1/log2 3) = 0.63093 / 1.63093 = 0.38685
    # u2: hit at 1 of 1 relevant -> P 1/3, R 1, NDCG 1, AP 1
    # u4: no list -> all 0
    ndcg_u1 = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert result["precision"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)  # 2/9
    assert result["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert result["ndcg"] == pytest.approx((ndcg_u1 + 1 + 0) / 3)
    assert result["map"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert result["hit_rate"] == pytest.approx(2 / 3)
    # items in any top-3: a, b, c, d, e (f is at rank 4) -> 5 / 10
    assert result["catalog_coverage"] == pytest.approx(0.5)
    # users with a list: u1, u2, u3 -> 3 / 6
    assert result["user_coverage"] == pytest.approx(0.5)
    assert result["users_evaluated"] == 3.0


def test_evaluate_without_users_to_evaluate():
    recs = pd.DataFrame({"user_id": ["u1"], "item_id": ["a"], "rank": [1]})
    result = evaluate(recs, pd.DataFrame({"user_id": [], "item_id": []}, dtype=str), 5, 4, 2)
    assert result["precision"] == 0.0 and result["users_evaluated"] == 0.0
    assert result["catalog_coverage"] == 0.25 and result["user_coverage"] == 0.5


def test_evaluate_matches_per_user_functions():
    rng = np.random.default_rng(7)
    items = [f"i{j}" for j in range(15)]
    names = ("precision", "recall", "ndcg", "map", "hit_rate")  # same order as ALL
    rec_rows, truth_rows, expected = [], [], {name: [] for name in names}
    for u in range(60):
        user = f"u{u}"
        # duplicates on purpose
        ranked = list(rng.choice(items, size=int(rng.integers(0, 9)), replace=True))
        relevant = set(rng.choice(items, size=int(rng.integers(0, 5)), replace=False))
        ranks = np.cumsum(rng.integers(1, 3, size=len(ranked)))  # gaps in ranks
        rec_rows += [(user, item, int(r)) for item, r in zip(ranked, ranks, strict=True)]
        truth_rows += [(user, item) for item in relevant]
        if relevant:
            for name, fn in zip(expected, ALL, strict=True):
                expected[name].append(fn(ranked, relevant, 5))
    result = evaluate(
        pd.DataFrame(rec_rows, columns=["user_id", "item_id", "rank"]),
        pd.DataFrame(truth_rows, columns=["user_id", "item_id"]),
        k=5,
        catalog_size=15,
        n_users_total=60,
    )
    for name, values in expected.items():
        assert result[name] == pytest.approx(np.mean(values)), name
    assert result["users_evaluated"] == len(expected["precision"])


def test_metrics_agree_with_ranx_on_random_lists():
    rng = np.random.default_rng(3)
    items = [f"i{n}" for n in range(30)]
    rec_rows, truth_rows, qrels, run = [], [], {}, {}
    for u in range(40):
        user = f"u{u}"
        ranked = list(rng.choice(items, size=10, replace=False))
        relevant = list(rng.choice(items, size=int(rng.integers(1, 8)), replace=False))  # at most K: MAP agrees
        rec_rows += [(user, item, rank) for rank, item in enumerate(ranked, start=1)]
        truth_rows += [(user, item) for item in relevant]
        qrels[user] = dict.fromkeys(relevant, 1)
        run[user] = {item: float(10 - rank) for rank, item in enumerate(ranked)}
    ours = evaluate(
        pd.DataFrame(rec_rows, columns=["user_id", "item_id", "rank"]),
        pd.DataFrame(truth_rows, columns=["user_id", "item_id"]),
        k=10,
        catalog_size=30,
        n_users_total=40,
    )
    theirs = ranx.evaluate(
        ranx.Qrels(qrels), ranx.Run(run), ["ndcg@10", "precision@10", "recall@10", "map@10", "hit_rate@10"]
    )
    for name in ("ndcg", "precision", "recall", "map", "hit_rate"):
        assert ours[name] == pytest.approx(float(theirs[f"{name}@10"]), abs=1e-9), name


def test_per_user_figures_and_the_paired_standard_error_of_a_difference():
    truth = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"]})
    good = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "x"], "rank": 1})
    poor = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "x", "x"], "rank": 1})
    summary, per_user = evaluate_per_user(good, truth, k=1, catalog_size=4, n_users_total=3)
    assert per_user["ndcg"].to_dict() == {"u1": 1.0, "u2": 1.0, "u3": 0.0}
    assert summary["ndcg"] == pytest.approx(2 / 3)
    _, other = evaluate_per_user(poor, truth, k=1, catalog_size=4, n_users_total=3)
    # differences 0, 1, 0: mean 1/3, sample standard deviation sqrt(1/3), over sqrt(3) users = 1/3
    assert paired_stderr(per_user["ndcg"], other["ndcg"]) == pytest.approx(1 / 3)
    assert paired_stderr(per_user["ndcg"], per_user["ndcg"]) == 0.0
