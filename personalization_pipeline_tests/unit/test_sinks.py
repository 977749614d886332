"""Rows appended batch by batch to Parquet: all batches kept in order, typed by the schema, and a
table that got no rows still has a readable, empty file."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from personalization_pipeline.steps.sinks import ParquetSink

SCHEMAS = {
    "lists": pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("tags", pa.list_(pa.string()))]),
    "empty": pa.schema([("user_id", pa.string()), ("score", pa.float64())]),
}


def test_batches_land_in_order_with_the_schemas_types(tmp_path):
    paths = {name: tmp_path / f"{name}.parquet" for name in SCHEMAS}
    batches = [
        pd.DataFrame({"rank": [1, 2], "user_id": ["a", "a"], "tags": [["source:als"], []], "extra": [0, 0]}),
        pd.DataFrame({"rank": [1], "user_id": ["b"], "tags": [["source:ease", "fresh"]], "extra": [0]}),
    ]
    with ParquetSink(paths, SCHEMAS) as sink:
        for batch in batches:
            sink.append("lists", batch)
    assert sink.rows == {"lists": 3, "empty": 0}
    lists = pq.read_table(paths["lists"])
    assert lists.schema == SCHEMAS["lists"]  # only the schema's columns, in its types (rank int64 -> int32)
    assert lists.to_pydict() == {
        "user_id": ["a", "a", "b"],
        "rank": [1, 2, 1],
        "tags": [["source:als"], [], ["source:ease", "fresh"]],
    }
    chunk = pq.ParquetFile(paths["lists"]).metadata.row_group(0)
    encodings = {chunk.column(i).path_in_schema: chunk.column(i).encodings for i in range(chunk.num_columns)}
    assert "RLE_DICTIONARY" in encodings["user_id"] and "RLE_DICTIONARY" not in encodings["rank"]  # text only
    empty = pq.read_table(paths["empty"])
    assert empty.num_rows == 0 and empty.schema == SCHEMAS["empty"]
