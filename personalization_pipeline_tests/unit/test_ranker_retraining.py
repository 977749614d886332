"""When a nightly run retrains the re-ranker instead of reusing the weekly one."""

from __future__ import annotations

from datetime import datetime, timedelta

from personalization_pipeline.steps.registry import SKIPPED, TRAINED, RegistryEntry
from personalization_pipeline.steps.rerank import ranker_is_current

NOW = datetime(2026, 6, 10, 2, 0)


def _entry(age: timedelta, version: str | None = "ranker-1") -> RegistryEntry:
    status = TRAINED if version else SKIPPED
    return RegistryEntry("run", "ranker", version, "lambdarank", "{}", NOW - age, status, None if version else "few")


def test_a_weekly_re_ranker_serves_the_nightlies_until_it_is_older_than_the_limit():
    assert ranker_is_current(_entry(timedelta(days=6, hours=23)), NOW, 7.0)
    assert not ranker_is_current(_entry(timedelta(days=7)), NOW, 7.0)  # a missed weekly: the nightly retrains
    assert not ranker_is_current(_entry(timedelta(minutes=1)), NOW, 0.0)  # 0: retrain every night
    assert not ranker_is_current(None, NOW, 7.0)  # a fresh install trains on its first nightly
    assert not ranker_is_current(_entry(timedelta(hours=1), version=None), NOW, 7.0)  # skipped: nothing to reuse
