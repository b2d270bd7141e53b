"""Copies of the committed real-data slice with the book checks' faults written into the day's
files, for the engine tests and the Dagster tests alike (the same doctored day through both)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa

from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.engine.raw import clean_day
from rlx_assets.lake.files import FileLake
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE

DAY = FIXTURE_DAYS[0]
PARTITION = "exchange=BINANCE/symbol=BTC-USDT"
DELTAS, SNAPSHOTS = "book_delta_v2", "book"
Change = Callable[[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]


def day_file(lake: Path, table: str, day: dt.date = DAY) -> Path:
    return lake / table / PARTITION / f"dt={day}" / "1.parquet"


def doctored_lake(folder: Path, change: Change) -> Path:
    """A copy of the slice whose deltas and snapshots filed under DAY went through `change`."""
    lake = folder / "lake"
    shutil.copytree(SLICE, lake)
    deltas, snapshots = (pl.read_parquet(day_file(lake, t)) for t in (DELTAS, SNAPSHOTS))
    deltas, snapshots = change(deltas, snapshots)
    deltas.write_parquet(day_file(lake, DELTAS))
    snapshots.write_parquet(day_file(lake, SNAPSHOTS))
    return lake


def raw_day(lake: Path, table: str, day: dt.date = DAY) -> pa.Table:
    """What the raw asset publishes for the day (its own and its neighbours' `dt` folders)."""
    files = FileLake(str(lake))
    pieces = []
    for filed in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
        pieces += [(filed, t) for t in files.read_day(table, "BINANCE", "BTC-USDT", filed).tables]
    return clean_day(table, day, pieces).table


def _in_day(frame: pl.DataFrame | None = None) -> pl.Expr:
    """Rows stamped before DAY's midnight (the files hold no earlier day)."""
    return pl.col("origin_time") < day_bounds_ns(DAY)[1]


def crossed_snapshots(rows: int) -> Change:
    """No deltas (the day is `snapshot_anchored`) and `rows` of the day's vendor snapshots
    crossed: best bid one tick above the best ask."""

    def change(deltas: pl.DataFrame, snapshots: pl.DataFrame):
        chosen = (pl.int_range(pl.len()) % 50 == 7) & (pl.int_range(pl.len()) < 50 * rows)
        crossed = snapshots.with_columns(
            bid_0_price=pl.when(chosen)
            .then(pl.col("ask_0_price") + 0.01)
            .otherwise(pl.col("bid_0_price"))
        )
        assert crossed.filter(chosen & _in_day(crossed)).height == rows
        return deltas.head(0), crossed

    return change


def renumbered(deltas: pl.DataFrame, snapshots: pl.DataFrame):
    """A feed whose message ids step by 1 (so a lost message is detectable); the snapshots
    keep the ids of their messages."""
    ids = (
        deltas.select("sequence_number")
        .unique()
        .sort("sequence_number")
        .with_columns(new=pl.int_range(pl.len(), dtype=pl.Int64) + 1_000)
    )
    deltas = deltas.join(ids, on="sequence_number", maintain_order="left")
    snapshots = snapshots.join(ids, on="sequence_number", how="inner", maintain_order="left")
    return (frame.with_columns(sequence_number="new").drop("new") for frame in (deltas, snapshots))


def lose_a_message(snapshots_after_the_gap: bool) -> Change:
    """Renumbered, then one message of the day's second half is lost. A later vendor snapshot
    checks the book after it, or (the vendor's snapshots stop at the gap) none does."""

    def change(deltas: pl.DataFrame, snapshots: pl.DataFrame):
        deltas, snapshots = renumbered(deltas, snapshots)
        day_ids = deltas.filter(_in_day(deltas))["sequence_number"].unique().sort()
        lost = int(day_ids[int(day_ids.len() * 0.75)])
        deltas = deltas.filter(pl.col("sequence_number") != lost)
        if not snapshots_after_the_gap:
            snapshots = snapshots.filter(pl.col("sequence_number") < lost)
        assert snapshots.filter(_in_day(snapshots)).height > 100  # the day keeps its snapshots
        return deltas, snapshots

    return change


SHIFT = 60.0  # dollars: 10 bps of BTC-USDT at 61,668


def shifted_last_snapshot(deltas: pl.DataFrame, snapshots: pl.DataFrame):
    """The day's last vendor snapshot, every level `SHIFT` higher than the true book (the
    rebuilt book is right, so only that comparison deviates)."""
    last = snapshots.filter(_in_day(snapshots))["sequence_number"].max()
    prices = [name for name in snapshots.columns if name.endswith("_price")]
    shifted = snapshots.with_columns(
        pl.when(pl.col("sequence_number") == last).then(pl.col(name) + SHIFT).otherwise(name)
        for name in prices
    )
    return deltas, shifted


def last_snapshot_mid(snapshots: pa.Table) -> float:
    """Mid of the day's last vendor snapshot in a raw snapshot table (exact decimals)."""
    frame = pl.from_arrow(snapshots).filter(_in_day())
    last = frame.sort("sequence_number").tail(1)
    return float((last["bid_0_price"] + last["ask_0_price"]).item()) / 2
