"""Frames as Dagster table metadata, with a schema the UI shows as column types."""

import dagster as dg
import pandas as pd


def _column_type(dtype: object) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    return "string"


def table_metadata(frame: pd.DataFrame) -> dg.TableMetadataValue:
    """``frame`` as a table: NaN becomes empty, timestamps ISO text."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(str(name), _column_type(dtype)) for name, dtype in frame.dtypes.items()]
    )
    records = [
        dg.TableRecord(
            {
                str(name): None if pd.isna(value) else value.isoformat() if isinstance(value, pd.Timestamp) else value
                for name, value in row.items()
            }
        )
        for row in frame.astype(object).to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)
