"""Small helpers that turn engine figures into Dagster metadata."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter, MetadataValue


def markdown_table(rows: list[Mapping[str, object]], limit: int = 20) -> MetadataValue:
    """The first `limit` rows as markdown (metadata lives in the event log: keep it small)."""
    if not rows:
        return MetadataValue.md("_none_")
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row[name]) for name in header) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return MetadataValue.md("\n".join(lines))


def recorded_metadata(
    context: AssetExecutionContext, asset_name: str, partition: str | None = None
) -> dict[str, object]:
    """The latest materialization metadata of an asset's partition (this run's partition by
    default; this run's materialization, when it ran); {} if it was never materialized."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=AssetKey(asset_name),
            asset_partitions=[partition if partition is not None else context.partition_key],
        ),
        limit=1,
    ).records
    if not records:
        return {}
    materialization = records[0].asset_materialization
    return {key: value.value for key, value in materialization.metadata.items()}
