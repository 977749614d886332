"""``serve`` as a real HTTP server with several worker processes, against the real database."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.config import PREFIX, Settings
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.schema import ensure_schema
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


def _command(url: str, workdir: Path, port: int, *args: str, **env: str) -> tuple[list[str], dict[str, str]]:
    """The ``serve`` command line on ``port`` and its environment."""
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
    return [*command, *args], environment


@contextmanager
def serving(url: str, workdir: Path, log: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``personalization-pipeline serve`` on a free loopback port until ``/readyz`` answers; yields its base URL."""
    port = _free_port()
    command, environment = _command(url, workdir, port, *args, **env)
    with log.open("w") as out:
        server = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
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


def _workers(server: subprocess.Popen) -> list[psutil.Process]:
    """The server's live worker processes (a killed one not yet reaped is left out)."""
    workers = []
    for child in psutil.Process(server.pid).children():
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


def _sockets(process: psutil.Process, port: int, status: str) -> int:
    return sum(1 for c in process.net_connections("tcp") if c.laddr.port == port and c.status == status)


def _listening(server: subprocess.Popen, port: int, count: int) -> list[psutil.Process]:
    """The server's ``count`` workers once each listens on ``port`` (``/readyz`` answers as soon as one does)."""
    deadline = time.monotonic() + 60
    while True:
        workers = _workers(server)
        listeners = [_sockets(worker, port, psutil.CONN_LISTEN) for worker in workers]
        if listeners == [1] * count:
            return workers
        assert time.monotonic() < deadline, f"the workers' listening sockets: {listeners}"
        time.sleep(0.2)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:  # not listening yet, or 503
        return False


def test_workers_default_to_the_cpu_count_and_are_configurable(monkeypatch) -> None:
    monkeypatch.delenv(f"{PREFIX}API_WORKERS", raising=False)
    monkeypatch.delenv(f"{PREFIX}API_POOL_SIZE", raising=False)
    assert Settings.from_env().api_workers == os.cpu_count()
    assert Settings.from_env().api_pool_size == 2
    assert Settings.from_env().api_access_log is False
    monkeypatch.setenv(f"{PREFIX}API_WORKERS", "3")
    assert Settings.from_env().api_workers == 3
    monkeypatch.setenv(f"{PREFIX}API_WORKERS", "0")
    with pytest.raises(ValueError, match=f"{PREFIX}API_WORKERS"):
        Settings.from_env()
    monkeypatch.setenv(f"{PREFIX}API_WORKERS", "2")
    monkeypatch.setenv(f"{PREFIX}API_POOL_SIZE", "0")
    with pytest.raises(ValueError, match=f"{PREFIX}API_POOL_SIZE"):
        Settings.from_env()


def test_a_worker_reads_through_at_most_its_pool_size_of_connections(served, bearer) -> None:
    """Far more reads at once than the pool holds: every one answered, through one connection."""
    settings = API_SETTINGS.model_copy(update={"api_pool_size": 1})
    cases = [(f"/v1/rankings/{scope}", bearer(user)) for user in served.users for scope in served.scopes] * 4
    with TestClient(create_app(served.url, settings)) as client, ThreadPoolExecutor(16) as threads:
        statuses = list(threads.map(lambda case: client.get(case[0], headers=case[1]).status_code, cases))
        stats = client.app.state.pool.get_stats()
    assert statuses == [200] * len(cases)
    assert stats["pool_max"] == 1 and stats["connections_num"] == 1
    assert stats["requests_queued"] > 0  # reads did wait for a connection instead of opening more


def test_a_multi_worker_server_answers_every_request_like_the_app(served, api_client, bearer, tmp_path) -> None:
    log = tmp_path / "serve.log"
    with serving(served.url, tmp_path, log, "--workers", "2") as (base, server):
        assert len(_workers(server)) == 2
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


def test_each_worker_listens_on_its_own_socket_and_the_kernel_spreads_connections(served, tmp_path) -> None:
    """One shared socket let whichever worker woke first accept a burst of keep-alive connections
    (25 of 32 on one of two workers); each worker's own SO_REUSEPORT socket takes a share."""
    with serving(served.url, tmp_path, tmp_path / "serve.log", "--workers", "2") as (base, server):
        port = int(base.rsplit(":", 1)[1])
        workers = _listening(server, port, 2)
        assert _sockets(psutil.Process(server.pid), port, psutil.CONN_LISTEN) == 0
        clients = [http.client.HTTPConnection(HOST, port, timeout=10) for _ in range(24)]
        try:
            for client in clients:  # each held open (keep-alive) after its answer
                client.request("GET", "/healthz")
                assert client.getresponse().read() == b'{"status":"ok"}'
            held = [_sockets(worker, port, psutil.CONN_ESTABLISHED) for worker in workers]
        finally:
            for client in clients:
                client.close()
    assert sum(held) == len(clients) and min(held) > 0, held  # all 24 on one worker: odds 2 in 16 million


def test_a_dead_worker_is_replaced_and_a_stop_ends_every_worker(served, bearer, tmp_path) -> None:
    with serving(served.url, tmp_path, tmp_path / "serve.log", "--workers", "2") as (base, server):
        port = int(base.rsplit(":", 1)[1])
        first, second = _listening(server, port, 2)
        first.kill()
        first.wait(timeout=30)  # gone once the parent has reaped it
        workers = _listening(server, port, 2)
        assert second in workers and first.pid not in {worker.pid for worker in workers}
        assert _get(f"{base}/v1/rankings/news", bearer("alice"))[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)
    assert "starting another" in (tmp_path / "serve.log").read_text()


def test_serve_refuses_an_address_in_use(served, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        command, environment = _command(served.url, tmp_path, port, "--workers", "2")
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in done.stdout


def test_a_worker_that_cannot_start_stops_the_server(database, tmp_path) -> None:
    """A database migrated by newer code: every worker refuses to start; the server exits, no restart loop."""
    with psycopg.connect(database) as conn:
        ensure_schema(conn)
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    command, environment = _command(database, tmp_path, _free_port(), "--workers", "2")
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3  # uvicorn's start-up failure
    assert "newer than this code" in done.stdout + done.stderr
    assert "a worker failed to start" in done.stdout + done.stderr
