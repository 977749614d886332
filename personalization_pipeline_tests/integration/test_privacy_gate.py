"""The PII gate: catalogue screening, Great Expectations suites on real DuckDB, checks in the nightly job.

A clean run passes every check and publishes nothing personal. A doubtful *catalogue* value
never stops the run: in a served column (an e-mail address in a category, a user's first name
as a category) the item is withheld, named and counted, and the rest publishes; in a column
that is not served (titles such as ``The 5.6.7.8's``, ``Firmware 1.2.10.4`` or a user's name)
it is only reported. A value derived from users (a user id that is an e-mail address) still
fails a blocking check, so ``serving_tables`` never runs and the previous publish stays served.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.definitions import build_definitions
from personalization_pipeline.privacy.gx_suites import SERVED_SCANS, Scan, validate_table
from personalization_pipeline.privacy.pii import RawPii, normalise, pii_kinds
from personalization_pipeline.synth.generator import generate
from personalization_pipeline_tests.pipeline_support import json_strings, pipeline_env, served_strings

PII_COLUMNS = (
    "email",
    "full_name",
    "first_name",
    "phone",
    "ip_address",
    "birth_date",
    "postal_code",
    "age",
    "gender",
    "occupation",
)
OCCUPATIONS = ("nurse", "teacher", "accountant", "software developer", "electrician", "chef", "retired")
CHECKED = {"stg_items", "user_features", "user_rankings", "global_rankings"}
USER_FEATURE_COLUMNS = next(s.exact_columns for s in SERVED_SCANS if s.table == "user_features")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
LEAKED_EMAIL = "leak.test@example.org"


def _nightly() -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """Run the nightly job in this process, as ``runner.run_job`` does; the result and the run's log lines."""
    instance = dg.DagsterInstance.ephemeral()
    result = (
        build_definitions()
        .resolve_job_def("nightly")
        .execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    )
    return result, [entry.user_message for entry in instance.all_logs(result.run_id)]


def _pii_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    evaluations = result.get_asset_check_evaluations()
    return {e.asset_key.to_user_string(): e for e in evaluations if e.check_name == "pii_free"}


def _unserved_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "pii_scan_unserved"]
    return check


def _feature_strings(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT user_id, device_type, country, timezone, CAST(to_json(category_preferences) AS VARCHAR) "
            "FROM user_features"
        ).fetchall()
    return {s for *text, prefs in rows for s in [*text, *json_strings(json.loads(prefs))] if s is not None}


def _published(url: str) -> tuple[list, list]:
    with psycopg.connect(url) as conn:
        ranks = conn.execute(
            "SELECT user_id, scope, items, generated_at FROM personalization_ranks ORDER BY user_id, scope"
        ).fetchall()
        global_ranks = conn.execute(
            "SELECT scope, items, generated_at FROM personalization_global_ranks ORDER BY scope"
        ).fetchall()
    return ranks, global_ranks


@dataclass(frozen=True)
class Gate:
    """The clean run: its settings and environment, result, raw users and warehouse feature strings."""

    settings: Settings
    env: pytest.MonkeyPatch
    result: dg.ExecuteInProcessResult
    users: pd.DataFrame
    feature_strings: set[str]


@pytest.fixture(scope="module")
def gate(tmp_path_factory, reset_pg) -> Gate:
    """Raw users carrying nine PII columns, and one clean nightly run on them."""
    root = tmp_path_factory.mktemp("privacy_gate")
    raw = root / "raw"
    generate(raw, users=300, items=120, seed=23)
    users = pd.read_csv(raw / "users.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(23)
    users["age"] = rng.integers(18, 60, len(users)).astype(str)  # never equal to a timezone offset (0, >= 60)
    users["gender"] = rng.choice(["female", "male", "non-binary"], len(users))
    users["occupation"] = rng.choice(OCCUPATIONS, len(users))
    users["first_name"] = users["full_name"].str.split(" ").str[0]
    users.to_csv(raw / "users.csv", index=False)
    with pipeline_env(root, reset_pg()) as env:
        settings = Settings.from_env()
        result, _ = _nightly()
        assert result.success
        yield Gate(settings, env, result, users, _feature_strings(settings.warehouse_path))


def _catalog(settings: Settings, target: Path, changes: list[tuple[str, str]]) -> list[str]:
    """Copy the raw data to ``target`` with value ``changes[i] = (column, value)`` in the i-th most
    interacted item; return those items' ids."""
    shutil.copytree(settings.data_dir, target)
    items = pd.read_csv(target / "items.csv", dtype=str, keep_default_na=False)
    interactions = pd.read_csv(target / "interactions.csv", dtype=str, usecols=["item_id"])
    top = list(interactions["item_id"].value_counts().index[: len(changes)])
    for item_id, (column, value) in zip(top, changes, strict=True):
        items.loc[items["item_id"] == item_id, column] = value
    items.to_csv(target / "items.csv", index=False)
    return top


def _served_item_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT items FROM personalization_ranks UNION ALL SELECT items FROM personalization_global_ranks"
        ).fetchall()
    return {item["id"] for (items,) in rows for item in items}


