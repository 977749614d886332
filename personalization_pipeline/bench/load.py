"""The endpoint under load: a keep-alive HTTP/1.1 client on loopback, and the bare lookup rate.

Where ``wrk`` (the C load generator, Debian's package ``wrk``) is installed, :func:`wrk_load`
drives it with a script that rotates the requests; otherwise :func:`load_test` runs a Python
client in its own process (one asyncio loop, ``connections`` sockets, requests pre-encoded),
which stops at a deadline or a request count, whichever comes first, and costs the server more
of the shared cores than wrk. :func:`bare_lookups` measures the floor: one psycopg connection
running the same primary-key read as a prepared statement.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def encode_requests(paths_and_tokens: list[tuple[str, str]], host: str) -> list[bytes]:
    """One GET per (path, bearer token), keep-alive."""
    return [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        for path, token in paths_and_tokens
    ]


async def _client(
    host: str, port: int, requests: list[bytes], first: int, deadline: float, budget: list[int]
) -> tuple[list[float], int]:
    reader, writer = await asyncio.open_connection(host, port)
    latencies: list[float] = []
    errors = 0
    index = first
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
            index += 1
    finally:
        writer.close()
    return latencies, errors


async def _load(host: str, port: int, requests: list[bytes], connections: int, seconds: float, max_requests: int):
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + seconds
    spread = max(len(requests) // connections, 1)
    results = await asyncio.gather(
        *(_client(host, port, requests, c * spread, deadline, budget) for c in range(connections))
    )
    return results, time.perf_counter() - started


def _run(args: tuple, out: multiprocessing.Queue) -> None:
    results, elapsed = asyncio.run(_load(*args))
    latencies = np.concatenate([np.asarray(r[0]) for r in results]) if results else np.empty(0)
    out.put((latencies.tolist(), sum(r[1] for r in results), elapsed))


def load_test(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float, max_requests: int
) -> LoadResult:
    """``connections`` concurrent keep-alive clients cycling through ``requests`` for ``seconds``
    (or ``max_requests`` in all), from a separate process; a non-200 answer counts as an error."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    worker = context.Process(target=_run, args=((host, port, requests, connections, seconds, max_requests), out))
    worker.start()
    latencies, errors, elapsed = out.get()
    worker.join()
    ms = np.asarray(latencies) * 1000
    p50, p95, p99 = (float(np.percentile(ms, q)) if len(ms) else 0.0 for q in (50, 95, 99))
    return LoadResult(len(ms), errors, elapsed, p50, p95, p99)


def bare_lookups(url: str, keys: list[tuple[str, str]], seconds: float) -> float:
    """Lookups per second of one connection reading a ranking by primary key, prepared."""
    query = "SELECT items FROM personalization_ranks WHERE user_id = %s AND scope = %s"
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute(query, keys[done % len(keys)], prepare=True).fetchone()
            done += 1
        return done / (time.perf_counter() - started)


_WRK_SCRIPT = """
local lines = {}
for line in io.lines(os.getenv("WRK_REQUESTS")) do lines[#lines + 1] = line end
local threads = 0
function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end
local sent = 0
request = function()
  sent = sent + 1
  local path, token = lines[(offset + sent) % #lines + 1]:match("^(%S+) (%S+)$")
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""
"""Requests cycle through the (path, token) lines of the file ``WRK_REQUESTS``; the summary line:
requests, errors (socket errors, timeouts and answers outside 2xx/3xx), microseconds, p50/p95/p99 ms."""


def wrk_load(
    host: str, port: int, paths_and_tokens: list[tuple[str, str]], connections: int, seconds: float, workdir: Path
) -> LoadResult:
    """``connections`` keep-alive connections from one wrk thread for ``seconds`` (whole, at least
    one), cycling through ``paths_and_tokens``."""
    script, listing = workdir / "wrk-rotate.lua", workdir / "wrk-requests.txt"
    script.write_text(_WRK_SCRIPT)
    listing.write_text("".join(f"{path} {token}\n" for path, token in paths_and_tokens))
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "-s", str(script)]
    done = subprocess.run(
        [*command, f"http://{host}:{port}"],
        env={**os.environ, "WRK_REQUESTS": str(listing)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout} {done.stderr}")
    requests, errors, micros, p50, p95, p99 = line.split()[1:]
    return LoadResult(int(requests), int(errors), int(micros) / 1e6, float(p50), float(p95), float(p99))
