"""Small helpers that turn engine figures into Dagster metadata."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import MetadataValue


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
