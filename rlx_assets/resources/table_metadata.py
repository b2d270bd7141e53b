"""The standard Dagster metadata of a stored Parquet partition: its URI and column schema.

`dagster/column_schema` makes the UI show the columns and their types on the asset page;
`dagster/uri` is where the partition lives (a `file://` URI for local storage).
"""

from __future__ import annotations

from urllib.parse import quote

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema


def column_schema(schema: pa.Schema) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name=field.name, type=str(field.type), description=None) for field in schema
        ]
    )


def storage_uri(location: str) -> str:
    """A URI for a location as the IO manager reports it (an absolute path or a full URL)."""
    # `=` stays readable in hive folder names (exchange=BINANCE), as it is valid in a URI path.
    return "file://" + quote(location, safe="/=") if location.startswith("/") else location


def stored_table_metadata(location: str, schema: pa.Schema) -> dict[str, MetadataValue]:
    return {
        "dagster/uri": MetadataValue.text(storage_uri(location)),
        "dagster/column_schema": MetadataValue.table_schema(column_schema(schema)),
    }
