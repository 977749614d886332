"""Dagster asset checks beyond the dbt tests: privacy gates that block publishing."""

from .privacy import privacy_checks

__all__ = ["privacy_checks"]
