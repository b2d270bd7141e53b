#!/usr/bin/env python3
"""Cut the committed test fixture out of ../shared/fixtures/binance-spot-btcusdt.

Keeps the rows a collector received in [23:58:30, 00:01:30) UTC around 2024-08-09 00:00, filed by
receive date like the source, and golden-sample lines captured in the same window. So that a cold
start still has a full book, the deltas begin with one snapshot burst: the full-depth book after
the last message received before the window, replayed from the capture's REST snapshot, written as
rows of that message's sequence_number and times (as a collector that starts with a REST snapshot).

    poetry run python scripts/make_fixture_slice.py
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl

from rlx_assets.engine.book import replay
from rlx_assets.engine.book_types import BookSide, ReplayInput, message_starts

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "fixtures" / "binance-spot-btcusdt"
TARGET = ROOT / "rlx_assets_tests" / "fixtures" / "binance-spot-btcusdt-slice"
PARTITION = "exchange=BINANCE/symbol=BTC-USDT"
DAYS = ("2024-08-08", "2024-08-09")
START = dt.datetime(2024, 8, 8, 23, 58, 30, tzinfo=dt.timezone.utc)
END = dt.datetime(2024, 8, 9, 0, 1, 30, tzinfo=dt.timezone.utc)
PRICE_DIGITS, SIZE_DIGITS = 2, 8


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 10**9


def _read(table: str) -> dict[str, pl.DataFrame]:
    return {day: pl.read_parquet(SOURCE / table / PARTITION / f"dt={day}") for day in DAYS}


def _opening_burst(deltas: pl.DataFrame) -> pl.DataFrame:
    before = deltas.filter(pl.col("received_time") < _ns(START))
    sequence = before["sequence_number"].to_numpy()
    starts = message_starts(sequence)
    messages = starts.size - 1
    empty = np.zeros((0, 20), dtype=np.int64)
    data = ReplayInput(
        message_starts=starts,
        sequence_numbers=sequence[starts[:-1]],
        side_is_bid=before["side_is_bid"].to_numpy(),
        prices=np.rint(before["price"].to_numpy() * 10**PRICE_DIGITS).astype(np.int64),
        sizes=np.rint(before["size"].to_numpy() * 10**SIZE_DIGITS).astype(np.int64),
        snapshot_of_message=np.full(messages, -1, dtype=np.int64),
        snapshot_bid_prices=empty,
        snapshot_bid_sizes=empty,
        snapshot_ask_prices=empty,
        snapshot_ask_sizes=empty,
    )
    out = replay(data, BookSide.empty(), BookSide.empty())
    last = before.tail(1)
    rows = []
    for is_bid, side in ((True, out.bids), (False, out.asks)):
        for price, size in zip(side.prices[::-1], side.sizes[::-1], strict=True):
            rows.append(
                (is_bid, round(price / 10**PRICE_DIGITS, PRICE_DIGITS), size / 10**SIZE_DIGITS)
            )
    burst = pl.DataFrame(
        {
            "origin_time": [last["origin_time"][0]] * len(rows),
            "received_time": [last["received_time"][0]] * len(rows),
            "sequence_number": [last["sequence_number"][0]] * len(rows),
            "side_is_bid": [row[0] for row in rows],
            "price": [row[1] for row in rows],
            "size": [round(row[2], SIZE_DIGITS) for row in rows],
        },
        schema=deltas.schema,
    )
    return burst


def _window(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("received_time").is_between(_ns(START), _ns(END), closed="left"))


def _write(frame: pl.DataFrame, table: str, day: str) -> None:
    folder = TARGET / table / PARTITION / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "1.parquet", compression="zstd", compression_level=19)


def main() -> None:
    deltas = _read("book_delta_v2")
    burst = _opening_burst(deltas[DAYS[0]])
    for table, frames in (
        ("trades", _read("trades")),
        ("book", _read("book")),
        ("book_delta_v2", deltas),
    ):
        for day in DAYS:
            sliced = _window(frames[day])
            if table == "book_delta_v2" and day == DAYS[0]:
                sliced = pl.concat([burst, sliced])
            _write(sliced, table, day)
    golden = TARGET / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    for day in DAYS:
        source = SOURCE / "golden" / f"BTC-USDT-{day}.jsonl.gz"
        with gzip.open(source, "rt") as lines, gzip.open(golden / source.name, "wt") as out:
            for line in lines:
                if _ns(START) <= json.loads(line)["capture_ns"] < _ns(END):
                    out.write(line)


if __name__ == "__main__":
    main()
