"""``serve``: the lookup app under uvicorn, with several worker processes that each listen on
their own socket.

uvicorn's own multi-worker mode gives every worker one shared listening socket, and whichever
worker wakes first accepts: a burst of keep-alive connections can land mostly on one worker
(25 of 32 on one of two workers, seen in the endpoint benchmark), whose clients then wait while
the other worker idles. Here, on Linux, each worker binds its own socket to the address with
``SO_REUSEPORT`` and the kernel spreads new connections over the workers by a hash of the
client's address and port. The parent only supervises: a worker that dies is replaced, one that
fails to start stops the server, and SIGINT or SIGTERM stop every worker (each finishes the
requests it is serving).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from personalization_pipeline.serving.app import APP_FACTORY

logger = logging.getLogger("uvicorn.error")

STOP_TIMEOUT_SECONDS = 30.0
_spawn = multiprocessing.get_context("spawn")
_KERNEL_SPREADS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
"""Whether the kernel spreads connections over sockets sharing an address (elsewhere one socket gets them all)."""


class ListenError(OSError):
    """The address cannot be listened on (in use, or not an address of this host)."""


def serve(host: str, port: int, workers: int, access_log: bool) -> int:
    """Serve the lookup app on ``host:port`` with ``workers`` processes until SIGINT or SIGTERM;
    return the exit code (:data:`uvicorn.config.STARTUP_FAILURE` when a worker could not start).

    Raises :class:`ListenError` when the address is taken or not this host's."""
    if workers == 1 or not _KERNEL_SPREADS:  # one process, or uvicorn's shared socket
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, access_log=access_log)
        return 0
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=_free_port(host, port), access_log=access_log)
    return _supervise(config, workers)


def _free_port(host: str, port: int) -> int:
    """Check that nothing listens on ``host:port`` (a socket without ``SO_REUSEPORT`` cannot join
    another server's group) and return the port, the one the system picks for port 0."""
    with _socket(host) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        return int(probe.getsockname()[1])


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # accepted sockets then get TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _worker(config: uvicorn.Config) -> None:
    """One worker process: its own listening socket in the address's ``SO_REUSEPORT`` group."""
    config.configure_logging()
    sock = _socket(config.host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        logger.error("worker cannot listen on %s:%s: %s", config.host, config.port, exc)
        sys.exit(STARTUP_FAILURE)
    uvicorn.Server(config).run(sockets=[sock])


def _start(config: uvicorn.Config) -> BaseProcess:
    process = _spawn.Process(target=_worker, args=(config,), name="personalization-api-worker")
    process.start()
    return process


def _supervise(config: uvicorn.Config, count: int) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    workers = [_start(config) for _ in range(count)]
    logger.info("serving on http://%s:%s with %d workers, each with its own socket", config.host, config.port, count)
    code = 0
    try:
        while not stop.is_set():
            wait([worker.sentinel for worker in workers], timeout=0.5)
            for index, worker in enumerate(workers):
                if worker.exitcode is None or stop.is_set():
                    continue
                if worker.exitcode == STARTUP_FAILURE:
                    logger.error("a worker failed to start (see above); stopping")
                    code = STARTUP_FAILURE
                    stop.set()
                    break
                logger.warning("worker %s exited with code %s; starting another", worker.pid, worker.exitcode)
                workers[index] = _start(config)
    finally:
        _stop(workers)
    return code


def _stop(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
    for worker in workers:
        worker.join(STOP_TIMEOUT_SECONDS)
        if worker.is_alive():
            logger.warning("worker %s did not stop within %.0f s; killing it", worker.pid, STOP_TIMEOUT_SECONDS)
            worker.kill()
            worker.join()
