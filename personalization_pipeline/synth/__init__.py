"""Sample raw data generator with a planted preference structure."""

from personalization_pipeline.synth.generator import TABLES, generate

__all__ = ["TABLES", "generate"]
