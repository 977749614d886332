"""The serving PostgreSQL: a configured server or the embedded pgserver one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ..config import Settings
from ..serving.database import normalize_url, start_embedded_server


class ServingDatabaseResource(dg.ConfigurableResource):
    """Connection URL of the serving database; the embedded server starts on first use."""

    url: str | None = None
    embedded_dir: str

    def get_url(self) -> str:
        return normalize_url(self.url) if self.url else start_embedded_server(Path(self.embedded_dir))

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingDatabaseResource:
        return cls(url=settings.database_url, embedded_dir=str(settings.embedded_pg_dir))
