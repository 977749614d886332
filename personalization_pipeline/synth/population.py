"""Users: hidden tastes and habits, public profile columns, fake PII and settings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personalization_pipeline.synth import latent
from personalization_pipeline.synth.clock import DAY, Window, timestamps
from personalization_pipeline.synth.ids import padded_ids
from personalization_pipeline.synth.vocab import (
    COUNTRIES,
    DEVICE_SHARES,
    DEVICES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
)

OPT_OUT_RATE = 0.05
CONSENT_RATE = 0.7
TRAVELLER_RATE = 0.04  # users whose timezone does not match their country
RECENT_SIGNUP_RATE = 0.3  # users who signed up inside the window
HOUR_MODES = np.array([8.0, 12.5, 20.5])
HOUR_MODE_SHARES = np.array([0.25, 0.20, 0.55])

_COUNTRY_SHARES = np.array([c.share for c in COUNTRIES]) / sum(c.share for c in COUNTRIES)
_OFFSET_COUNTS = np.array([len(c.offsets) for c in COUNTRIES])
_OFFSETS = np.array([c.offsets + (0,) * (_OFFSET_COUNTS.max() - len(c.offsets)) for c in COUNTRIES])
_ALL_OFFSETS = np.unique(_OFFSETS[_OFFSETS != 0])


@dataclass(frozen=True)
class Cohort:
    """One block of users: everything drawn for them before their events."""

    ids: pa.Array
    taste_start: np.ndarray
    taste_end: np.ndarray
    preferred_hour: np.ndarray
    timezone_offset: np.ndarray
    device: np.ndarray
    country: np.ndarray
    signup: np.ndarray
    pii: dict[str, pa.Array]
    opted_in: np.ndarray
    consent: np.ndarray
    settings_lag: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)


def _fake_pii(rng: np.random.Generator, n: int, country: np.ndarray, end: int) -> dict[str, pa.Array]:
    """Realistic-looking but invented personal data (reserved e-mail domains)."""
    first = pa.array(FIRST_NAMES).take(rng.integers(len(FIRST_NAMES), size=n))
    last = pa.array(LAST_NAMES).take(rng.integers(len(LAST_NAMES), size=n))
    suffix = pa.array(rng.integers(1, 1000, size=n)).cast(pa.string())
    domain = pa.array(EMAIL_DOMAINS).take(rng.integers(len(EMAIL_DOMAINS), size=n))
    local = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(last), ".")
    calling = pa.array([c.calling_code for c in COUNTRIES]).take(country)
    subscriber = pa.array(rng.integers(100_000_000, 1_000_000_000, size=n)).cast(pa.string())
    octets = [pa.array(rng.integers(11, 224, size=n)).cast(pa.string())] + [
        pa.array(rng.integers(0, 256, size=n)).cast(pa.string()) for _ in range(3)
    ]
    age_days = ((18 + rng.random(n) * 60) * 365.25).astype(np.int32)
    postal = pa.array(rng.integers(10_000, 100_000, size=n)).cast(pa.string())
    return {
        "email": pc.binary_join_element_wise(local, suffix, "@", domain, ""),
        "full_name": pc.binary_join_element_wise(first, last, " "),
        "phone": pc.binary_join_element_wise("+", calling, " ", subscriber, ""),
        "ip_address": pc.binary_join_element_wise(*octets, "."),
        "birth_date": pa.array(end // DAY - age_days, pa.int32()).cast(pa.date32()),
        "postal_code": postal,
    }


def draw_cohort(
    rng: np.random.Generator,
    numbers: np.ndarray,
    id_width: int,
    cluster_centres: np.ndarray,
    cluster_shares: np.ndarray,
    window: Window,
) -> Cohort:
    """Draw the users numbered ``numbers`` (all randomness from ``rng``)."""
    n = len(numbers)
    cluster = rng.choice(len(cluster_shares), size=n, p=cluster_shares)
    taste_start, taste_end = latent.tastes(rng, cluster, cluster_centres)
    mode = rng.choice(len(HOUR_MODES), size=n, p=HOUR_MODE_SHARES)
    preferred_hour = (HOUR_MODES[mode] + rng.normal(0.0, 1.5, size=n)) % 24
    country = rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_SHARES)
    home_offset = _OFFSETS[country, (rng.random(n) * _OFFSET_COUNTS[country]).astype(int)]
    travelling = rng.random(n) < TRAVELLER_RATE
    offset = np.where(travelling, rng.choice(_ALL_OFFSETS, size=n), home_offset)
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARES)
    recent = rng.random(n) < RECENT_SIGNUP_RATE
    span = np.where(recent, max(window.end - window.start - DAY, 0), 3 * 365 * DAY)
    anchor = np.where(recent, window.end - DAY, window.start)
    signup = anchor - (rng.random(n) * span).astype(np.int64)
    pii = _fake_pii(rng, n, country, window.end)
    return Cohort(
        ids=padded_ids("u", numbers, id_width),
        taste_start=taste_start,
        taste_end=taste_end,
        preferred_hour=preferred_hour,
        timezone_offset=offset.astype(np.int32),
        device=device,
        country=country,
        signup=signup,
        pii=pii,
        opted_in=rng.random(n) >= OPT_OUT_RATE,
        consent=rng.random(n) < CONSENT_RATE,
        settings_lag=rng.random(n),
    )


def users_table(cohort: Cohort, signup: np.ndarray) -> pa.Table:
    """The raw users table, PII included (staging drops it by allowlist)."""
    columns = {
        "user_id": cohort.ids,
        "signup_at": timestamps(signup),
        "country_code": pa.array([c.code for c in COUNTRIES]).take(cohort.country),
        "timezone_offset": pa.array(cohort.timezone_offset),
        "device_type": pa.array(DEVICES).take(cohort.device),
    }
    return pa.table(columns | cohort.pii)


def settings_table(cohort: Cohort, signup: np.ndarray, end: int) -> pa.Table:
    """Per-user personalisation opt-in and data-sharing consent."""
    updated = signup + (cohort.settings_lag * (end - signup)).astype(np.int64)
    return pa.table(
        {
            "user_id": cohort.ids,
            "personalization_enabled": pa.array(cohort.opted_in),
            "data_sharing_consent": pa.array(cohort.consent),
            "updated_at": timestamps(updated),
        }
    )
