"""Which row groups of a neighbour day's file can hold rows of a day, from their statistics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.schema import BOOK_DELTAS


@dataclass(frozen=True)
class ColumnRange:
    """A column's statistics in one row group, as the file records them."""

    minimum: int
    maximum: int
    nulls: int


@dataclass(frozen=True)
class RowGroup:
    rows: int
    bytes: int  # compressed size in the file: what reading it costs
    ranges: dict[str, ColumnRange]  # time and sequence columns with statistics, by canonical name


def row_groups_for_day(
    table_name: str, row_groups: list[RowGroup], filed_under: dt.date, day: dt.date
) -> list[int]:
    """The row groups of a file filed under `filed_under` that can hold rows of `day`: all of
    the day's own files; of a neighbour's, those whose statistics do not prove every row to lie
    on another day (a row group without statistics is read).

    A delta message goes to the day of its first row, so it is never cut in two (see below).
    """
    if filed_under == day:
        return list(range(len(row_groups)))
    start, end = day_bounds_ns(day)
    earlier = filed_under < day
    chosen = [not _elsewhere(group, start, end, earlier) for group in row_groups]
    if table_name == BOOK_DELTAS and any(chosen):
        # The message at the edge of a row group read may continue in (later dt) or begin in
        # (earlier dt) its neighbour: a row group whose sequence numbers meet those of a row
        # group the times chose is read too (one step, not transitively: a message read whole
        # decides its day, and the row groups beyond hold whole messages of other days).
        sequences = [group.ranges.get("sequence_number") for group in row_groups]
        if None in sequences:
            return list(range(len(row_groups)))
        by_time = [sequences[index] for index, take in enumerate(chosen) if take]
        for index, own in enumerate(sequences):
            if any(
                own.minimum <= other.maximum and other.minimum <= own.maximum for other in by_time
            ):
                chosen[index] = True
    return [index for index, take in enumerate(chosen) if take]


def _elsewhere(group: RowGroup, start: int, end: int, earlier: bool) -> bool:
    """Do the statistics prove that no row of `group` (in a file filed on another day) has its
    time inside [start, end)? A row's time is origin_time, else received_time, else the day it
    was filed under (outside the day here)."""
    origin = group.ranges.get("origin_time")
    received = group.ranges.get("received_time")
    if origin is None:
        return False
    if earlier:
        # Rows without a valid origin_time fall back to received_time (or the earlier dt).
        fallback_before = (origin.nulls == 0 and origin.minimum > 0) or (
            received is not None and received.maximum < start
        )
        return origin.maximum < start and fallback_before
    fallback_after = origin.nulls == 0 or (received is not None and received.minimum >= end)
    return origin.minimum >= end and fallback_after
