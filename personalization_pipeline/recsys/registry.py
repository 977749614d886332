"""The registered recommenders: a new model is one module plus one entry here.

Training assets, evaluation and the model store are driven by this mapping; hyper-parameters
come from the model's ``Params`` defaults, overridden field by field by settings named
``<model>_<field>`` (e.g. ``PERSONALIZATION_ALS_FACTORS``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from personalization_pipeline.recsys.als import ALS
from personalization_pipeline.recsys.base import Recommender
from personalization_pipeline.recsys.ease import EASE
from personalization_pipeline.recsys.per_user import PerUserComposite
from personalization_pipeline.recsys.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "als": ALS,
    "ease": EASE,
    "per_user": PerUserComposite,
}
GLOBAL_MODELS: tuple[str, ...] = ("popularity", "als", "ease")
"""Models fitted on the whole history by the generic training asset and evaluated offline; the
per-user composite is fitted by its own step over the serving global model."""
PERSONAL_MODELS: tuple[str, ...] = ("als", "ease")
"""Models that rank per user; the served ranking comes from the best of them (popularity is the fallback)."""


def build(name: str, settings: Any) -> Recommender:
    """An unfitted ``name`` model with its defaults overridden by ``settings.<name>_<field>`` where set."""
    cls = MODELS[name]
    overrides = {
        f.name: value for f in fields(cls.Params) if (value := getattr(settings, f"{name}_{f.name}", None)) is not None
    }
    if "seed" in {f.name for f in fields(cls.Params)}:
        overrides.setdefault("seed", settings.seed)
    return cls(cls.Params(**overrides))