def _run_on(env: pytest.MonkeyPatch, data_dir: Path) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    env.setenv("PERSONALIZATION_DATA_DIR", str(data_dir))
    try:
        return _nightly()
    finally:
        env.delenv("PERSONALIZATION_DATA_DIR")


def _assert_blocked(result, logs: list[str], failed_checks: set[str]) -> None:
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "serving_tables" not in materialized
    assert not any(e.is_step_start and e.step_key.startswith("serving_tables.") for e in result.all_events)
    # the publish, or the rankings it needs (whose later steps are then never planned), were held back
    held = ("Dependencies for step serving_tables.", "Dependencies for step user_rankings.")
    assert any(line.startswith(held) and "Not executing" in line for line in logs)
    checks = _pii_checks(result)
    assert {name for name, e in checks.items() if not e.passed} == failed_checks
    for name in failed_checks:
        assert checks[name].metadata["failures"].value >= 1


def test_clean_run_passes_every_privacy_check_and_publishes(gate):
    checks = _pii_checks(gate.result)
    assert set(checks) == CHECKED and all(e.passed for e in checks.values())
    assert all(e.blocking for e in checks.values())
    unserved = _unserved_check(gate.result)
    assert unserved.passed and not unserved.blocking
    features = checks["user_features"].metadata
    assert features["rows/user_features"].value > 0 and features["failures"].value == 0
    assert set(features["raw_pii_columns"].value) == set(PII_COLUMNS)
    assert features["raw_pii_values"].value > 1000  # e-mails, names, phones, IPs, birth dates of 300 users
    materialized = {e.asset_key.to_user_string() for e in gate.result.get_asset_materialization_events()}
    assert "serving_tables" in materialized


def test_no_raw_pii_value_reaches_any_serving_table_or_the_features(gate):
    raw_values = {normalise(v) for column in PII_COLUMNS for v in gate.users[column] if v}
    served = {normalise(s) for s in served_strings(gate.settings.database_url)}
    features = {normalise(s) for s in gate.feature_strings}
    assert len(served) > 300 and len(features) > 300
    assert not raw_values & served
    assert not raw_values & features
    assert not [s for s in served | features if pii_kinds(s)]


def test_a_real_catalogue_publishes_odd_values_withheld_or_served_and_allowlisted(gate, tmp_path):
    """Band names and version numbers in titles (not served), a user's first name as a title and as
    a category, a version number as a category (served: withheld) and one the operator allowlisted."""
    first_names = gate.users["first_name"].value_counts()
    name = next(n for n in first_names.index[::-1] if first_names[n] < 10)  # identifying: held by < k users
    changes = [
        ("title", "The 5.6.7.8's"),
        ("title", "Firmware 1.2.10.4"),
        ("title", name),
        ("category", "build 2.4.10.1"),
        ("category", name),
        ("category", "release 3.1.4.1"),
    ]
    items = _catalog(gate.settings, tmp_path / "raw", changes)
    gate.env.setenv("PERSONALIZATION_PII_ALLOW", json.dumps(["Release 3.1.4.1"]))  # case: normalised
    try:
        result, logs = _run_on(gate.env, tmp_path / "raw")
    finally:
        gate.env.delenv("PERSONALIZATION_PII_ALLOW")
    assert result.success
    withheld = result.asset_materializations_for_node("withheld_items")[0].metadata
    assert withheld["withheld_items"].value == 2 and withheld["withheld_by_finding"].value == {
        "ipv4": 1,
        "raw users value": 1,
    }
    assert sorted(withheld["first_withheld"].value) == sorted(items[3:5])
    served = _served_item_ids(gate.settings.database_url)
    assert not served & set(items[3:5])  # withheld: in no ranking
    assert items[0] in served and items[5] in served  # odd title served as usual; allowlisted category served
    with psycopg.connect(gate.settings.database_url) as conn:
        ranked = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM personalization_ranks")}
    with duckdb.connect(str(gate.settings.warehouse_path), read_only=True) as con:
        # every opted-in user with a positive signal left has a ranking, and only opted-in users with history
        positive = "SELECT DISTINCT user_id FROM mart_user_item_signals WHERE weight > 0"
        active = {r[0] for r in con.execute("SELECT user_id FROM mart_user_activity").fetchall()}
        assert {r[0] for r in con.execute(positive).fetchall()} <= ranked <= active
        categories = {r[0] for r in con.execute("SELECT DISTINCT category FROM mart_user_item_signals").fetchall()}
        quarantined = con.execute(
            "SELECT row_json FROM quarantine WHERE reason = 'withheld_pii' "
            "AND batch_id = (SELECT max(batch_id) FROM ingest_batches)"
        ).fetchall()
    assert "build 2.4.10.1" not in categories and name not in categories  # not in features either
    assert {json.loads(r[0])["item_id"] for r in quarantined} == set(items[3:5])
    unserved = _unserved_check(result)
    assert not unserved.passed and not unserved.blocking and unserved.severity == dg.AssetCheckSeverity.WARN
    for item_id in items[:3]:
        assert item_id in unserved.description  # each title finding names its item
    report = result.asset_materializations_for_node("privacy_report")[0].metadata
    assert report["catalog_items_withheld"].value == 2
    assert f"{items[5]} (category)" in report["report"].value and "release 3.1.4.1" in report["report"].value
    assert name.lower() not in "\n".join(logs).lower() + repr(withheld) + unserved.description.lower()


