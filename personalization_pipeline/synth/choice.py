"""Drawing viewed items from the preference model without scoring the whole catalogue.

Small catalogues are scored exactly. In larger ones every user is exposed to
``EXPOSED_ITEMS`` candidates drawn from a cheap proposal (a category picked by the
user's affinity to its centre, then an item of it by popularity); views are then
resampled among the candidates with importance weights, which approximates the exact
softmax at a cost that does not grow with the catalogue.
"""

from __future__ import annotations

import numpy as np

from personalization_pipeline.synth.latent import (
    AFFINITY_SCALE,
    POPULARITY_EXPONENT,
    POPULARITY_WEIGHT,
    ItemSpace,
)

EXPOSED_ITEMS = 1024
PROPOSAL_SHARPNESS = 0.7 * AFFINITY_SCALE
TAIL = POPULARITY_WEIGHT * POPULARITY_EXPONENT  # popularity weight ~ rank ** -TAIL; not 1


def sample_rows(cdf: np.ndarray, rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One column per (row, uniform) pair, drawn from that row of ``cdf``."""
    width = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0], dtype=np.float64)[:, None]).ravel()
    picked = np.searchsorted(flat, rows + uniforms, side="right") - rows * width
    return np.clip(picked, 0, width - 1)


def _normalised_cdf(logits: np.ndarray) -> np.ndarray:
    """Cumulative softmax along the last axis (``logits`` is overwritten)."""
    logits -= logits.max(axis=-1, keepdims=True)
    cdf = np.cumsum(np.exp(logits, out=logits), axis=-1)
    cdf /= cdf[..., -1:]
    return cdf


def _power_law_ranks(uniforms: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Popularity ranks below ``size`` drawn with probability about ``(rank + 1) ** -TAIL``,
    and the exact log probability of each drawn rank (inverse CDF of a continuous power law).
    """
    power = 1.0 - TAIL
    top = (size + 1.0) ** power - 1.0
    rank = np.minimum(((1.0 + uniforms * top) ** (1.0 / power) - 1.0).astype(np.int64), size - 1)
    probability = ((rank + 2.0) ** power - (rank + 1.0) ** power) / top
    return rank, np.log(probability)


def exposure(rng: np.random.Generator, space: ItemSpace, taste: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate items per user and their log proposal probability (up to a constant)."""
    n_users = len(taste)
    if space.size <= EXPOSED_ITEMS:
        everything = np.broadcast_to(np.arange(space.size), (n_users, space.size))
        return everything, np.zeros(everything.shape)
    category_logits = PROPOSAL_SHARPNESS * (taste @ space.category_centres.T)
    category_logits += space.log_category_mass
    category_logits -= category_logits.max(axis=1, keepdims=True)
    share = np.exp(category_logits)
    share /= share.sum(axis=1, keepdims=True)
    counts = rng.multinomial(EXPOSED_ITEMS, share)
    n_categories = share.shape[1]
    category = np.repeat(np.tile(np.arange(n_categories), n_users), counts.ravel())
    rows = np.repeat(np.arange(n_users), EXPOSED_ITEMS)
    size = np.diff(space.category_bounds)[category]
    rank, log_q_rank = _power_law_ranks(rng.random(rows.size), size)
    items = space.by_category[space.category_bounds[category] + rank]
    log_q = np.log(share[rows, category]) + log_q_rank
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
    vectors = np.take(space.vectors, candidates, axis=0)
    affinity = np.matmul(vectors, np.stack(tastes, axis=2).astype(np.float32))
    logits = affinity.transpose(2, 0, 1) * np.float32(AFFINITY_SCALE)
    logits += POPULARITY_WEIGHT * np.take(space.log_popularity, candidates) - log_q
    cdfs = _normalised_cdf(logits)
    item = np.empty(owner.size, dtype=np.int64)
    for index, cdf in enumerate(cdfs):
        mask = phase == index
        rows = owner[mask]
        item[mask] = candidates[rows, sample_rows(cdf, rows, uniforms[mask])]
    return item
