"""Schema migrations of the serving database: empty, pre-migration and newer-than-code databases."""

from __future__ import annotations

import importlib

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from personalization_pipeline.cli import main
from personalization_pipeline.serving import migrate, tables
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.schema import API_ROLE, PER_USER_TABLES, POLICIES, SERVING_TABLES, ensure_schema
from personalization_pipeline_tests.conftest import API_SETTINGS

FIRST = importlib.import_module("personalization_pipeline.serving.migrations.versions.0001_serving_tables")


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
    return {r[0] for r in rows}


def test_an_empty_database_is_migrated_to_the_newest_schema(database):
    with psycopg.connect(database) as conn:
        ensure_schema(conn)
        assert migrate.current(conn) == migrate.head()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert set(SERVING_TABLES) <= tables
        assert {"kind", "params"} <= _columns(conn, "personalization_models")
        assert "model_version" in _columns(conn, "personalization_eval")
        ensure_schema(conn)  # idempotent
        assert migrate.current(conn) == migrate.head()


def test_a_database_created_before_migrations_is_upgraded_keeping_its_rows(database):
    with psycopg.connect(database) as conn:
        for statement in FIRST.STATEMENTS:  # what the code wrote before migrations existed
            conn.execute(statement)
        conn.execute(
            "INSERT INTO personalization_models (model_name, model_version, trained_at, active) "
            "VALUES ('als', 'als-old', now(), true)"
        )
        conn.commit()
        assert migrate.current(conn) is None
        ensure_schema(conn)
        assert migrate.current(conn) == migrate.head()
        row = conn.execute("SELECT model_version, kind, params FROM personalization_models").fetchone()
    assert row == ("als-old", None, {})


def test_a_schema_newer_than_the_code_is_refused_untouched(database):
    with psycopg.connect(database) as conn:
        ensure_schema(conn)
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        conn.commit()
        with pytest.raises(migrate.SchemaTooNewError, match=r"9999_from_the_future.*newer than this code"):
            ensure_schema(conn)
        assert migrate.current(conn) == "9999_from_the_future"
    with pytest.raises(migrate.SchemaTooNewError), TestClient(create_app(database, API_SETTINGS)):
        pass  # the endpoint refuses to start on it


def test_the_migrated_schema_is_the_core_table_definitions(database):
    with psycopg.connect(database) as conn:
        ensure_schema(conn)
    engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, tables.metadata)
    finally:
        engine.dispose()
    ignored = {"alembic_version"}  # Alembic's own bookkeeping
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name in ignored)] == []


def test_the_first_upgrade_creates_the_api_role_its_grants_and_row_level_security(database):
    with psycopg.connect(database) as conn:
        migrate.upgrade(conn)  # the migrations alone, without ensure_schema's re-application
        secured = conn.execute(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(%s)", (list(PER_USER_TABLES),)
        ).fetchall()
        policies = set(conn.execute("SELECT tablename, policyname FROM pg_policies").fetchall())
        readable = conn.execute(
            "SELECT has_table_privilege(%s, 'personalization_ranks', 'SELECT'), "
            "has_table_privilege(%s, 'personalization_features', 'SELECT')",
            (API_ROLE, API_ROLE),
        ).fetchone()
    assert {r[0] for r in secured} == set(PER_USER_TABLES)
    assert {(table, name) for table, name, _ in POLICIES} <= policies
    assert readable == (True, False)


def test_the_migrate_command_reports_upgrades_and_refuses_a_newer_schema(database, capsys, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATABASE_URL", database)
    assert main(["migrate", "--status"]) == 1
    assert "not migrated" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert f"not migrated -> {migrate.head()}" in capsys.readouterr().out
    assert main(["migrate", "--status"]) == 0 and "(up to date)" in capsys.readouterr().out
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    assert main(["migrate", "--status"]) == 2 and "newer than this code" in capsys.readouterr().out
    assert main(["migrate"]) == 2
    assert "refused" in capsys.readouterr().out
    with psycopg.connect(database) as conn:
        assert migrate.current(conn) == "9999_from_the_future"
