"""An experiment's definition, validated the same way from the admin routes and the command line.

An experiment splits the opted-in users with history between two or more variants by traffic
percentages summing to 100; one variant is named ``control``. Each variant names the ranking
configuration its users are served (:data:`RANKINGS`). At most one experiment is active at a
time, so a user's served list comes from one variant at most.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

CONTROL = "control"
RANKINGS: dict[str, str] = {
    "default": "what the nightly job serves outside any experiment (the best evaluated model, the re-ranker "
    "when it wins clearly, per-user models, the cold-start blend)",
    "als": "ALS with the cold-start blend",
    "ease": "EASE with the cold-start blend",
    "reranked": "the re-ranker over every source's candidates (the default ranking when none is trained)",
    "popularity": "the scope's most popular unseen items (not personalised)",
}
"""Ranking configurations a variant may name, and what they serve."""
Ranking = Literal["default", "als", "ease", "reranked", "popularity"]

METRICS: dict[str, str] = {
    "acceptance_rate": "share of exposed users who accepted an item in an attribution window",
    "completion_rate": "share of exposed users who completed an item in an attribution window",
    "engagement_rate": "share of exposed users who viewed, clicked, accepted or completed an item in a window",
    "dismissal_rate": "share of exposed users who dismissed an item in an attribution window (lower is better)",
}
"""Outcome rates computed per variant; any may be the success metric."""
Metric = Literal["acceptance_rate", "completion_rate", "engagement_rate", "dismissal_rate"]
LOWER_IS_BETTER = frozenset({"dismissal_rate"})

NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
MAX_NAME = 63
MAX_TEXT = 2000
MAX_VARIANTS = 10


EXAMPLE: dict[str, Any] = {
    "name": "rerank-vs-als",
    "description": "Re-ranked lists against plain ALS",
    "hypothesis": "Re-ranking lifts acceptance by 10% or more",
    "variants": [
        {"name": "control", "ranking": "als", "traffic": 50},
        {"name": "reranked", "ranking": "reranked", "traffic": 50},
    ],
    "success_metric": "acceptance_rate",
    "min_sample_size": 1000,
}
"""A valid definition, the OpenAPI example of the create route."""


def _forbid(example: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class VariantSpec(BaseModel):
    """One arm: its name, the ranking its users get, its share of the traffic."""

    model_config = _forbid({"name": "reranked", "ranking": "reranked", "traffic": 50})

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="Variant name.")
    ranking: Ranking = Field(
        description="Ranking configuration: " + "; ".join(f"`{k}` {v}" for k, v in RANKINGS.items())
    )
    traffic: StrictInt = Field(ge=1, le=100, description="Percent of the experiment's users (all sum to 100).")


class ExperimentSpec(BaseModel):
    """What an admin submits to create an experiment; unknown fields are rejected."""

    model_config = _forbid(EXAMPLE)

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="Unique experiment name.")
    description: str = Field("", max_length=MAX_TEXT, description="What is tested.")
    hypothesis: str = Field("", max_length=MAX_TEXT, description="The expected effect.")
    starts_at: AwareDatetime | None = Field(None, description="When assignment starts (default: now).")
    ends_at: AwareDatetime | None = Field(None, description="When it ends by itself (default: when ended).")
    variants: list[VariantSpec] = Field(min_length=2, max_length=MAX_VARIANTS, description="The arms.")
    success_metric: Metric = Field("acceptance_rate", description="The rate the verdict is decided on.")
    min_sample_size: StrictInt = Field(1000, ge=1, le=1_000_000_000, description="Users per arm before a verdict.")
    min_lift: StrictFloat | StrictInt = Field(
        0.10, ge=0, le=10, description="Relative improvement over control a rollout needs (0.10 = 10%)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if CONTROL not in names:
            raise ValueError(f"one variant must be named {CONTROL!r}")
        total = sum(variant.traffic for variant in self.variants)
        if total != 100:
            raise ValueError(f"variant traffic must sum to 100, got {total}")
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class Experiment(ExperimentSpec):
    """A stored experiment: the definition plus its state."""

    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    active: bool = Field(description="False once ended.")
    salt: str = Field(description="Mixed into the assignment hash: from the settings' seed and the name.")
    created_at: AwareDatetime
    ended_at: AwareDatetime | None = None

    def running(self, now: datetime | None = None) -> bool:
        """Active, started and not past its end at ``now`` (default: the current time)."""
        now = now or datetime.now(UTC)
        return self.active and self.starts_at <= now and (self.ends_at is None or now < self.ends_at)
