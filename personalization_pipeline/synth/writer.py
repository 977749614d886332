"""Append Arrow tables to one CSV or Parquet file per table."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

FORMATS = ("csv", "parquet")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def _for_csv(table: pa.Table) -> pa.Table:
    """Timestamps rendered as ISO-8601 UTC strings (``2024-05-01T13:45:00Z``)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(table.column(index), format=ISO_UTC)
            table = table.set_column(index, pa.field(field.name, pa.string()), text)
    return table


class TableWriter:
    """Streams batches of one table into ``<directory>/<name>.<fmt>``; opened on first write."""

    def __init__(self, directory: Path, name: str, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        self.path = directory / f"{name}.{fmt}"
        self.fmt = fmt
        self.rows = 0
        self._writer: pa_csv.CSVWriter | pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.fmt == "csv":
            table = _for_csv(table)
        if self._writer is None:
            self._writer = (
                pa_csv.CSVWriter(self.path, table.schema)
                if self.fmt == "csv"
                else pq.ParquetWriter(self.path, table.schema, compression="zstd")
            )
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
