"""The planted preference structure: latent tastes, item vectors and item popularity.

Users belong to a few taste clusters; items sit near their category's centre in the
same space; what a user views is drawn from
``softmax(AFFINITY_SCALE * cos(taste, item) + POPULARITY_WEIGHT * log_popularity)``.
Tastes drift slowly from a start vector to an end vector over the time window.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ItemSpace:
    """Item side of the model, plus items grouped by category for fast proposals."""

    vectors: np.ndarray  # (items, DIM), unit rows, float32 for fast gathers
    log_popularity: np.ndarray  # (items,), centred
    category_centres: np.ndarray  # (categories, DIM)
    by_category: np.ndarray  # item indices by category, most popular first
    category_bounds: np.ndarray  # (categories + 1,) offsets into by_category
    log_category_mass: np.ndarray  # log of the summed popularity weight per category

    @property
    def size(self) -> int:
        return len(self.vectors)

    def affinity(self, taste: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Cosine between each taste row and the matching item."""
        return np.einsum("ij,ij->i", taste, self.vectors[items])


def item_space(rng: np.random.Generator, category: np.ndarray, n_categories: int) -> ItemSpace:
    """Item vectors around random category centres and a power-law popularity."""
    centres = random_directions(rng, n_categories)
    vectors = _jitter(rng, centres[category], ITEM_SPREAD)
    rank = rng.permutation(len(category)) + 1
    log_pop = -POPULARITY_EXPONENT * np.log(rank)
    log_pop -= log_pop.mean()

    by_category = np.lexsort((-log_pop, category))
    bounds = np.searchsorted(category[by_category], np.arange(n_categories + 1))
    weight = np.exp(POPULARITY_WEIGHT * log_pop)
    mass = np.bincount(category, weights=weight, minlength=n_categories)
    with np.errstate(divide="ignore"):
        log_mass = np.log(mass)
    return ItemSpace(
        vectors=vectors.astype(np.float32),
        log_popularity=log_pop,
        category_centres=centres,
        by_category=by_category,
        category_bounds=bounds,
        log_category_mass=log_mass,
    )


def tastes(rng: np.random.Generator, cluster: np.ndarray, cluster_centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end taste vectors (unit rows) for users in the given clusters."""
    start = _jitter(rng, cluster_centres[cluster], TASTE_SPREAD)
    end = _jitter(rng, start, DRIFT)
    return start, end
