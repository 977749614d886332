"""Sample raw data generator: ``users``, ``items``, ``interactions`` and ``settings`` files.

Users are generated in fixed-size blocks, each from its own random stream derived from
the seed and the block number, so the output depends only on the arguments (with a
fixed ``end``), not on ``chunk_users``, which only sets how many users are held in
memory and written per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from personalization_pipeline.synth import latent
from personalization_pipeline.synth.behaviour import interactions_table, simulate
from personalization_pipeline.synth.catalog import Catalog, build_catalog
from personalization_pipeline.synth.clock import DAY, Window, default_end, epoch_seconds
from personalization_pipeline.synth.ids import id_width
from personalization_pipeline.synth.population import draw_cohort, settings_table, users_table
from personalization_pipeline.synth.writer import FORMATS, TableWriter

TABLES = ("users", "items", "interactions", "settings")
BLOCK_USERS = 256  # users per random stream and per vectorised step
_WORLD_STREAM = 0
_BLOCK_STREAM = 1


@dataclass(frozen=True)
class _World:
    """Everything shared by all user blocks."""

    seed: int
    window: Window
    catalog: Catalog
    cluster_centres: np.ndarray
    cluster_shares: np.ndarray
    user_id_width: int
    events_per_user: float


def _block(world: _World, number: int, first: int, stop: int) -> dict[str, pa.Table]:
    """Users ``first`` to ``stop - 1`` with their settings and interactions."""
    rng = np.random.default_rng([world.seed, _BLOCK_STREAM, number])
    cohort = draw_cohort(
        rng,
        np.arange(first, stop),
        world.user_id_width,
        world.cluster_centres,
        world.cluster_shares,
        world.window,
    )
    events = simulate(rng, cohort, world.catalog, world.window, world.events_per_user)
    signup = np.minimum(cohort.signup, events.first_at - DAY // 24)
    return {
        "users": users_table(cohort, signup),
        "settings": settings_table(cohort, signup, world.window.end),
        "interactions": interactions_table(events, cohort, world.catalog),
    }


def generate(
    out_dir: Path,
    users: int,
    items: int,
    seed: int = 42,
    fmt: str = "csv",
    days: int = 120,
    events_per_user: float = 40.0,
    end: datetime | None = None,
    chunk_users: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write ``<table>.<fmt>`` for every table into ``out_dir``; return rows per table.

    ``end`` (default: now, truncated to the hour, UTC) is the latest possible event
    time; events span the ``days`` calendar days up to it. ``progress`` is called with
    the number of users just written after every batch.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if users < 1 or items < 1 or days < 1 or chunk_users < 1 or events_per_user <= 0:
        raise ValueError("users, items, days, chunk_users and events_per_user must be positive")
    window = Window(epoch_seconds(end or default_end()), days)
    world_rng = np.random.default_rng([seed, _WORLD_STREAM])
    world = _World(
        seed=seed,
        window=window,
        catalog=build_catalog(world_rng, items, window),
        cluster_centres=latent.random_directions(world_rng, latent.TASTE_CLUSTERS),
        cluster_shares=world_rng.dirichlet(np.full(latent.TASTE_CLUSTERS, 3.0)),
        user_id_width=id_width(users, 7),
        events_per_user=events_per_user,
    )
    block = BLOCK_USERS
    batch = block * -(-chunk_users // block)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        writers = {t: stack.enter_context(TableWriter(out_dir, t, fmt)) for t in TABLES}
        writers["items"].write(world.catalog.table)
        for batch_first in range(0, users, batch):
            batch_stop = min(batch_first + batch, users)
            parts = [
                _block(world, first // block, first, min(first + block, batch_stop))
                for first in range(batch_first, batch_stop, block)
            ]
            for name in ("users", "settings", "interactions"):
                writers[name].write(pa.concat_tables([part[name] for part in parts]))
            if progress is not None:
                progress(batch_stop - batch_first)
        return {name: writer.rows for name, writer in writers.items()}
