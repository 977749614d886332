"""Drawing viewed items from the preference model without scoring the whole catalogue.

Small catalogues are scored exactly. In larger ones every user is exposed to
``EXPOSED_ITEMS`` candidates drawn from a cheap proposal (a category picked by the
user's affinity to its centre, then an item of it by popularity); views are then
resampled among the candidates with importance weights, which approximates the exact
softmax at a cost that does not grow with the catalogue.
"""

from __future__ import annotations

import numpy as np

from personalization_pipeline.synth.latent import AFFINITY_SCALE, POPULARITY_WEIGHT, ItemSpace

EXPOSED_ITEMS = 1024
PROPOSAL_SHARPNESS = 0.5 * AFFINITY_SCALE


def sample_rows(cdf: np.ndarray, rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One column per (row, uniform) pair, drawn from that row of ``cdf`` (changed in place)."""
    width = cdf.shape[1]
    cdf += np.arange(cdf.shape[0])[:, None]
    picked = np.searchsorted(cdf.ravel(), rows + uniforms, side="right") - rows * width
    return np.clip(picked, 0, width - 1)


def _normalised_cdf(logits: np.ndarray) -> np.ndarray:
    """Cumulative softmax along the last axis (``logits`` is overwritten)."""
    logits -= logits.max(axis=-1, keepdims=True)
    cdf = np.cumsum(np.exp(logits, out=logits), axis=-1)
    cdf /= cdf[..., -1:]
    return cdf


def exposure(
    rng: np.random.Generator, space: ItemSpace, taste: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate items per user and their log proposal probability (up to a constant)."""
    n_users = len(taste)
    if space.size <= EXPOSED_ITEMS:
        everything = np.broadcast_to(np.arange(space.size), (n_users, space.size))
        return everything, np.zeros(everything.shape)
    category_logits = PROPOSAL_SHARPNESS * (taste @ space.category_centres.T)
    category_logits += space.log_category_mass
    category_logits -= category_logits.max(axis=1, keepdims=True)
    log_share = category_logits - np.log(np.exp(category_logits).sum(axis=1, keepdims=True))
    rows = np.repeat(np.arange(n_users), EXPOSED_ITEMS)
    category_cdf = np.cumsum(np.exp(log_share), axis=1)
    category_cdf /= category_cdf[:, -1:]
    category = sample_rows(category_cdf, rows, rng.random(rows.size))
    slot = np.searchsorted(space.popularity_cdf, category + rng.random(rows.size), side="right")
    slot = np.clip(slot, space.category_bounds[category], space.category_bounds[category + 1] - 1)
    items = space.by_category[slot]
    log_q = (
        log_share[rows, category]
        + POPULARITY_WEIGHT * space.log_popularity[items]
        - space.log_category_mass[category]
    )
    return items.reshape(n_users, EXPOSED_ITEMS), log_q.reshape(n_users, EXPOSED_ITEMS)


def draw_views(
    rng: np.random.Generator,
    space: ItemSpace,
    tastes: list[np.ndarray],
    owner: np.ndarray,
    phase: np.ndarray,
) -> np.ndarray:
    """Viewed item per view: view ``j`` is by user ``owner[j]`` with taste ``tastes[phase[j]]``."""
    candidates, log_q = exposure(rng, space, np.mean(tastes, axis=0))
    uniforms = rng.random(owner.size)
    affinity = np.matmul(space.vectors[candidates], np.stack(tastes, axis=2))
    logits = AFFINITY_SCALE * affinity.transpose(2, 0, 1)
    logits += POPULARITY_WEIGHT * space.log_popularity[candidates] - log_q
    cdfs = _normalised_cdf(logits)
    item = np.empty(owner.size, dtype=np.int64)
    for index, cdf in enumerate(cdfs):
        mask = phase == index
        rows = owner[mask]
        item[mask] = candidates[rows, sample_rows(cdf, rows, uniforms[mask])]
    return item
