"""Interactions for one block of users: sessions, views and the engagement funnel.

Each user has a heavy-tailed number of views, grouped into sessions on one device,
mostly around the user's preferred local hour. Viewed items are drawn from the
planted preference model (:mod:`latent`) with the taste of that moment; then some
views become clicks, clicks lead to time spent, accepts, completes and ratings more
often when the item suits the user, and ill-suited views are sometimes dismissed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personalization_pipeline.synth.catalog import Catalog
from personalization_pipeline.synth.choice import draw_views
from personalization_pipeline.synth.clock import DAY, Window, timestamps
from personalization_pipeline.synth.population import Cohort
from personalization_pipeline.synth.vocab import DEVICE_SHARES, DEVICES, EVENT_TYPES

EVENTS_PER_VIEW = 2.05  # average events (all types) per view under the funnel below
ACTIVITY_SIGMA = 1.1  # log-normal spread of views per user
NEW_SESSION_RATE = 0.25  # chance that a view opens a new session
OFF_HOUR_RATE = 0.2  # sessions at a random hour instead of near the preferred one
DEVICE_SWITCH_RATE = 0.2  # sessions on a random device instead of the usual one
MEAN_VIEW_GAP_S = 75.0
TIME_SPENT_RATE = 0.6
RATE_RATE = 0.2
_KIND = {name: code for code, name in enumerate(EVENT_TYPES)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Events:
    """Interactions of a block, sorted by user, time, view and event type."""

    user: np.ndarray
    item: np.ndarray
    at: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    has_value: np.ndarray
    session_rank: np.ndarray
    device: np.ndarray
    first_at: np.ndarray  # per user of the block


@dataclass(frozen=True)
class _Sessions:
    owner: np.ndarray
    start: np.ndarray
    device: np.ndarray


def _views_per_user(rng: np.random.Generator, n: int, events_per_user: float) -> np.ndarray:
    mean_views = max(events_per_user / EVENTS_PER_VIEW, 1.0)
    mu = np.log(mean_views) - ACTIVITY_SIGMA**2 / 2
    return np.maximum(1, np.rint(rng.lognormal(mu, ACTIVITY_SIGMA, n))).astype(np.int64)


def _sessions(rng: np.random.Generator, cohort: Cohort, owner: np.ndarray, window: Window) -> _Sessions:
    """Session starts (sorted within each user) and devices."""
    count = owner.size
    first_day = np.clip(-((window.start - cohort.signup) // DAY), 0, window.days - 1)[owner]
    day = first_day + (rng.random(count) * (window.days - first_day)).astype(np.int64)
    hour = np.where(
        rng.random(count) < OFF_HOUR_RATE,
        rng.random(count) * 24,
        cohort.preferred_hour[owner] + rng.normal(0.0, 1.5, count),
    )
    utc_second = ((hour * 3600).astype(np.int64) - cohort.timezone_offset[owner] * 60) % DAY
    start = window.start + day * DAY + utc_second
    device = np.where(
        rng.random(count) < DEVICE_SWITCH_RATE,
        rng.choice(len(DEVICES), size=count, p=DEVICE_SHARES),
        cohort.device[owner],
    )
    return _Sessions(owner=owner, start=start[np.lexsort((start, owner))], device=device)


def _funnel(
    rng: np.random.Generator, seen_at: np.ndarray, affinity: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(event type, view mask, time, value) for every event type derived from the views."""
    n = affinity.size
    click = rng.random(n) < _sigmoid(-2.8 + 4.5 * affinity)
    dismiss = ~click & (rng.random(n) < 0.6 * _sigmoid(2.0 - 10.0 * affinity))
    dwell = np.maximum(1, rng.lognormal(np.log(20 + 300 * _sigmoid(4 * affinity)), 0.6, n))
    timed = click & (rng.random(n) < TIME_SPENT_RATE)
    accept = click & (rng.random(n) < _sigmoid(-2.0 + 3.0 * affinity))
    complete = click & (rng.random(n) < _sigmoid(-2.5 + 4.0 * affinity))
    rate = click & (rng.random(n) < RATE_RATE)
    stars = np.clip(np.rint(1.5 + 4.0 * affinity + rng.normal(0.0, 0.8, n)), 1, 5)
    clicked_at = seen_at + 2 + rng.exponential(6.0, n)
    return [
        ("view", np.ones(n, dtype=bool), seen_at, None),
        ("click", click, clicked_at, None),
        ("dismiss", dismiss, seen_at + 1 + rng.exponential(3.0, n), None),
        ("time_spent", timed, clicked_at + dwell, dwell),
        ("accept", accept, clicked_at + 3 + rng.exponential(20.0, n), None),
        ("complete", complete, clicked_at + dwell + 1, None),
        ("rate", rate, clicked_at + dwell + 5 + rng.exponential(10.0, n), stars),
    ]


