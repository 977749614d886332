"""Helpers for tests that run whole jobs: an isolated environment and served-table reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from personalization_pipeline.config import Settings


@contextmanager
def pipeline_env(root: Path, database_url: str, **overrides: object) -> Iterator[pytest.MonkeyPatch]:
    """Point every PERSONALIZATION_ setting at ``root`` and ``database_url`` (plus overrides)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONALIZATION_RUNTIME_DIR", str(root))
        env.setenv("PERSONALIZATION_DATABASE_URL", database_url)
        for name, value in overrides.items():
            env.setenv(f"PERSONALIZATION_{name.upper()}", str(value))
        yield env


def served_ranks(settings: Settings) -> pd.DataFrame:
    """All rows of personalization_ranks, ordered by (user_id, scope)."""
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT user_id, scope, items, model_version, generated_at, valid_until FROM personalization_ranks "
            "ORDER BY user_id, scope"
        ).fetchall()
    return pd.DataFrame(rows, columns=["user_id", "scope", "items", "model_version", "generated_at", "valid_until"])
