"""``serve`` as a real HTTP server with several worker processes, against the real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from personalization_pipeline.config import PREFIX, Settings
from personalization_pipeline_tests.conftest import API_SETTINGS

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def serving(url: str, workdir: Path, log: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``personalization-pipeline serve`` on a free loopback port until ``/readyz`` answers; yields its base URL."""
    port = _free_port()
    environment = {
        **os.environ,
        f"{PREFIX}RUNTIME_DIR": str(workdir),
        f"{PREFIX}DATABASE_URL": url,
        f"{PREFIX}JWT_SECRET": API_SETTINGS.jwt_secret,
        f"{PREFIX}JWT_ISSUER": str(API_SETTINGS.jwt_issuer),
        f"{PREFIX}JWT_AUDIENCE": str(API_SETTINGS.jwt_audience),
        **{PREFIX + name.upper(): value for name, value in env.items()},
    }
    command = [sys.executable, "-m", "personalization_pipeline.cli", "serve", "--host", HOST, "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen([*command, *args], env=environment, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the endpoint did not become ready"
            time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:  # not listening yet, or 503
        return False


def test_workers_default_to_the_cpu_count_and_are_configurable(monkeypatch) -> None:
    monkeypatch.delenv(f"{PREFIX}API_WORKERS", raising=False)
    assert Settings.from_env().api_workers == os.cpu_count()
    assert Settings.from_env().api_access_log is False
    monkeypatch.setenv(f"{PREFIX}API_WORKERS", "3")
    assert Settings.from_env().api_workers == 3
    monkeypatch.setenv(f"{PREFIX}API_WORKERS", "0")
    with pytest.raises(ValueError, match=f"{PREFIX}API_WORKERS"):
        Settings.from_env()


def test_a_multi_worker_server_answers_every_request_like_the_app(served, api_client, bearer, tmp_path) -> None:
    log = tmp_path / "serve.log"
    with serving(served.url, tmp_path, log, "--workers", "2") as (base, server):
        workers = [p for p in psutil.Process(server.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        cases = [(f"/v1/rankings/{scope}?limit=3", bearer(user)) for user in served.users for scope in served.scopes]
        cases += [
            ("/v1/rankings/news?limit=2", bearer(served.expired_user)),  # the global fallback
            ("/v1/users/bob/rankings/SPORTS", bearer("boss", "admin")),
            ("/v1/users/bob/rankings/news", bearer("alice")),  # 403
            ("/v1/rankings/nowhere", bearer("alice")),  # 404
            ("/v1/rankings/news?limit=0", bearer("alice")),  # 422
            ("/v1/rankings/news", {"Authorization": "Bearer not-a-token"}),  # 401
            ("/v1/settings", bearer("alice")),
            ("/v1/admin/metrics", bearer("boss", "admin")),
        ]
        for _ in range(3):  # fresh connections, spread over both workers
            for path, headers in cases:
                expected = api_client.get(path, headers=headers)
                assert _get(base + path, headers) == (expected.status_code, expected.content), path
    assert "GET /v1/rankings" not in log.read_text()  # no access log by default


def test_the_access_log_can_be_turned_on(served, bearer, tmp_path) -> None:
    log = tmp_path / "serve.log"
    with serving(served.url, tmp_path, log, "--workers", "1", api_access_log="true") as (base, _):
        assert _get(f"{base}/v1/rankings/news", bearer("alice"))[0] == 200
    assert "GET /v1/rankings/news HTTP/1.1" in log.read_text()
