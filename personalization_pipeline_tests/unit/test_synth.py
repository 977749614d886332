"""Sample data generator: contract columns, determinism, chunking, formats, planted structure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from personalization_pipeline.synth import TABLES, generate

END = datetime(2025, 6, 1, 13, tzinfo=UTC)
COLUMNS = {
    "items": ["item_id", "scope", "category", "created_at", "approved_at", "title"],
    "users": [
        "user_id",
        "signup_at",
        "country_code",
        "timezone_offset",
        "device_type",
        "email",
        "full_name",
        "phone",
        "ip_address",
        "birth_date",
        "postal_code",
    ],
    "interactions": [
        "user_id",
        "item_id",
        "occurred_at",
        "event_type",
        "value",
        "session_id",
        "device_type",
    ],
    "settings": ["user_id", "personalization_enabled", "data_sharing_consent", "updated_at"],
}
PII = ["email", "full_name", "phone", "ip_address", "birth_date", "postal_code"]
EVENT_TYPES = {"view", "click", "accept", "dismiss", "complete", "rate", "time_spent"}


def _read(directory: Path, table: str) -> pd.DataFrame:
    path = directory / f"{table}.csv"
    return pd.read_csv(path, dtype={"user_id": str, "item_id": str, "postal_code": str})


def _bytes(directory: Path, fmt: str = "csv") -> dict[str, bytes]:
    return {t: (directory / f"{t}.{fmt}").read_bytes() for t in TABLES}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate(out, users=3000, items=400, seed=7, end=END)


def test_writes_every_table_with_contract_columns(sample):
    out, counts = sample
    for table, columns in COLUMNS.items():
        frame = _read(out, table)
        assert list(frame.columns) == columns, table
        assert len(frame) == counts[table], table
    assert counts["users"] == counts["settings"] == 3000
    assert counts["items"] == 400


def test_ids_are_padded_strings(sample):
    out, _ = sample
    users, items = _read(out, "users"), _read(out, "items")
    assert users.user_id.str.fullmatch(r"u\d{7}").all() and users.user_id.is_unique
    assert items.item_id.str.fullmatch(r"i\d{6}").all() and items.item_id.is_unique
    events = _read(out, "interactions")
    assert set(events.user_id) <= set(users.user_id)
    assert set(events.item_id) <= set(items.item_id)


def test_items_have_three_scopes_with_categories(sample):
    items = _read(sample[0], "items")
    assert set(items.scope) == {"articles", "products", "videos"}
    per_scope = items.groupby("scope").category.nunique()
    assert (per_scope >= 5).all()
    assert (pd.to_datetime(items.approved_at) >= pd.to_datetime(items.created_at)).all()
    assert items.title.str.len().gt(0).all()


def test_all_event_types_with_values_where_expected(sample):
    events = _read(sample[0], "interactions")
    assert set(events.event_type) == EVENT_TYPES
    valued = events.event_type.isin(["rate", "time_spent"])
    assert events.value[valued].notna().all() and events.value[~valued].isna().all()
    stars = events.value[events.event_type == "rate"]
    assert stars.between(1, 5).all() and stars.nunique() == 5
    assert (events.value[events.event_type == "time_spent"] > 0).all()
    assert (events.event_type == "view").mean() > 0.4


def test_events_fall_inside_the_window_and_after_signup(sample):
    out, _ = sample
    events = _read(out, "interactions")
    at = pd.to_datetime(events.occurred_at, utc=True, format="ISO8601")
    assert at.max() <= pd.Timestamp(END)
    assert at.min() >= pd.Timestamp(END) - timedelta(days=121)
    assert at.max() >= pd.Timestamp(END) - timedelta(days=1)
    users = _read(out, "users").set_index("user_id")
    signup = pd.to_datetime(users.signup_at, utc=True, format="ISO8601")
    first = at.groupby(events.user_id).min()
    assert (signup.loc[first.index] <= first).all()


def test_rows_are_sorted_by_user_then_time(sample):
    events = _read(sample[0], "interactions")
    keys = list(zip(events.user_id, events.occurred_at, strict=True))
    assert keys == sorted(keys)


def test_sessions_belong_to_one_user_and_device(sample):
    events = _read(sample[0], "interactions")
    per_session = events.groupby("session_id")[["user_id", "device_type"]].nunique()
    assert (per_session == 1).all().all()
    assert len(per_session) > 3000


def test_about_five_percent_opted_out(sample):
    settings = _read(sample[0], "settings")
    opted_out = 1 - settings.personalization_enabled.mean()
    assert 0.03 <= opted_out <= 0.07
    assert 0.5 < settings.data_sharing_consent.mean() < 0.9


def test_users_carry_fake_pii_and_skewed_countries(sample):
    users = _read(sample[0], "users")
    assert users[PII].notna().all().all()
    assert users.email.str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|org|net)").all()
    assert users.ip_address.str.fullmatch(r"\d+\.\d+\.\d+\.\d+").all()
    countries = users.country_code.value_counts()
    assert countries.iloc[0] / len(users) > 0.2
    assert (countries < 10).any()
    us = users[users.country_code == "US"]
    assert us.timezone_offset.isin([-300, -360, -420, -480]).mean() > 0.9


def test_activity_is_heavy_tailed(sample):
    per_user = _read(sample[0], "interactions").groupby("user_id").size()
    assert per_user.max() > 8 * per_user.median()
    assert (per_user <= 3).any()
    assert 25 < per_user.mean() < 60


def test_same_seed_and_end_give_identical_files(tmp_path, sample):
    generate(tmp_path, users=3000, items=400, seed=7, end=END)
    assert _bytes(tmp_path) == _bytes(sample[0])


def test_other_seed_differs(tmp_path):
    generate(tmp_path / "a", users=200, items=100, seed=1, end=END)
    generate(tmp_path / "b", users=200, items=100, seed=2, end=END)
    first, second = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert first["interactions"] != second["interactions"]
    assert first["items"] != second["items"]


def test_chunk_size_does_not_change_the_output(tmp_path):
    seen: list[int] = []
    small = generate(tmp_path / "s", 700, 150, end=END, chunk_users=1, progress=seen.append)
    large = generate(tmp_path / "l", 700, 150, end=END, chunk_users=100_000)
    assert small == large
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "l")
    assert sum(seen) == 700 and len(seen) > 1


def test_parquet_matches_csv(tmp_path):
    csv_counts = generate(tmp_path / "c", 300, 120, end=END, fmt="csv")
    pq_counts = generate(tmp_path / "p", 300, 120, end=END, fmt="parquet", chunk_users=100)
    assert csv_counts == pq_counts
    for table in TABLES:
        parquet = pq.read_table(tmp_path / "p" / f"{table}.parquet").to_pandas()
        csv = _read(tmp_path / "c", table)
        assert list(parquet.columns) == list(csv.columns) == COLUMNS[table]
        assert len(parquet) == csv_counts[table]
        assert parquet.iloc[:, 0].tolist() == csv.iloc[:, 0].tolist()
    events = pq.read_table(tmp_path / "p" / "interactions.parquet").to_pandas()
    csv_at = pd.to_datetime(_read(tmp_path / "c", "interactions").occurred_at, utc=True)
    assert (events.occurred_at.dt.tz_convert("UTC") == csv_at).all()


def test_default_end_is_the_current_hour(tmp_path):
    before = datetime.now(UTC)
    generate(tmp_path, users=50, items=40)
    at = pd.to_datetime(_read(tmp_path, "interactions").occurred_at, utc=True)
    assert at.max() <= pd.Timestamp(datetime.now(UTC))
    assert at.max() >= pd.Timestamp(before) - timedelta(days=3)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        generate(tmp_path, users=10, items=10, fmt="json")
    with pytest.raises(ValueError):
        generate(tmp_path, users=0, items=10)


def _ndcg(ranked: np.ndarray, relevant: set[int], k: int = 10) -> float:
    gain = sum(1 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    return gain / sum(1 / np.log2(i + 2) for i in range(min(len(relevant), k)))


def test_collaborative_filtering_beats_popularity(sample):
    """The planted tastes make implicit ALS clearly better than item popularity."""
    from implicit.als import AlternatingLeastSquares

    events = _read(sample[0], "interactions")
    events = events[events.event_type != "dismiss"]
    position = events.groupby("user_id").cumcount()
    size = events.groupby("user_id").user_id.transform("size")
    test = position >= np.ceil(size * 0.8)
    users = {u: i for i, u in enumerate(sorted(events.user_id.unique()))}
    items = {t: i for i, t in enumerate(sorted(events.item_id.unique()))}
    train = events[~test]
    matrix = sp.csr_matrix(
        (np.ones(len(train)), (train.user_id.map(users), train.item_id.map(items))),
        shape=(len(users), len(items)),
    )
    model = AlternatingLeastSquares(factors=32, iterations=10, regularization=0.05, random_state=0)
    model.fit(matrix, show_progress=False)
    popularity = np.argsort(-np.asarray((matrix > 0).sum(axis=0)).ravel(), kind="stable")

    als, pop = [], []
    held_out = events[test].groupby("user_id").item_id.agg(set)
    rows = np.array([users[u] for u in held_out.index])
    recommended, _ = model.recommend(rows, matrix[rows], N=10)
    for row, ranked, truth in zip(rows, recommended, held_out, strict=True):
        seen = set(matrix[row].indices)
        relevant = {items[t] for t in truth} - seen
        if relevant:
            als.append(_ndcg(ranked, relevant))
            pop.append(_ndcg(np.array([i for i in popularity if i not in seen]), relevant))
    assert np.mean(pop) > 0
    assert np.mean(als) > 1.5 * np.mean(pop)
