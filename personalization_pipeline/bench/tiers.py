"""The benchmark tiers: sizes of the generated data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
    users: int
    items: int
    events_per_user: float = 50.0


TIERS = {
    tier.name: tier
    for tier in (
        Tier("XS", 300, 150),  # a smoke test
        Tier("S", 10_000, 2_000),
        Tier("M", 100_000, 10_000),
        Tier("L", 1_000_000, 50_000),
    )
}
