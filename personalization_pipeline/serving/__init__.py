"""PostgreSQL serving side: tables, atomic publish, retention, settings, auth and the lookup app.

``app`` (FastAPI) is imported on its own: ``from personalization_pipeline.serving.app import create_app``.
"""

from personalization_pipeline.serving.auth import Principal, decode_token, mint_token
from personalization_pipeline.serving.database import resolve_database_url
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot
from personalization_pipeline.serving.retention import purge_expired
from personalization_pipeline.serving.schema import ensure_schema

__all__ = [
    "Principal",
    "Snapshot",
    "decode_token",
    "ensure_schema",
    "mint_token",
    "publish_snapshot",
    "purge_expired",
    "resolve_database_url",
]