def test_an_email_in_a_category_is_withheld_named_and_never_published(gate, tmp_path, capfd):
    (item,) = _catalog(gate.settings, tmp_path / "raw", [("category", LEAKED_EMAIL)])
    result, logs = _run_on(gate.env, tmp_path / "raw")
    assert result.success
    withheld = result.asset_materializations_for_node("withheld_items")[0].metadata
    assert withheld["first_withheld"].value == [item] and withheld["withheld_by_finding"].value == {"email": 1}
    assert f"| {item} | category | email | l***@example.org |" in withheld["findings"].value
    assert item not in _served_item_ids(gate.settings.database_url)
    assert LEAKED_EMAIL not in served_strings(gate.settings.database_url)
    output = capfd.readouterr()
    assert LEAKED_EMAIL not in output.out + output.err + "\n".join(logs) + repr(withheld)


def test_an_email_in_a_user_keyed_value_still_blocks_publishing(gate, tmp_path, capfd):
    before = _published(gate.settings.database_url)
    raw = tmp_path / "raw"
    shutil.copytree(gate.settings.data_dir, raw)
    interactions = pd.read_csv(raw / "interactions.csv", dtype=str, keep_default_na=False)
    leaked = interactions[interactions["user_id"] == interactions["user_id"].iloc[0]].assign(user_id=LEAKED_EMAIL)
    pd.concat([interactions, leaked]).to_csv(raw / "interactions.csv", index=False)
    result, logs = _run_on(gate.env, raw)
    _assert_blocked(result, logs, {"user_features"})  # the rankings, built on the features, are never computed
    checks = _pii_checks(result)
    assert "user_rankings" not in checks
    assert "user_id: email pattern (1, e.g. l***@example.org)" in checks["user_features"].description
    assert "PERSONALIZATION_PII_ALLOW" in checks["user_features"].description  # the blocked message names it
    reported = repr([(e.description, e.metadata) for e in checks.values()])
    output = capfd.readouterr()
    assert LEAKED_EMAIL not in reported + output.out + output.err + "\n".join(logs)
    assert _published(gate.settings.database_url) == before


@pytest.fixture
def warehouse():
    with duckdb.connect() as con:
        yield con


def test_suite_requires_exactly_the_allowlisted_feature_columns(warehouse):
    warehouse.execute(
        "CREATE TABLE user_features AS SELECT 'u1' AS user_id, 'mobile' AS device_type, 'US' AS country, "
        "'-300' AS timezone, 0.5 AS engagement_score, MAP {'news': {'weight': 1.0}} AS category_preferences, "
        "'a note' AS free_text"
    )
    result = validate_table(
        warehouse, Scan("user_features", exact_columns=USER_FEATURE_COLUMNS), RawPii(None, (), frozenset())
    )
    assert not result.success
    columns = next(f for f in result.failures if f.check == "columns equal the allowlist")
    assert "+free_text" in columns.examples and "-sessions_7d" in columns.examples


def test_suite_compares_strings_not_numbers_and_reads_json_keys(warehouse):
    warehouse.execute(
        "CREATE TABLE global_rankings AS SELECT * FROM (VALUES "
        "('articles', 1, 'i000001', 34.0), ('articles', 34, 'i000034', 1.0)) t(scope, rank, item_id, score)"
    )
    raw = RawPii(None, ("age", "full_name"), frozenset({"34", "omar haddad", "i000034"}))
    assert not validate_table(warehouse, Scan("global_rankings"), raw).success  # the id string 'i000034' is raw
    raw = RawPii(None, ("age",), frozenset({"34"}))
    assert validate_table(warehouse, Scan("global_rankings"), raw).success  # rank 34 and score 34.0 are numbers
    warehouse.execute(
        "CREATE TABLE user_rankings AS SELECT 'u1' AS user_id, "
        "MAP {'Omar Haddad': 1, 'news': 2} AS tags, ['+44 20 7946 0958'] AS notes"
    )
    result = validate_table(warehouse, Scan("user_rankings"), RawPii(None, ("full_name",), frozenset({"omar haddad"})))
    assert {(f.column, f.check) for f in result.failures} == {("tags", "raw PII value"), ("notes", "phone pattern")}
    assert all("haddad" not in e and "7946" not in e for f in result.failures for e in f.examples)
