"""The planted preference structure: latent tastes, item vectors and item popularity.

Users belong to a few taste clusters; items sit near their category's centre in the
same space; what a user views is drawn from
``softmax(AFFINITY_SCALE * cos(taste, item) + POPULARITY_WEIGHT * log_popularity)``.
Tastes drift slowly from a start vector to an end vector over the time window.
"""

from __future__ import annotations

import numpy as np

DIM = 16
TASTE_CLUSTERS = 8
TASTE_SPREAD = 0.9  # how far a user sits from their cluster centre
ITEM_SPREAD = 1.0  # how far an item sits from its category centre
DRIFT = 0.45  # size of the taste change between window start and end
AFFINITY_SCALE = 12.0
POPULARITY_WEIGHT = 0.6
POPULARITY_EXPONENT = 1.0  # Zipf exponent of item popularity


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _jitter(rng: np.random.Generator, centres: np.ndarray, spread: float) -> np.ndarray:
    """Unit vectors near ``centres``: noise of length about ``spread`` added, then normalised."""
    return unit(centres + spread * rng.standard_normal(centres.shape) / np.sqrt(DIM))


def random_directions(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` unit vectors drawn uniformly on the sphere."""
    return unit(rng.standard_normal((count, DIM)))


def item_vectors(
    rng: np.random.Generator, category: np.ndarray, category_centres: np.ndarray
) -> np.ndarray:
    """Unit item vectors scattered around their category's centre."""
    return _jitter(rng, category_centres[category], ITEM_SPREAD)


def log_popularity(rng: np.random.Generator, count: int) -> np.ndarray:
    """Centred log of a power-law popularity over a random ranking of the items."""
    rank = rng.permutation(count) + 1
    logs = -POPULARITY_EXPONENT * np.log(rank)
    return logs - logs.mean()


def tastes(
    rng: np.random.Generator, cluster: np.ndarray, cluster_centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end taste vectors (unit rows) for users in the given clusters."""
    start = _jitter(rng, cluster_centres[cluster], TASTE_SPREAD)
    end = _jitter(rng, start, DRIFT)
    return start, end


def choice_cdf(taste: np.ndarray, items: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    """Per-user cumulative view probabilities over all items, shape (users, items)."""
    logits = AFFINITY_SCALE * (taste @ items.T) + POPULARITY_WEIGHT * log_pop
    logits -= logits.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(logits), axis=1)
    cdf /= cdf[:, -1:]
    return cdf


def sample_items(cdf: np.ndarray, rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One item index per (row, uniform) pair, drawn from that row of ``cdf``."""
    n_items = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    picked = np.searchsorted(flat, rows + uniforms, side="right") - rows * n_items
    return np.clip(picked, 0, n_items - 1)