def simulate(
    rng: np.random.Generator,
    cohort: Cohort,
    catalog: Catalog,
    window: Window,
    events_per_user: float,
) -> Events:
    """All interactions of ``cohort``, none after ``window.end``."""
    views = _views_per_user(rng, cohort.size, events_per_user)
    owner = np.repeat(np.arange(cohort.size), views)
    user_first_view = np.cumsum(views) - views
    opens = rng.random(owner.size) < NEW_SESSION_RATE
    opens[user_first_view] = True
    session = np.cumsum(opens) - 1
    sessions = _sessions(rng, cohort, owner[opens], window)

    elapsed = np.cumsum(5.0 + rng.exponential(MEAN_VIEW_GAP_S, owner.size))
    seen_at = sessions.start[session] + (elapsed - elapsed[opens][session])
    progress = np.clip((seen_at - window.start) / (window.end - window.start), 0.0, 1.0)
    drifted = rng.random(owner.size) < progress
    tastes = [cohort.taste_start, cohort.taste_end]
    item = draw_views(rng, catalog.space, tastes, owner, drifted.astype(np.int64))
    taste_now = np.where(drifted[:, None], cohort.taste_end[owner], cohort.taste_start[owner])
    affinity = catalog.space.affinity(taste_now, item)

    parts = _funnel(rng, seen_at, affinity)
    view = np.concatenate([np.flatnonzero(mask) for _, mask, _, _ in parts])
    kind = np.concatenate([np.full(mask.sum(), _KIND[name]) for name, mask, _, _ in parts])
    at = np.concatenate([t[mask] for _, mask, t, _ in parts]).astype(np.int64)
    value = np.concatenate([(v[mask] if v is not None else np.zeros(mask.sum())) for _, mask, _, v in parts]).astype(
        np.int64
    )
    has_value = np.concatenate([np.full(mask.sum(), v is not None) for _, mask, _, v in parts])

    # Sessions running past the end of the window move back whole days.
    event_session = session[view]
    last = np.full(sessions.start.size, np.iinfo(np.int64).min)
    np.maximum.at(last, event_session, at)
    back = np.maximum(0, -((window.end - last) // DAY)) * DAY
    at -= back[event_session]
    start = sessions.start - back
    order = np.lexsort((start, sessions.owner))
    rank = np.empty(start.size, dtype=np.int64)
    rank[order] = np.arange(start.size) - session[user_first_view][sessions.owner[order]]

    user = owner[view]
    first_at = np.full(cohort.size, np.iinfo(np.int64).max)
    np.minimum.at(first_at, user, at)
    keep = np.lexsort((kind, view, at, user))
    return Events(
        user=user[keep],
        item=item[view][keep],
        at=at[keep],
        kind=kind[keep],
        value=value[keep],
        has_value=has_value[keep],
        session_rank=rank[event_session][keep],
        device=sessions.device[event_session][keep],
        first_at=first_at,
    )


def interactions_table(events: Events, cohort: Cohort, catalog: Catalog) -> pa.Table:
    """The raw interactions table of one block."""
    user_ids = cohort.ids.take(events.user)
    rank = pc.utf8_lpad(pa.array(events.session_rank).cast(pa.string()), width=4, padding="0")
    return pa.table(
        {
            "user_id": user_ids,
            "item_id": catalog.ids.take(events.item),
            "occurred_at": timestamps(events.at),
            "event_type": pa.array(EVENT_TYPES).take(events.kind),
            "value": pa.array(events.value, mask=~events.has_value),
            "session_id": pc.binary_join_element_wise(user_ids, rank, "-s"),
            "device_type": pa.array(DEVICES).take(events.device),
        }
    )
