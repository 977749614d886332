"""The DuckDB warehouse file: one run at a time, on a private copy promoted when the run succeeds.

Within a run (set up once per run by the in-process executor) every connection opens the
run's working copy (see :mod:`warehouse_run`); the copy replaces the warehouse at the end
only when no step failed and the run was not cancelled. Outside a run (tests, ad-hoc use)
connections open the warehouse file itself. Connections are short-lived: DuckDB allows one
writer, and the dbt subprocess opens the same file between Python steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from ..sqlutil import limit_memory
from ..warehouse_run import WarehouseRun, begin
from .serving_db import ServingDatabaseResource

_NOT_PROMOTED = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)


class WarehouseResource(dg.ConfigurableResource):
    """DuckDB database file shared by the ingest, dbt and Python assets."""

    path: str
    serving_db: ServingDatabaseResource  # holds the run lock
    lock_timeout_seconds: float = 600.0
    memory_limit: str  # DuckDB's buffer memory per connection (Settings.duckdb_memory_limit)
    _run: WarehouseRun | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._run = begin(Path(self.path), self.serving_db.get_url(), context.run.run_id, self.lock_timeout_seconds)
        context.log.info(f"run {context.run.run_id} holds the warehouse; working on {self._run.work}")  # type: ignore[union-attr]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run is None:
            return
        run_id = self._run.run_id
        instance = context.instance
        succeeded = instance is not None and instance.get_run_stats(run_id).steps_failed == 0
        record = instance.get_run_by_id(run_id) if instance is not None else None
        promote = succeeded and record is not None and record.status not in _NOT_PROMOTED
        self._run.finish(promote=promote)
        self._run = None

    @property
    def active_path(self) -> str:
        """The file this run reads and writes: its working copy, or the warehouse outside a run."""
        return str(self._run.work) if self._run else self.path

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.active_path).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.active_path, read_only=read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            limit_memory(con, self.memory_limit)
            yield con
        finally:
            con.close()
