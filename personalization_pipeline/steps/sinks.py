"""Rows appended batch by batch to Parquet files: memory holds one batch, never the whole output."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class ParquetSink:
    """``append(table, frame)`` like a DuckDB connection's, into ``paths[table]`` with ``schemas[table]``.
    On close, a table that got no rows still gets a file (with its schema)."""

    def __init__(self, paths: dict[str, Path], schemas: dict[str, pa.Schema]) -> None:
        self._paths = paths
        self._schemas = schemas
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows = dict.fromkeys(paths, 0)

    def append(self, table: str, frame: pd.DataFrame | pa.Table) -> None:
        """Append ``frame``'s columns of ``table``'s schema (cast to it)."""
        schema = self._schemas[table]
        if table not in self._writers:
            # dictionaries for the text columns only: numbers rarely repeat, and trying to encode
            # them as dictionaries cost a ranking batch's write twice its time
            text = [field.name for field in schema if pa.types.is_string(field.type)]
            self._writers[table] = pq.ParquetWriter(self._paths[table], schema, use_dictionary=text)
        if isinstance(frame, pd.DataFrame):
            rows = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
        else:
            rows = frame.select(schema.names).cast(schema)
        self._writers[table].write_table(rows)
        self.rows[table] += len(frame)

    def close(self) -> None:
        for table, path in self._paths.items():
            if table not in self._writers:
                pq.write_table(self._schemas[table].empty_table(), path)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
