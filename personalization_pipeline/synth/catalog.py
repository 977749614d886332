"""The item catalogue: the items table plus each item's latent vector and popularity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personalization_pipeline.synth import latent
from personalization_pipeline.synth.clock import DAY, Window, timestamps
from personalization_pipeline.synth.ids import id_width, padded_ids
from personalization_pipeline.synth.vocab import SCOPES, TITLE_ADJECTIVES, TITLE_NOUNS

SCOPE_NAMES = tuple(SCOPES)
CATEGORY_SCOPE = np.array([i for i, cats in enumerate(SCOPES.values()) for _ in cats])
CATEGORY_NAMES = tuple(cat for cats in SCOPES.values() for cat in cats)
SCOPE_SHARES = np.array([0.40, 0.35, 0.25])


@dataclass(frozen=True)
class Catalog:
    """Items table and the hidden item side of the preference model."""

    table: pa.Table
    ids: pa.Array
    space: latent.ItemSpace


def build_catalog(rng: np.random.Generator, n_items: int, window: Window) -> Catalog:
    """Items spread over scopes and categories, all approved before the window opens."""
    per_scope = [len(cats) for cats in SCOPES.values()]
    category_share = np.concatenate(
        [share * rng.dirichlet(np.full(n, 4.0)) for share, n in zip(SCOPE_SHARES, per_scope, strict=True)]
    )
    category = rng.choice(len(CATEGORY_NAMES), size=n_items, p=category_share)
    space = latent.item_space(rng, category, len(CATEGORY_NAMES))

    created = window.start - ((4 + rng.random(n_items) * 700) * DAY).astype(np.int64)
    approved = created + (1_800 + rng.random(n_items) * 3 * DAY).astype(np.int64)
    adjective = pa.array(TITLE_ADJECTIVES).take(rng.integers(len(TITLE_ADJECTIVES), size=n_items))
    noun = pa.array(TITLE_NOUNS).take(rng.integers(len(TITLE_NOUNS), size=n_items))
    category_names = pa.array(CATEGORY_NAMES).take(category)
    topic = pc.utf8_capitalize(category_names)
    ids = padded_ids("i", np.arange(n_items), id_width(n_items, 6))
    table = pa.table(
        {
            "item_id": ids,
            "scope": pa.array(SCOPE_NAMES).take(CATEGORY_SCOPE[category]),
            "category": category_names,
            "created_at": timestamps(created),
            "approved_at": timestamps(approved),
            "title": pc.binary_join_element_wise(adjective, topic, noun, " "),
        }
    )
    return Catalog(table=table, ids=ids, space=space)
