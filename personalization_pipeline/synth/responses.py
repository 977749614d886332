"""Simulated responses to served rankings, with a planted true lift for chosen variants.

Each exposed user independently views, accepts, completes and dismisses an item of their served
list with the base probabilities of :data:`BASE_RATES`; a variant's planted lift multiplies its
users' acceptance and completion probabilities (``0.2``: 20% more). Events fall between the list's
``generated_at`` and the end of the attribution window (or ``now``, whichever is first), so they
are attributed to what was served. The events are appended to the data directory's interactions
file, where the next run ingests them like any other.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .writer import ISO_UTC

BASE_RATES: dict[str, float] = {"view": 0.5, "accept": 0.1, "complete": 0.04, "dismiss": 0.05}
LIFTED = ("accept", "complete")


def simulate_responses(
    served: pd.DataFrame,
    lifts: dict[str, float],
    seed: int,
    window: pd.Timedelta,
    now: pd.Timestamp,
    rates: dict[str, float] = BASE_RATES,
) -> pd.DataFrame:
    """Events (user_id, item_id, occurred_at, event_type) of the users of ``served`` (user_id,
    variant, generated_at as UTC, items: the ids served, best first), in user order."""
    rng = np.random.default_rng(seed)
    users = len(served)
    lift = served["variant"].map(lambda v: lifts.get(v, 0.0)).to_numpy(float)
    start = pd.to_datetime(served["generated_at"], utc=True)
    span = (np.minimum(start + window, now) - start).dt.total_seconds().clip(lower=0).to_numpy()
    frames = []
    for event_type, rate in rates.items():
        p = np.clip(rate * (1 + lift) if event_type in LIFTED else np.full(users, rate), 0, 1)
        happened = np.flatnonzero(rng.random(users) < p)
        offsets = rng.random(happened.size) * span[happened]
        picks = [
            items[int(u * len(items))] if len(items) else None
            for items, u in zip(served["items"].iloc[happened], rng.random(happened.size), strict=True)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "user_id": served["user_id"].iloc[happened].to_numpy(),
                    "item_id": picks,
                    "occurred_at": (
                        start.iloc[happened].reset_index(drop=True) + pd.to_timedelta(offsets, unit="s")
                    ).dt.ceil("s"),  # whole seconds, never before the list was generated
                    "event_type": event_type,
                    "order": happened,
                }
            )
        )
    events = pd.concat(frames, ignore_index=True).dropna(subset=["item_id"])
    events = events.sort_values(["order", "occurred_at", "event_type"], kind="stable")
    return events.drop(columns="order").reset_index(drop=True)


def append_interactions(path: Path, events: pd.DataFrame) -> int:
    """Append ``events`` to the interactions file ``path`` (CSV: rows in its header's column order,
    missing columns empty; Parquet: rewritten with the rows added); the rows appended."""
    occurred = pd.to_datetime(events["occurred_at"], utc=True)
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as existing:
            header = next(csv.reader(existing))
        frame = events.assign(occurred_at=occurred.dt.strftime(ISO_UTC)).reindex(columns=header)
        table = pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None), preserve_index=False)
        with path.open("ab") as out:
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False))
        return len(frame)
    old = pq.read_table(path)
    frame = events.assign(occurred_at=occurred).reindex(columns=old.schema.names)
    new = pa.Table.from_pandas(frame, schema=old.schema, preserve_index=False)
    pq.write_table(pa.concat_tables([old, new]), path, compression="zstd")
    return len(frame)
