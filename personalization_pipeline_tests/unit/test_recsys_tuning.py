"""The seeded random search: its trials, its choice, its count and its time budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.tuning import dimension_fields, draw_configs, random_search

GRID = {"a": [1, 2, 3], "b": [0.1, 0.2], "decay": [{"h": None, "f": 0.5}, {"h": 0.0}]}
CURRENT = {"a": 1, "b": 0.1, "h": None, "f": 0.25}


def _score(config):
    return config["a"] * 10 + config["b"] - (config["h"] == 0.0)


def test_the_same_seed_gives_the_same_trials_and_the_first_is_the_configuration_in_force():
    first = random_search(GRID, CURRENT, _score, seed=3, max_trials=6, budget_seconds=1e9)
    again = random_search(GRID, CURRENT, _score, seed=3, max_trials=6, budget_seconds=1e9)
    other = random_search(GRID, CURRENT, _score, seed=4, max_trials=6, budget_seconds=1e9)
    assert [t.config for t in first.trials] == [t.config for t in again.trials]
    assert [t.config for t in first.trials] != [t.config for t in other.trials]
    assert first.trials[0].config == CURRENT and len(first.trials) == 6 and first.stopped_by == "trials"
    keys = [tuple(sorted(t.config.items(), key=str)) for t in first.trials]
    assert len(set(keys)) == len(keys)  # never the same configuration twice
    assert all(t.config["h"] in (None, 0.0) for t in first.trials)
    assert all(t.config["f"] == 0.5 for t in first.trials[1:] if t.config["h"] is None)  # a mapping sets both
    assert first.best.score == max(t.score for t in first.trials)


def test_a_small_grid_runs_out_and_ties_go_to_the_earlier_trial():
    result = random_search({"a": [1, 2]}, {"a": 1}, lambda c: 1.0, seed=0, max_trials=10, budget_seconds=1e9)
    assert [t.config["a"] for t in result.trials] == [1, 2] and result.stopped_by == "grid"
    assert result.best.number == 0  # equal scores: the configuration in force stays


def test_the_time_budget_stops_before_a_trial_that_would_overrun_it():
    now = [0.0]

    def slow(config):
        now[0] += 10.0  # every trial takes 10 s on this clock
        return _score(config)

    result = random_search(GRID, CURRENT, slow, seed=1, max_trials=12, budget_seconds=35, clock=lambda: now[0])
    # trial 3 would start at 30 s with a longest trial of 10 s: past 35 s
    assert len(result.trials) == 3 and result.stopped_by == "budget"
    tiny = random_search(GRID, CURRENT, slow, seed=1, max_trials=12, budget_seconds=0.001, clock=lambda: now[0])
    assert len(tiny.trials) == 1  # the configuration in force is always scored


def test_dimensions_name_the_settings_they_set():
    assert dimension_fields("a", [1, 2]) == {"a"}
    assert dimension_fields("decay", GRID["decay"]) == {"h", "f"}
    assert len(draw_configs({"a": [1]}, {"a": 1}, seed=0, max_trials=5)) == 1


def test_a_per_user_score_keeps_the_configuration_in_force_unless_the_best_beats_it_clearly():
    users = pd.Series(np.random.default_rng(0).normal(0.3, 0.2, 400), index=[f"u{i:03d}" for i in range(400)])
    swing = np.where(np.arange(400) % 2 == 0, 1.0, -1.0)

    def scored(gain: float, spread: float):
        def score(config):
            if config["a"] == 1:
                return users
            return (users + gain + spread * swing).drop("u000")  # a user the other trial could not score

        return score

    # a mean gain of 0.01 that swings by 0.3 from user to user: standard error 0.015, z 0.67, p 0.25
    close = random_search({"a": [1, 2]}, {"a": 1}, scored(0.01, 0.3), seed=0, max_trials=2, budget_seconds=1e9)
    assert close.trials[0].per_user is not None and len(close.trials[0].per_user) == 400
    assert close.best.number == 1 and close.chosen(0.05).number == 0 and close.chosen(0.3).number == 1
    clear = random_search({"a": [1, 2]}, {"a": 1}, scored(0.01, 0.01), seed=0, max_trials=2, budget_seconds=1e9)
    assert clear.chosen(0.05).number == 1  # the same gain, consistent across users
    # a gain of 0.04 with standard error 0.02 (z 2, p 0.023) is significant alone, not as the best of three
    lucky = random_search({"a": [1, 2, 3]}, {"a": 1}, scored(0.04, 0.4), seed=0, max_trials=2, budget_seconds=1e9)
    assert lucky.chosen(0.05).number == 1
    three = {"a": [1, 2, 3]}
    of_three = random_search(three, {"a": 1}, scored(0.04, 0.4), seed=0, max_trials=3, budget_seconds=1e9)
    assert of_three.best.number == 1 and of_three.chosen(0.05).number == 0  # 0.023 > 0.05 / 2
    floats = random_search({"a": [1, 2]}, {"a": 1}, lambda c: float(c["a"]), seed=0, max_trials=2, budget_seconds=1e9)
    assert floats.chosen(0.05).number == 1  # without per-user scores the best is chosen
