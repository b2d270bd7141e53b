"""The windows a golden sample says it missed (`capture@gap`), merged, and what falls in them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.golden import GoldenSample

MAX_LISTED_GAPS = 20  # gap windows spelled out in `golden_gap_windows`; the rest are counted


def _merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed integer windows merged where they overlap or touch, sorted."""
    order = np.argsort(starts, kind="stable")
    merged_starts: list[int] = []
    merged_ends: list[int] = []
    for start, end in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if merged_ends and start <= merged_ends[-1] + 1:
            merged_ends[-1] = max(merged_ends[-1], end)
        else:
            merged_starts.append(start)
            merged_ends.append(end)
    return np.array(merged_starts, dtype=np.int64), np.array(merged_ends, dtype=np.int64)


@dataclass(frozen=True)
class Windows:
    """Merged closed windows on one axis (exchange time ns, or update ids)."""

    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, table: pa.Table, low: str, high: str) -> Windows:
        present = pc.is_valid(table[low]).to_numpy(zero_copy_only=False)
        starts = table[low].to_numpy(zero_copy_only=False)[present].astype(np.int64)
        ends = table[high].to_numpy(zero_copy_only=False)[present].astype(np.int64)
        return cls(*_merged(starts, ends))

    def inside(self, values: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.starts, values, side="right") - 1
        clipped = np.maximum(index, 0)
        return (
            (index >= 0) & (values <= self.ends[clipped])
            if self.starts.size
            else (np.zeros(np.shape(values), dtype=bool))
        )

    def side(self, values: np.ndarray) -> np.ndarray:
        """How many windows start at or before each value: two values outside every window
        with the same side have no window between them."""
        return np.searchsorted(self.starts, values, side="right")

    def covered_ns(self, start: int, end: int) -> int:
        low, high = np.maximum(self.starts, start), np.minimum(self.ends, end)
        return int(np.sum(np.maximum(high - low, 0)))


@dataclass(frozen=True)
class Gaps:
    times: Windows
    ids: Windows

    @classmethod
    def of(cls, golden: GoldenSample) -> Gaps:
        gaps = golden.gaps
        return cls(
            Windows.of(gaps, "from_time_ns", "to_time_ns"),
            Windows.of(gaps, "from_update_id", "to_update_id"),
        )


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe_gaps(gaps: pa.Table) -> str:
    described = []
    for gap in gaps.slice(0, MAX_LISTED_GAPS).to_pylist():
        parts = [gap["reason"]]
        if gap["from_time_ns"] is not None:
            parts.append(f"time {_iso(gap['from_time_ns'])}..{_iso(gap['to_time_ns'])}")
        if gap["from_update_id"] is not None:
            parts.append(f"update ids {gap['from_update_id']}..{gap['to_update_id']}")
        described.append(" ".join(parts))
    if gaps.num_rows > MAX_LISTED_GAPS:
        described.append(f"and {gaps.num_rows - MAX_LISTED_GAPS} more")
    return "; ".join(described)
