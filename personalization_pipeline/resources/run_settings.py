"""The run's settings as a Dagster resource, so the launchpad can override them for one run."""

from typing import Any

import dagster as dg
from pydantic import Field

from ..config import Settings


class RunSettings(dg.ConfigurableResource):
    """The environment's settings with ``overrides`` on top, for this run only. In the launchpad:
    ``resources: {run_settings: {config: {overrides: {top_n: 20, als_factors: 32}}}}``; the
    overrides are recorded with the run's config. Every asset and check of the run resolves
    through here, so they all see the same settings."""

    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Setting name (as in PERSONALIZATION_<NAME>, lower case) -> value, for this run only. "
        "Paths of resources, the database, secrets, the executor and the schedules are fixed when the "
        "definitions load and cannot be overridden here.",
    )

    def resolve(self) -> Settings:
        """The settings of this run (``ValueError`` naming an unknown, fixed or invalid override)."""
        return Settings.from_env(**self.overrides)
