"""The console script: help and version, token, generate, stop-db, and a failing run's exit code and message."""

from __future__ import annotations

import argparse
import secrets
from importlib.metadata import version

import pandas as pd
import psycopg
import pytest

from personalization_pipeline.cli import build_parser, main
from personalization_pipeline.config import Settings, project_root
from personalization_pipeline.serving.auth import decode_token
from personalization_pipeline.serving.database import start_embedded_server
from personalization_pipeline.serving.secrets import secret_problem
from personalization_pipeline_tests.pipeline_support import pipeline_env


def test_token_prints_a_token_the_endpoint_accepts(capsys):
    assert main(["token", "--user", "u42", "--role", "admin", "--ttl", "60"]) == 0
    principal = decode_token(capsys.readouterr().out.strip(), Settings.from_env().jwt_secret)
    assert (principal.user_id, principal.role) == ("u42", "admin")


def test_generate_writes_every_table(tmp_path):
    assert main(["generate", "--users", "20", "--items", "10", "--seed", "3", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"users.csv", "items.csv", "interactions.csv", "settings.csv"}
    assert len(pd.read_csv(tmp_path / "users.csv")) == 20


def test_stop_db_stops_the_embedded_server(tmp_path, monkeypatch):
    pg_dir = tmp_path / "pg"
    url = start_embedded_server(pg_dir)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    monkeypatch.setenv("PERSONALIZATION_EMBEDDED_PG_DIR", str(pg_dir))
    assert main(["stop-db"]) == 0
    assert not (pg_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)


def test_failed_run_exits_non_zero_and_names_the_file(tmp_path, pg_url, capfd):
    (tmp_path / "raw").mkdir()
    with pipeline_env(tmp_path, pg_url):
        assert main(["run", "--no-sample"]) == 1
    captured = capfd.readouterr()  # the console writes to the process's stdout
    out = captured.out.replace("\n", "")
    assert "failed" in out and "interactions" in out and str(tmp_path / "raw") in out
    assert 'File "' not in captured.out + captured.err  # the cause, not Dagster's stack trace
    (log,) = (tmp_path / "logs").glob("nightly-*.log")
    assert str(log) in out and 'File "' in log.read_text()  # the trace is kept in the job log


def test_serve_refuses_a_public_host_with_the_development_secret(capfd, monkeypatch):
    monkeypatch.delenv("PERSONALIZATION_JWT_SECRET", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "PERSONALIZATION_JWT_SECRET" in capfd.readouterr().out


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("short-secret", "shorter than 32"),
        ("dev-only-insecure-secret-change-me-0123456789", "config.py"),  # the built-in default
        (secrets.token_urlsafe(40), None),  # random, written nowhere: accepted
    ],
    ids=["short", "built-in-default", "random"],
)
def test_short_or_published_secrets_are_refused(secret, reason):
    problem = secret_problem(secret, project_root())
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem


def test_serve_refuses_a_secret_written_in_the_repository(capfd, monkeypatch):
    compose = (project_root() / "docker-compose.yml").read_text()
    assert "${PERSONALIZATION_JWT_SECRET:?" in compose  # compose ships no default secret
    monkeypatch.setenv("PERSONALIZATION_JWT_SECRET", "a-secret-that-is-written-in-this-test-file-0123")
    assert main(["serve", "--host", "127.0.0.1"]) == 2
    assert "test_cli.py" in capfd.readouterr().out


def test_help_describes_every_command_with_its_defaults_and_the_version(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"personalization-pipeline {version('personalization_pipeline')}"
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    top = parser.format_help()
    assert {"generate", "run", "serve", "token", "pii-eval", "bench", "worker", "stop-db"} <= set(commands)
    for name, command in commands.items():
        assert name in top and command.description, name  # listed, and its own help describes it
        for action in command._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
    assert "job to run (default: nightly)" in " ".join(commands["run"].format_help().split())
    assert "(default: S)" in commands["bench"].format_help()
    assert "(default: None)" not in "".join(c.format_help() for c in commands.values())
