"""The regression gate's rule, and which evaluated model serves."""

from __future__ import annotations

from personalization_pipeline.steps.gate import Figure, decide
from personalization_pipeline.steps.rank import pick_serving


def test_a_first_publish_passes():
    assert decide(Figure("ease-1", 0.2), None, 0.05).passed


def test_a_challenger_worse_than_the_tolerance_is_blocked_with_both_figures():
    result = decide(Figure("ranker-2", 0.18), Figure("ease-1", 0.20), 0.05)
    assert not result.passed
    assert "ranker-2 NDCG@K 0.1800" in result.reason and "ease-1 0.2000" in result.reason and "0.1900" in result.reason


def test_a_small_drop_within_the_tolerance_and_a_republished_model_pass():
    assert decide(Figure("ranker-2", 0.191), Figure("ease-1", 0.20), 0.05).passed
    assert decide(Figure("ease-1", 0.10), Figure("ease-1", 0.20), 0.05).passed


def test_a_drop_within_the_noise_of_small_samples_passes():
    champion = Figure("ease-1", 0.30, stderr=0.02)
    assert decide(Figure("ranker-2", 0.25, stderr=0.02), champion, 0.05).passed  # 0.05 < 2 x 0.028
    assert not decide(Figure("ranker-2", 0.22, stderr=0.02), champion, 0.05).passed


def test_a_challenger_without_an_evaluation_is_blocked():
    assert not decide(None, Figure("ease-1", 0.20), 0.05).passed


def test_the_reranker_serves_only_when_it_beats_the_best_personal_model_beyond_the_noise():
    names = ["als", "ease", "ranker"]
    ease, als = Figure("ease-1", 0.20, 0.0075), Figure("als-1", 0.16, 0.0072)
    close = {"als": als, "ease": ease, "ranker": Figure("ranker-1", 0.205, 0.0075)}  # +0.005 < one SE (0.0106)
    assert pick_serving(close, names) == "ease"
    clear = {**close, "ranker": Figure("ranker-2", 0.215, 0.0075)}
    assert pick_serving(clear, names) == "ranker"
    assert pick_serving(close, names, margin_stderrs=0.0) == "ranker"  # an operator may serve it whenever best
    assert pick_serving({"als": als, "ease": ease}, names) == "ease"
    assert pick_serving({"als": ease, "ease": ease}, names) == "als"  # a tie goes to the earlier name
    assert pick_serving({"ranker": ease}, names) == "ranker"


def test_the_noise_of_the_per_user_gain_is_used_when_recorded():
    names = ["ease", "ranker"]
    ease = Figure("ease-1", 0.20, 0.0100)
    # +0.012 is below one SE of two independent means (0.0141) but well above the paired SE (0.004)
    ranker = Figure("ranker-1", 0.212, 0.0100, gain_stderr=0.004)
    assert pick_serving({"ease": ease, "ranker": ranker}, names) == "ranker"
    unpaired = Figure("ranker-1", 0.212, 0.0100)
    assert pick_serving({"ease": ease, "ranker": unpaired}, names) == "ease"
