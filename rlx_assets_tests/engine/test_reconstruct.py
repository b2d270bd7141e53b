"""A day replayed in chunks publishes exactly what one feed of the whole day publishes."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets.engine.book_tables import day_digits
from rlx_assets.engine.day_replay import DayReplay, PublishedRows, vendor_seed_exists
from rlx_assets.engine.raw import clean_day
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.lake.files import FileLake
from rlx_assets.schema import BOOK, BOOK_DELTAS
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE

ONE_DAY = dt.timedelta(days=1)


def _raw_day(table: str, day: dt.date) -> pa.Table:
    lake = FileLake(str(SLICE))
    pieces = []
    for filed in (day - ONE_DAY, day, day + ONE_DAY):
        pieces += [(filed, t) for t in lake.read_day(table, "BINANCE", "BTC-USDT", filed).tables]
    return clean_day(table, day, pieces).table


def _chunks(deltas: pa.Table, rows: int) -> list[tuple[int, int]]:
    """Row ranges of about `rows` rows that never split a message."""
    sequence = deltas["sequence_number"].to_numpy()
    bounds, start = [], 0
    while start < sequence.size:
        end = min(start + rows, sequence.size)
        while 0 < end < sequence.size and sequence[end] == sequence[end - 1]:
            end += 1
        bounds.append((start, end))
        start = end
    return bounds


def _chunked(deltas, snapshots, state, day, rows: int):
    price_digits, size_digits = day_digits(deltas, snapshots, state)
    seed_from_vendor = vendor_seed_exists(
        deltas["sequence_number"].to_numpy(), snapshots["sequence_number"].to_numpy()
    )
    replay = DayReplay(state, price_digits, size_digits, day, seed_from_vendor)
    books = []
    for start, end in _chunks(deltas, rows):
        chunk = deltas.slice(start, end - start)
        low, high = chunk["sequence_number"][0], chunk["sequence_number"][-1]
        mine = pc.and_(
            pc.greater_equal(snapshots["sequence_number"], low),
            pc.less_equal(snapshots["sequence_number"], high),
        )
        books.append(replay.feed(chunk, snapshots.filter(mine)))
    result = replay.finish()
    return pa.concat_tables(books), result


@pytest.mark.parametrize("rows", [997, 20_000])
@pytest.mark.parametrize("continued", [False, True])
def test_chunks_publish_what_the_whole_day_publishes(rows: int, continued: bool) -> None:
    day = FIXTURE_DAYS[1]
    deltas, snapshots = _raw_day(BOOK_DELTAS, day), _raw_day(BOOK, day)
    state = None
    if continued:
        first = FIXTURE_DAYS[0]
        state = reconstruct_day(_raw_day(BOOK_DELTAS, first), _raw_day(BOOK, first), None).state
    whole = reconstruct_day(deltas, snapshots, state, day=day)
    book, chunked = _chunked(deltas, snapshots, state, day, rows)
    assert chunked.stats["chunks"] > 1
    assert book.equals(whole.book)
    assert chunked.state.equals(whole.state)
    assert chunked.seed == whole.seed
    assert chunked.messages_before_seed == whole.messages_before_seed
    for name, value in whole.stats.items():
        if name != "chunks":
            assert chunked.stats[name] == value, name
    # Cold, this day has no opening burst: it seeds from its first vendor snapshot.
    assert whole.seed == ("previous_book_state" if continued else "vendor_snapshot")
    assert np.isin(whole.book["sequence_number"].to_numpy(), deltas["sequence_number"]).all()


def test_a_checkpoint_restored_into_a_new_replay_continues_exactly() -> None:
    day = FIXTURE_DAYS[1]
    deltas, snapshots = _raw_day(BOOK_DELTAS, day), _raw_day(BOOK, day)
    whole = reconstruct_day(deltas, snapshots, None, day=day)
    price_digits, size_digits = day_digits(deltas, snapshots, None)
    chunks = _chunks(deltas, 5_000)

    def fresh() -> DayReplay:
        return DayReplay(None, price_digits, size_digits, day, seed_from_vendor=True)

    def replay_chunk(replay: DayReplay, start: int, end: int) -> PublishedRows:
        chunk = deltas.slice(start, end - start)
        low, high = chunk["sequence_number"][0], chunk["sequence_number"][-1]
        mine = pc.and_(
            pc.greater_equal(snapshots["sequence_number"], low),
            pc.less_equal(snapshots["sequence_number"], high),
        )
        return replay.replay_chunk(replay.prepare(chunk, snapshots.filter(mine)))

    def feed(replay: DayReplay, start: int, end: int) -> pa.Table:
        return replay_chunk(replay, start, end).table()

    first = fresh()
    books, figures = [], []
    for bounds in chunks[:4]:
        rows = replay_chunk(first, *bounds)
        books.append(rows.table())
        figures.append({name: array.copy() for name, array in rows.figures().items()})
    saved = {name: array.copy() for name, array in first.checkpoint().items()}
    second = fresh()  # as after a crash: a new process restores the checkpoint
    second.restore(saved, figures)
    books += [feed(second, *bounds) for bounds in chunks[4:]]
    result = second.finish()
    assert pa.concat_tables(books).equals(whole.book)
    assert result.state.equals(whole.state)
    assert {k: v for k, v in result.stats.items() if k != "chunks"} == {
        k: v for k, v in whole.stats.items() if k != "chunks"
    }


def test_published_rows_survive_a_round_trip_through_plain_arrays() -> None:
    day = FIXTURE_DAYS[0]
    deltas, snapshots = _raw_day(BOOK_DELTAS, day), _raw_day(BOOK, day)
    # A vendor row without origin_time must stay null, not become 0.
    origin = deltas["origin_time"].to_numpy().copy()
    deltas = deltas.set_column(
        deltas.schema.get_field_index("origin_time"),
        "origin_time",
        pa.array(origin, mask=np.arange(origin.size) == 0),
    )
    replay = DayReplay(None, *day_digits(deltas, snapshots, None), day, seed_from_vendor=True)
    rows = replay.replay_chunk(replay.prepare(deltas, snapshots))
    arrays = {name: array.copy() for name, array in rows.to_arrays().items()}
    again = PublishedRows.from_arrays(arrays).table()
    assert again.equals(rows.table())
    assert again["origin_time"].null_count == 1
