"""Dagster asset checks beyond the dbt tests: privacy gates and the regression gate, all blocking publish."""

from .privacy import privacy_checks
from .regression import regression_gate

__all__ = ["privacy_checks", "regression_gate"]
