"""Experiment analysis: the z-test and lift interval against hand-computed cases, the verdict rule,
a planted lift found and a null experiment's false-positive rate at the test's level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.experiments.analysis import analyse, relative_lift, two_proportion_z_test, winner
from personalization_pipeline.experiments.definition import Experiment
from personalization_pipeline.synth.responses import BASE_RATES, simulate_responses

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def experiment(*treatments: str, metric: str = "acceptance_rate", min_sample: int = 500, min_lift=0.1) -> Experiment:
    share = 100 // (len(treatments) + 1)
    variants = [{"name": name, "ranking": "als", "traffic": share} for name in treatments]
    variants.insert(0, {"name": "control", "ranking": "default", "traffic": 100 - share * len(treatments)})
    return Experiment(
        name="exp",
        variants=variants,
        success_metric=metric,
        min_sample_size=min_sample,
        min_lift=min_lift,
        starts_at=NOW,
        active=True,
        salt="s",
        created_at=NOW,
    )


def counts(**arms: tuple[int, int]) -> pd.DataFrame:
    """(users, successes) per variant, the successes counted as every outcome."""
    return pd.DataFrame(
        [
            {"variant": v, "users": n, "accepted": x, "completed": x, "engaged": x, "dismissed": x}
            for v, (n, x) in arms.items()
        ]
    )


def test_z_test_and_lift_interval_match_the_hand_computed_case():
    # 60/500 = 0.12 against 40/500 = 0.08: pooled 0.1, se = sqrt(0.1 * 0.9 * (2/500)) = 0.0189737,
    # z = 0.04 / 0.0189737 = 2.10819, p = 2 * (1 - Phi(2.10819)) = 0.03502.
    z, p = two_proportion_z_test(60, 500, 40, 500)
    assert z == pytest.approx(2.10819, abs=1e-5)
    assert p == pytest.approx(0.03502, abs=1e-5)
    # ratio 1.5; se(log ratio) = sqrt(1/60 - 1/500 + 1/40 - 1/500) = 0.194079;
    # 95%: exp(ln 1.5 -/+ 1.959964 * 0.194079) - 1 = 0.02539, 1.19428.
    lift, low, high = relative_lift(60, 500, 40, 500, 0.95)
    assert (lift, low, high) == pytest.approx((0.5, 0.02539, 1.19428), abs=1e-5)
    assert two_proportion_z_test(0, 100, 0, 100) == (0.0, 1.0)  # nothing to tell apart
    assert relative_lift(5, 100, 0, 100, 0.95) == (None, None, None)  # no lift over a zero rate
    assert relative_lift(0, 100, 5, 100, 0.95) == (-1.0, None, None)


def test_verdict_follows_the_stated_rule():
    def verdict_of(exp: Experiment, **arms: tuple[int, int]) -> dict[str, str]:
        frame = analyse(exp, counts(**arms))
        return dict(zip(frame["variant"], frame["verdict"], strict=True))

    better = {"control": (500, 40), "treatment": (500, 60)}  # p = 0.035, lift +50%
    assert verdict_of(experiment("treatment"), **better) == {"control": "control", "treatment": "roll_out"}
    assert verdict_of(experiment("treatment", min_sample=501), **better)["treatment"] == "keep_testing"
    assert verdict_of(experiment("treatment", min_lift=0.6), **better)["treatment"] == "keep_testing"
    # two treatments: Bonferroni halves the level, and p = 0.035 is no longer below it
    both = verdict_of(experiment("treatment", "other"), **better, other=(500, 40))
    assert both == {"control": "control", "treatment": "keep_testing", "other": "keep_testing"}
    assert verdict_of(experiment("treatment"), control=(500, 60), treatment=(500, 40))["treatment"] == "stop"
    # dismissals: lower is better, so the variant with fewer is rolled out
    fewer = verdict_of(experiment("treatment", metric="dismissal_rate"), control=(500, 60), treatment=(500, 40))
    assert fewer["treatment"] == "roll_out"
    assert verdict_of(experiment("treatment"), control=(500, 40))["treatment"] == "keep_testing"  # nobody exposed


def test_analysis_rows_hold_rates_lift_and_p_value():
    frame = analyse(experiment("treatment"), counts(control=(500, 40), treatment=(500, 60))).set_index("variant")
    assert frame.loc["treatment", "sample_size"] == 500
    assert frame.loc["treatment", "acceptance_rate"] == pytest.approx(0.12)
    assert frame.loc["treatment", "lift"] == pytest.approx(0.5)
    assert frame.loc["treatment", "p_value"] == pytest.approx(0.03502, abs=1e-5)
    assert frame.loc["control", "acceptance_rate"] == pytest.approx(0.08)
    assert frame.loc["control", ["lift", "p_value"]].isna().all()
    assert winner(frame.reset_index()) == "treatment"


def _served(users: int, variants: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(users)],
            "variant": [variants[i % len(variants)] for i in range(users)],
            "generated_at": pd.Timestamp(NOW),
            "items": [["a", "b", "c"]] * users,
        }
    )


def _outcome_counts(served: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """What the outcome model counts: per variant, users and users with each outcome."""
    flags = {
        "accepted": events["event_type"] == "accept",
        "completed": events["event_type"] == "complete",
        "engaged": events["event_type"].isin(["view", "accept", "complete"]),
        "dismissed": events["event_type"] == "dismiss",
    }
    per_user = served[["user_id", "variant"]].copy()
    for name, flag in flags.items():
        per_user[name] = per_user["user_id"].isin(events.loc[flag, "user_id"])
    return per_user.groupby("variant").agg(users=("user_id", "size"), **{k: (k, "sum") for k in flags}).reset_index()


def test_simulated_responses_carry_the_planted_lift_and_the_analysis_finds_it():
    served = _served(8000, ("control", "treatment"))
    now = pd.Timestamp(NOW) + pd.Timedelta(hours=2)
    events = simulate_responses(served, {"treatment": 0.3}, seed=3, window=pd.Timedelta(hours=24), now=now)
    assert events["occurred_at"].between(pd.Timestamp(NOW), now).all()  # inside what was served, never ahead
    assert set(events["item_id"]) <= {"a", "b", "c"}
    table = _outcome_counts(served, events)
    rates = table.set_index("variant")["accepted"] / table.set_index("variant")["users"]
    assert rates["control"] == pytest.approx(BASE_RATES["accept"], abs=0.015)
    assert rates["treatment"] == pytest.approx(BASE_RATES["accept"] * 1.3, abs=0.015)
    results = analyse(experiment("treatment", min_sample=1000), table)
    assert winner(results) == "treatment"
    row = results.set_index("variant").loc["treatment"]
    assert row["lift_low"] < 0.3 < row["lift_high"]  # the interval covers the planted lift


def test_a_null_experiment_is_rarely_declared_a_winner():
    """Over 2,000 simulated A/A experiments the test rejects at about its level and the rule never
    rolls out more often than that."""
    rng = np.random.default_rng(11)
    n, rate, trials = 2000, 0.1, 2000
    exp = experiment("treatment", min_sample=n, min_lift=0.0)
    rejections = rollouts = 0
    for _ in range(trials):
        x_c, x_t = rng.binomial(n, rate, size=2)
        result = analyse(exp, counts(control=(n, int(x_c)), treatment=(n, int(x_t)))).set_index("variant")
        rejections += bool(result.loc["treatment", "p_value"] < 0.05)
        rollouts += result.loc["treatment", "verdict"] == "roll_out"
    assert 0.035 <= rejections / trials <= 0.065  # about the 5% level (binomial sd 0.5%)
    assert rollouts / trials <= 0.035  # only the improving half of the rejections roll out


def test_window_bounds_each_response():
    served = _served(2000, ("control",))
    events = simulate_responses(
        served, {}, seed=1, window=pd.Timedelta(minutes=30), now=pd.Timestamp(NOW) + timedelta(days=2)
    )
    assert (events["occurred_at"] <= pd.Timestamp(NOW) + pd.Timedelta(minutes=30)).all()
    again = simulate_responses(
        served, {}, seed=1, window=pd.Timedelta(minutes=30), now=pd.Timestamp(NOW) + timedelta(days=2)
    )
    pd.testing.assert_frame_equal(events, again)  # a seed gives the same responses
