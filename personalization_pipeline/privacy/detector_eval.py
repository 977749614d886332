"""How well the PII detectors separate personal data from catalogue text (no Dagster).

Recall is measured on a planted corpus of e-mail addresses, phone numbers in several national
formats, and IPv4 and IPv6 addresses, alone and inside longer text; every one must be found,
with its kind. False positives are counted on catalogue text that holds no personal data: real
titles (any CSV column, e.g. the MovieLens titles) and generated product names full of version
numbers, model numbers, ISBNs, dates, prices and sizes. ``personalization-pipeline pii-eval``
prints the figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .pii import pii_kinds

PLANTED: dict[str, tuple[str, ...]] = {
    "email": (
        "ann.lee@example.com",
        "Bob.Smith+news@mail.example.org",
        "x_y-z@sub.domain.example.co.uk",
        "CAPS@EXAMPLE.NET",
        "write to jo@example.io today",
        "ｍａｉｌ＠example.com",  # full-width characters, folded by normalisation
    ),
    "phone": (
        "+1 202 555 0143",
        "+1-202-555-0143",
        "(202) 555-0143",
        "202-555-0143",
        "202.555.0143",
        "+44 20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "+49 30 901820",
        "+49 171 1234567",
        "0171 1234567",
        "+33 6 12 34 56 78",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "+81 90-1234-5678",
        "090-1234-5678",
        "+91 98765 43210",
        "+55 11 91234-5678",
        "+61 2 9876 5432",
        "0044 20 7946 0958",
        "+4915112345678",
        "call +34 612 345 678 after six",
    ),
    "ipv4": ("192.168.0.1", "10.0.0.255", "8.8.8.8", "logged in from 203.0.113.7 at noon", "255.255.255.0"),
    "ipv6": (
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::1",
        "seen at 2001:db8:0:0:1::7 twice",
    ),
}
"""Personal data the detectors must find, by kind."""

_PRODUCT_TEMPLATES = (
    "{brand} {noun} {model}",
    "{brand} {noun} v{major}.{minor}",
    "{brand} {noun} v{major}.{minor}.{patch}",
    "Firmware {major}.{minor}.{patch}.{build}",
    "{brand} {noun} ({year})",
    "{brand} {noun}, {size} GB",
    "{noun} Pack of {count} - {price}.99",
    "ISBN 978-{isbn1}-{isbn2}-{isbn3}-{check}",
    "{brand} {model} Series {year}-{month:02d}-{day:02d}",
    "{brand} {noun} {w}x{h} cm",
    "{brand} {noun} Mk {major} rev {patch}",
    "Release {year}.{month:02d}",
)
_BRANDS = ("Acme", "Nordwind", "Kestrel", "Lumen", "Orbis", "Vantage", "Quill", "Helio")
_NOUNS = ("Router", "Headphones", "Camera", "Kettle", "Drill", "Monitor", "Speaker", "Tablet", "Lamp")


def product_names(n: int = 1000, seed: int = 7) -> list[str]:
    """``n`` generated product names with version, model and catalogue numbers (deterministic)."""
    rng = np.random.default_rng(seed)
    names = []
    for _ in range(n):
        template = _PRODUCT_TEMPLATES[int(rng.integers(len(_PRODUCT_TEMPLATES)))]
        names.append(
            template.format(
                brand=_BRANDS[int(rng.integers(len(_BRANDS)))],
                noun=_NOUNS[int(rng.integers(len(_NOUNS)))],
                model=f"{'XYZ'[int(rng.integers(3))]}{int(rng.integers(100, 9999))}",
                major=int(rng.integers(0, 20)),
                minor=int(rng.integers(0, 30)),
                patch=int(rng.integers(0, 200)),
                build=int(rng.integers(0, 9999)),
                year=int(rng.integers(1990, 2027)),
                month=int(rng.integers(1, 13)),
                day=int(rng.integers(1, 29)),
                size=int(rng.choice([16, 32, 64, 128, 256, 512])),
                count=int(rng.integers(2, 48)),
                price=int(rng.integers(1, 999)),
                isbn1=int(rng.integers(0, 10)),
                isbn2=int(rng.integers(10, 99999)),
                isbn3=int(rng.integers(10, 999999)),
                check=int(rng.integers(0, 10)),
                w=int(rng.integers(10, 300)),
                h=int(rng.integers(10, 300)),
            )
        )
    return names


@dataclass(frozen=True)
class Recall:
    """Planted values found with the right kind, per kind, and the ones missed."""

    found: dict[str, int]
    total: dict[str, int]
    missed: tuple[str, ...]

    @property
    def rate(self) -> float:
        return sum(self.found.values()) / sum(self.total.values())


@dataclass(frozen=True)
class FalsePositives:
    """Values of a corpus without personal data that a detector flagged anyway."""

    scanned: int
    flagged: tuple[tuple[str, tuple[str, ...]], ...]  # (value, kinds)

    @property
    def rate(self) -> float:
        return len(self.flagged) / self.scanned if self.scanned else 0.0


def recall(planted: dict[str, tuple[str, ...]] = PLANTED) -> Recall:
    """Run the pattern detectors over the planted corpus."""
    found = {kind: sum(kind in pii_kinds(v) for v in values) for kind, values in planted.items()}
    missed = tuple(v for kind, values in planted.items() for v in values if kind not in pii_kinds(v))
    return Recall(found, {kind: len(values) for kind, values in planted.items()}, missed)


def false_positives(values: Iterable[str]) -> FalsePositives:
    """Run the pattern detectors over text that holds no personal data (distinct values)."""
    distinct = sorted(set(values))
    flagged = tuple((v, tuple(kinds)) for v in distinct if (kinds := pii_kinds(v)))
    return FalsePositives(len(distinct), flagged)
