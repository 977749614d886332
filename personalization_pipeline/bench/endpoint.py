"""The endpoint benchmark: the lookup endpoint started as ``serve`` would be, loaded on loopback
with many distinct users' tokens, and the bare primary-key lookup rate in the same run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..config import PREFIX
from ..serving.auth import mint_token
from ..serving.schema import RANKS
from .load import LoadResult, bare_lookups, encode_requests, load_test, wrk_load

HOST = "127.0.0.1"


@dataclass(frozen=True)
class EndpointResult:
    load: LoadResult
    bare_rate: float
    users: int
    connections: int
    generator: str = "python"  # the load generator: wrk, or the asyncio client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the endpoint exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the endpoint was not ready within {timeout:.0f} s")


def run_endpoint(
    url: str,
    workdir: Path,
    secret: str,
    users: int,
    connections: int,
    seconds: float,
    log: Path,
    generator: str | None = None,
) -> EndpointResult:
    """Serve what ``url`` holds, load ``/v1/rankings/{scope}`` for ``users`` distinct published
    (user, scope) rows from ``connections`` clients for ``seconds`` (after a 2-second warm-up),
    then time bare lookups of the same rows. ``generator``: ``wrk`` or ``python`` (the asyncio
    client); by default wrk where it is installed."""
    generator = generator or ("wrk" if shutil.which("wrk") else "python")
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            f"SELECT user_id, scope FROM {RANKS} ORDER BY md5(user_id || scope) LIMIT %s", [users]
        ).fetchall()
    if not keys:
        raise RuntimeError("nothing is published in the bench database: run the tier first")
    port = _free_port()
    env = {
        **os.environ,
        f"{PREFIX}RUNTIME_DIR": str(workdir),
        f"{PREFIX}DATABASE_URL": url,
        f"{PREFIX}JWT_SECRET": secret,
    }
    command = [sys.executable, "-m", "personalization_pipeline.cli", "serve", "--host", HOST, "--port", str(port)]
    with log.open("a") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, server)
        paths = [(f"/v1/rankings/{scope}?limit=10", mint_token(secret, user, ttl_seconds=3600)) for user, scope in keys]
        if generator == "wrk":
            wrk_load(HOST, port, paths, connections, 2.0, workdir)  # warm-up: pools, caches
            load = wrk_load(HOST, port, paths, connections, seconds, workdir)
        else:
            requests = encode_requests(paths, f"{HOST}:{port}")
            load_test(HOST, port, requests, connections, 2.0, 1_000_000)
            load = load_test(HOST, port, requests, connections, seconds, 5_000_000)
    finally:
        server.terminate()
        server.wait(timeout=30)
    bare = bare_lookups(url, [(u, s) for u, s in keys], min(seconds, 10.0))
    return EndpointResult(load, bare, len({u for u, _ in keys}), connections, generator)
