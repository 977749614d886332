"""One run at a time per warehouse, working on a private copy that replaces the warehouse only
when the whole run succeeded.

A run first takes a PostgreSQL advisory lock named after the warehouse file, on a connection
it holds until the end (a run launched from the command line, the UI, a schedule or the queue
all take it; a crashed process releases it). A second run waits up to a bounded time, or
refuses at once, with a message naming the run that holds the lock. Holding the lock, the run
copies the warehouse to ``.<name>.<run_id>.work`` beside it and every step reads and writes
that copy. At the end the copy atomically replaces the warehouse (``os.replace``) if no step
failed, or is deleted: a failed run leaves every warehouse table as it was.

Under an executor that runs each step in its own process (multiprocess, Celery), each step that
opens the warehouse does all of the above for itself: the steps of one run take the warehouse
one after another (a step waits for its own run's other steps without a time limit), and each
step's writes replace the warehouse when it succeeds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg

POLL_SECONDS = 0.25
APPLICATION_NAME_PREFIX = "personalization run "


class WarehouseBusyError(RuntimeError):
    """Another run holds the warehouse for longer than this run may wait."""


def lock_key(warehouse: Path) -> int:
    """The advisory lock key (signed 64-bit) of a warehouse file."""
    digest = hashlib.sha256(f"personalization-warehouse:{Path(warehouse).resolve()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def work_path(warehouse: Path, run_id: str) -> Path:
    """Where run ``run_id`` keeps its private copy of ``warehouse``."""
    return warehouse.with_name(f".{warehouse.name}.{run_id}.work")


def _holder(conn: psycopg.Connection, key: int) -> str:
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
        (key,),
    ).fetchone()
    name = row[0] if row else ""
    return name.removeprefix(APPLICATION_NAME_PREFIX) if name.startswith(APPLICATION_NAME_PREFIX) else "another run"


@dataclass
class WarehouseRun:
    """A run holding the warehouse: its lock connection and its working copy."""

    warehouse: Path
    run_id: str
    work: Path
    _lock: psycopg.Connection = field(repr=False)

    def finish(self, *, promote: bool) -> None:
        """Replace the warehouse by the working copy (``promote``) or drop the copy; release the lock."""
        try:
            if promote and self.work.exists():
                with duckdb.connect(str(self.work)) as con:
                    con.execute("CHECKPOINT")  # everything in the file, no WAL left behind
                os.replace(self.work, self.warehouse)
            else:
                _remove(self.work)
        finally:
            self._lock.close()


def _remove(database: Path) -> None:
    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)


def begin(warehouse: Path, database_url: str, run_id: str, timeout_seconds: float) -> WarehouseRun:
    """Take the warehouse for ``run_id`` (waiting at most ``timeout_seconds``) and make its working copy.

    Raises :class:`WarehouseBusyError` when another run keeps it longer than that.
    """
    warehouse = Path(warehouse).resolve()
    key = lock_key(warehouse)
    conn = psycopg.connect(database_url, autocommit=True, application_name=f"{APPLICATION_NAME_PREFIX}{run_id}"[:63])
    try:
        deadline = time.monotonic() + timeout_seconds
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() >= deadline and _holder(conn, key) != run_id:
                waited = f"after waiting {timeout_seconds:g} s" if timeout_seconds else "at once"
                raise WarehouseBusyError(
                    f"the warehouse {warehouse} is in use by run {_holder(conn, key)}; this run gave up {waited} "
                    "and changed nothing (PERSONALIZATION_RUN_LOCK_TIMEOUT_SECONDS sets how long to wait)"
                )
            time.sleep(POLL_SECONDS)
        for stale in warehouse.parent.glob(f".{warehouse.name}.*.work*"):  # left by a killed run
            stale.unlink(missing_ok=True)
        work = work_path(warehouse, run_id)
        if warehouse.with_name(warehouse.name + ".wal").exists():  # written outside a run: fold the log in
            with duckdb.connect(str(warehouse)) as con:
                con.execute("CHECKPOINT")
        if warehouse.exists():  # promoted copies are checkpointed: the file alone is the database
            shutil.copyfile(warehouse, work)
        return WarehouseRun(warehouse, run_id, work, conn)
    except BaseException:
        conn.close()
        raise
