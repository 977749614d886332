"""The deployment files, checked as far as a machine without a Docker engine allows: the compose
file's structure, secrets and settings, the Dockerfile's stages and user, what the build context
leaves out, and the compose stack's Dagster instance running a real job on PostgreSQL storage.
(Building the image and starting the stack need a Docker engine; see the README.)"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from personalization_pipeline.config import PREFIX, Settings, project_root
from personalization_pipeline.serving.database import with_database

ROOT = project_root()
APP_SERVICES = ("dagster-webserver", "dagster-daemon", "api")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_app_service_runs_the_image_after_postgres_is_healthy(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *APP_SERVICES}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        mounted = {v.split(":")[0] for v in service["volumes"]}
        assert all((ROOT / m).is_file() for m in mounted if m.startswith("./")), name
    assert services["dagster-daemon"]["depends_on"]["dagster-webserver"] == {"condition": "service_healthy"}
    for name in ("dagster-webserver", "api"):
        port = services[name]["ports"][0].split(":")[1]
        assert f"127.0.0.1:{port}/" in " ".join(services[name]["healthcheck"]["test"]), name


def test_secrets_have_no_default_and_every_setting_exists(compose: dict) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name, operator in re.findall(r"\$\{(\w+)(:?[?-]?)", text):
        if re.search("SECRET|PASSWORD", name):
            assert operator == ":?", f"{name} must be required (${{{name}:?...}}), never defaulted"
    known = {f"{PREFIX}{field}".upper() for field in Settings.model_fields}
    for name in APP_SERVICES:
        for variable in compose["services"][name]["environment"]:
            assert not variable.startswith(PREFIX) or variable in known, f"{variable} is not a setting"


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_builds_in_two_stages_caches_dependencies_and_runs_as_a_user() -> None:
    steps = _instructions((ROOT / "Dockerfile").read_text())
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) == 2
    dependencies, final = steps[stages[0] : stages[1]], steps[stages[1] :]
    copies = [arg for op, arg in dependencies if op == "COPY"]
    assert copies == ["pyproject.toml README.md ./"]  # the dependency layer depends on these alone
    assert any(op == "RUN" and '".[deploy]"' in arg for op, arg in dependencies)
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [i for i, (op, _) in enumerate(final) if op == "USER"][-1] > max(
        i for i, (op, _) in enumerate(final) if op in ("COPY", "RUN")
    )  # nothing runs as root after the switch
    assert not any(op == "ADD" for op, _ in steps)


def test_the_build_context_leaves_out_environments_data_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".env", ".git", "data/*", "dagster_home", "**/__pycache__"} <= ignored


def test_the_stacks_dagster_instance_runs_a_job_on_postgres_storage(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    server = pg_url.rsplit("/", 1)[0] + "/postgres"
    name = f"pp_dagster_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        compose_url = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app"]["environment"]
        assert compose_url["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")  # the driver it needs
        monkeypatch.setenv(
            "DAGSTER_POSTGRES_URL", with_database(pg_url, name).replace("postgresql://", "postgresql+psycopg2://", 1)
        )
        (tmp_path / "dagster.yaml").write_text((ROOT / "dagster_home/compose/dagster.yaml").read_text())

        @dg.asset
        def probe() -> int:
            return 1

        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            result = dg.materialize([probe], instance=instance)
            assert result.success and instance.get_run_by_id(result.run_id) is not None
        with psycopg.connect(with_database(pg_url, name)) as conn:
            stored = conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()
        assert stored == (1,)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
