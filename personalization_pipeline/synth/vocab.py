"""Fixed vocabularies for the sample data: scopes, categories, countries, names, words.

Everything here is invented or generic; the person-like values built from it are fake.
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES: dict[str, tuple[str, ...]] = {
    "articles": ("news", "sports", "technology", "science", "culture", "travel"),
    "products": ("electronics", "home", "fashion", "books", "toys", "garden"),
    "videos": ("comedy", "music", "documentary", "gaming", "education", "cooking"),
}

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
DEVICE_SHARES: tuple[float, ...] = (0.55, 0.35, 0.10)

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "accept",
    "dismiss",
    "complete",
    "rate",
    "time_spent",
)


@dataclass(frozen=True)
class Country:
    """A country with its population share, UTC offsets (minutes) and phone prefix."""

    code: str
    share: float
    offsets: tuple[int, ...]
    calling_code: str


# Skewed on purpose: a few large countries and a tail of rare ones, so that
# k-anonymity generalisation of country and timezone has something to do.
COUNTRIES: tuple[Country, ...] = (
    Country("US", 0.300, (-300, -360, -420, -480), "1"),
    Country("GB", 0.090, (0,), "44"),
    Country("DE", 0.080, (60,), "49"),
    Country("IN", 0.080, (330,), "91"),
    Country("FR", 0.060, (60,), "33"),
    Country("BR", 0.060, (-180, -240), "55"),
    Country("CA", 0.050, (-210, -300, -360, -420, -480), "1"),
    Country("JP", 0.040, (540,), "81"),
    Country("MX", 0.030, (-360, -420), "52"),
    Country("ES", 0.030, (60,), "34"),
    Country("IT", 0.030, (60,), "39"),
    Country("NL", 0.025, (60,), "31"),
    Country("AU", 0.025, (480, 570, 600), "61"),
    Country("SE", 0.020, (60,), "46"),
    Country("PL", 0.020, (60,), "48"),
    Country("NG", 0.020, (60,), "234"),
    Country("KR", 0.015, (540,), "82"),
    Country("ZA", 0.010, (120,), "27"),
    Country("AR", 0.010, (-180,), "54"),
    Country("NZ", 0.002, (720,), "64"),
    Country("IS", 0.0015, (0,), "354"),
    Country("LU", 0.0015, (60,), "352"),
    Country("EE", 0.001, (120,), "372"),
    Country("MT", 0.001, (60,), "356"),
    Country("UY", 0.001, (-180,), "598"),
    Country("FJ", 0.0005, (720,), "679"),
    Country("BT", 0.0003, (360,), "975"),
)

# fmt: off
FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Ali", "Amara", "Ana", "Anders", "Aoife", "Bruno", "Carla", "Chen", "Chiara", "Dario", "Diego", "Elena",
    "Emeka", "Emma", "Farah", "Finn", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Julia", "Kai", "Kenji",
    "Lara", "Leo", "Lina", "Lucas", "Maya", "Mateo", "Mei", "Nia", "Nils", "Noah", "Olga", "Omar", "Priya",
    "Rafael", "Rosa", "Sami", "Sara", "Tariq", "Tess", "Uma", "Victor", "Yara", "Yusuf", "Zoe",
)

LAST_NAMES: tuple[str, ...] = (
    "Adeyemi", "Andersson", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jansen",
    "Kowalski", "Kim", "Larsen", "Lopez", "Mehta", "Moreau", "Nakamura", "Novak", "Okafor", "Olsen", "Patel",
    "Petrov", "Quinn", "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Tanaka", "Torres", "Urban", "Varga",
    "Walsh", "Weber", "Wong", "Yilmaz", "Zhang", "Ziegler", "Murphy",
)

EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")

TITLE_ADJECTIVES: tuple[str, ...] = (
    "Quiet", "Bright", "Hidden", "Modern", "Simple", "Bold", "Gentle", "Rapid", "Classic", "Curious", "Golden",
    "Little", "Northern", "Open", "Secret", "Urban", "Wild", "Clever",
)

TITLE_NOUNS: tuple[str, ...] = (
    "Guide", "Story", "Collection", "Notes", "Journey", "Handbook", "Review", "Moments", "Edition", "Basics",
    "Secrets", "Essentials", "Diary", "Series", "Picks", "Lessons",
)
# fmt: on
