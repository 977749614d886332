"""Experiment definitions are validated; assignment is deterministic, stable and splits traffic."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest
from pydantic import ValidationError

from personalization_pipeline.experiments.assignment import assign
from personalization_pipeline.experiments.definition import Experiment, ExperimentSpec

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SPEC = {
    "name": "three-way",
    "variants": [
        {"name": "control", "ranking": "default", "traffic": 50},
        {"name": "als", "ranking": "als", "traffic": 30},
        {"name": "pop", "ranking": "popularity", "traffic": 20},
    ],
}


def stored(salt: str = "a1b2", **changes: object) -> Experiment:
    return Experiment.model_validate(
        {**SPEC, "starts_at": NOW, "active": True, "salt": salt, "created_at": NOW} | changes
    )


@pytest.fixture(scope="module")
def users() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE users AS SELECT 'u' || i AS user_id FROM range(100000) AS t(i)")
    return con


def test_traffic_split_within_tolerance_on_100k_ids(users):
    assigned = assign(users, stored(), "SELECT user_id FROM users", NOW)
    shares = assigned["variant"].value_counts(normalize=True)
    assert len(assigned) == 100_000 and assigned["user_id"].is_unique
    assert shares.to_dict() == pytest.approx({"control": 0.5, "als": 0.3, "pop": 0.2}, abs=0.01)


def test_assignment_is_deterministic_and_independent_across_experiments(users):
    first = assign(users, stored(), "SELECT user_id FROM users", NOW)
    again = assign(users, stored(), "SELECT user_id FROM users ORDER BY user_id DESC", NOW)
    assert first.equals(again)  # the same ids give the same variants, in any order, in any run
    subset = assign(users, stored(), "SELECT user_id FROM users WHERE user_id LIKE 'u1%'", NOW)
    merged = subset.merge(first, on="user_id", suffixes=("", "_all"))
    assert (merged["variant"] == merged["variant_all"]).all()  # who else is assigned does not matter
    other = assign(users, stored(salt="ffff"), "SELECT user_id FROM users", NOW)
    same = (other["variant"] == first["variant"]).mean()
    assert same == pytest.approx(0.5**2 + 0.3**2 + 0.2**2, abs=0.01)  # another salt reshuffles independently


def test_an_experiment_that_is_not_running_assigns_everyone_to_control(users):
    ended = stored(active=False)
    assert not ended.running(NOW)
    assert set(assign(users, ended, "SELECT user_id FROM users", NOW)["variant"]) == {"control"}
    future = stored(starts_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert not future.running(NOW) and future.running(datetime(2027, 1, 2, tzinfo=UTC))
    finished = stored(ends_at=datetime(2026, 12, 2, tzinfo=UTC))
    assert finished.running(NOW) and not finished.running(datetime(2026, 12, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            {
                "variants": [
                    {"name": "control", "ranking": "als", "traffic": 50},
                    {"name": "b", "ranking": "als", "traffic": 40},
                ]
            },
            "sum to 100",
        ),
        (
            {
                "variants": [
                    {"name": "a", "ranking": "als", "traffic": 50},
                    {"name": "b", "ranking": "als", "traffic": 50},
                ]
            },
            "control",
        ),
        (
            {
                "variants": [
                    {"name": "control", "ranking": "als", "traffic": 50},
                    {"name": "control", "ranking": "ease", "traffic": 50},
                ]
            },
            "unique",
        ),
        ({"variants": [{"name": "control", "ranking": "als", "traffic": 100}]}, "at least 2"),
        (
            {
                "variants": [
                    {"name": "control", "ranking": "magic", "traffic": 50},
                    {"name": "b", "ranking": "als", "traffic": 50},
                ]
            },
            "ranking",
        ),
        (
            {
                "variants": [
                    {"name": "control", "ranking": "als", "traffic": "50"},
                    {"name": "b", "ranking": "als", "traffic": 50},
                ]
            },
            "integer",
        ),
        ({"name": "x" * 64}, "at most 63"),
        ({"name": "Bad Name; DROP TABLE"}, "pattern"),
        ({"owner": "mallory"}, "Extra inputs"),
        ({"success_metric": "revenue"}, "success_metric"),
        ({"min_sample_size": 0}, "greater than or equal to 1"),
        ({"starts_at": "2026-12-01T00:00:00"}, "timezone"),
        ({"starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"}, "after starts_at"),
    ],
)
def test_invalid_definitions_are_refused_naming_the_problem(change, complaint):
    with pytest.raises(ValidationError, match=complaint):
        ExperimentSpec.model_validate({**SPEC, **change})


def test_a_valid_definition_keeps_its_fields():
    spec = ExperimentSpec.model_validate({**SPEC, "hypothesis": "h", "min_lift": 0.2})
    assert [v.traffic for v in spec.variants] == [50, 30, 20]
    assert (spec.success_metric, spec.min_sample_size, spec.min_lift) == ("acceptance_rate", 1000, 0.2)
