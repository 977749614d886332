"""Dot products of float32 factor vectors, rounded to float32 the same way whatever computed them.

A float64 sum of products depends in its last bits on the order of the additions, which BLAS
chooses by the shape of the whole matrix; rounded to float32 it almost always loses that
difference, but not always. :func:`dots` returns ``float32(fsum(u * v))`` (the correctly rounded
float64 sum of the exact float64 products, then rounded to float32): a pure function of the two
vectors. It is computed by BLAS in float64 with an error bound; the few entries whose float32
rounding the bound cannot settle are summed exactly.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK_ENTRIES = 1 << 20  # entries of the float64 work arrays per step: memory bounded by the chunk


def _sum_error(d: int) -> float:
    """Twice the largest error, relative to sum |u_i v_i|, of a float64 sum of ``d`` exact products
    in any order (``d`` units of 2^-53), so the rounding interval also holds the exactly rounded sum."""
    return 2.0 * (d + 1) * 2.0**-53


def dots(users: np.ndarray, items: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """float32 dot products: ``users`` (m, d) with ``items`` (k, d) gives (m, k), every user with
    every item; with ``cols`` (m, w), row i's user with its own w items ``items[cols[i]]``
    (gathered a chunk of rows at a time, so memory stays bounded by the chunk)."""
    u = np.asarray(users, dtype=np.float64)
    v = np.asarray(items, dtype=np.float64)
    m, width = len(u), len(v) if cols is None else cols.shape[1]
    out = np.empty((m, width), dtype=np.float32)
    per_row = width if cols is None else width * max(u.shape[1], 1)  # float64 entries a row's step holds
    step = max(1, CHUNK_ENTRIES // max(per_row, 1))
    relative = _sum_error(u.shape[1])
    item_norms = np.linalg.norm(v, axis=1)
    for start in range(0, m, step):
        rows = slice(start, start + step)
        if cols is None:
            sums = u[rows] @ v.T
            longest = item_norms.max(initial=0.0)
        else:
            sums = np.matmul(v[cols[rows]], u[rows, :, np.newaxis])[..., 0]
            longest = item_norms[cols[rows]].max(axis=1, initial=0.0)
        bound = (relative * np.linalg.norm(u[rows], axis=1) * longest)[:, np.newaxis]
        chunk = out[rows]
        chunk[:] = sums
        unsure = (sums - bound).astype(np.float32) != (sums + bound).astype(np.float32)
        for i, j in zip(*np.nonzero(unsure), strict=True):
            other = v[j] if cols is None else v[cols[start + i, j]]
            chunk[i, j] = math.fsum((u[start + i] * other).tolist())
    return out
