"""Golden samples: a raw capture of Binance's combined WebSocket stream, parsed into tables.

A golden sample `<SYMBOL>-<YYYY-MM-DD>.jsonl.gz` holds one JSON object per line,
`{"capture_ns": <local receive ns>, "stream": <name>, "data": <raw message>}`, with streams
`<sym>@depth@100ms` (diff messages), `<sym>@trade`, `<sym>@bookTicker` and `rest@depthSnapshot`
(`data` exactly as Binance sent it), and `capture@gap`: a window the capture knows is incomplete
(written by `rlx_assets.capture`, see `GAPS_SCHEMA`). It is the exchange's own account of the
window it covers, so `fidelity.py` judges the reconstructed data against it, outside the gaps.

Pure: the caller opens the file (local, s3://, ...) and hands over its bytes or a binary file
object. Prices and sizes stay exact (Python `Decimal` from the message strings, then
decimal128(38, 18)). A bad line is counted and skipped, never fatal: a capture is evidence, and
one torn line must not hide the rest. Only input that is not gzip-compressed JSON lines at all
raises `GoldenFormatError`.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import pyarrow as pa

from rlx_assets.engine.decimals import DECIMAL_TYPE

MAX_REPORTED_LINES = 10  # line numbers of the first malformed lines kept for the report
_DECIMAL_PLACES = 18  # decimal128(38, 18)
_DECIMAL_LIMIT = Decimal(10) ** (38 - _DECIMAL_PLACES)

BOOK_TICKER_SCHEMA = pa.schema(
    [
        ("capture_ns", pa.int64()),
        ("update_id", pa.int64()),
        ("bid_price", DECIMAL_TYPE),
        ("bid_size", DECIMAL_TYPE),
        ("ask_price", DECIMAL_TYPE),
        ("ask_size", DECIMAL_TYPE),
    ]
)
TRADES_SCHEMA = pa.schema(
    [
        ("capture_ns", pa.int64()),
        ("event_time_ns", pa.int64()),
        ("trade_time_ns", pa.int64()),
        ("trade_id", pa.int64()),
        ("price", DECIMAL_TYPE),
        ("quantity", DECIMAL_TYPE),
        ("side", pa.string()),  # the aggressor: 'buy' or 'sell'
    ]
)
DEPTH_UPDATES_SCHEMA = pa.schema(
    [
        ("capture_ns", pa.int64()),
        ("event_time_ns", pa.int64()),
        ("first_update_id", pa.int64()),
        ("last_update_id", pa.int64()),
        ("bid_rows", pa.int32()),
        ("ask_rows", pa.int32()),
    ]
)
SNAPSHOTS_SCHEMA = pa.schema(
    [
        ("capture_ns", pa.int64()),
        ("last_update_id", pa.int64()),
        ("bid_levels", pa.int32()),
        ("ask_levels", pa.int32()),
    ]
)
# A gap: data with exchange times in [from_time_ns, to_time_ns] (trades, depth events) or update
# ids in [from_update_id, to_update_id] (depth, bookTicker) may be missing from the capture. A
# window is null when the gap does not touch that dimension (e.g. a trade-id jump has no update
# ids); at least one is set. Both ends are inclusive.
GAPS_SCHEMA = pa.schema(
    [
        ("capture_ns", pa.int64()),
        ("reason", pa.string()),
        ("from_time_ns", pa.int64()),
        ("to_time_ns", pa.int64()),
        ("from_update_id", pa.int64()),
        ("to_update_id", pa.int64()),
    ]
)

BOOK_TICKER, TRADE, DEPTH, SNAPSHOT, GAP = "bookTicker", "trade", "depth", "depthSnapshot", "gap"
SNAPSHOT_STREAM, GAP_STREAM = "rest@depthSnapshot", "capture@gap"
_MS = 1_000_000  # Binance stamps events in milliseconds
_CHUNK = 1 << 18  # decompressed bytes per read
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class GoldenFormatError(ValueError):
    """The input is not a gzip-compressed JSON-lines capture at all."""


class _BadLine(ValueError):
    """One line that cannot be read as a capture record (counted, not raised to the caller)."""


@dataclass(frozen=True)
class GoldenSample:
    """A parsed golden sample; tables keep the file's (capture) order."""

    book_ticker: pa.Table
    trades: pa.Table
    depth_updates: pa.Table
    snapshots: pa.Table
    gaps: pa.Table = field(default_factory=GAPS_SCHEMA.empty_table)  # windows known incomplete
    lines: int = 0  # non-empty lines read
    malformed_lines: int = 0
    malformed_line_numbers: tuple[int, ...] = ()  # 1-based, the first MAX_REPORTED_LINES
    unknown_streams: dict[str, int] = field(default_factory=dict)  # stream name -> lines
    symbols: tuple[str, ...] = ()  # stream prefixes seen, e.g. ('btcusdt',)
    truncated: bool = False  # the gzip stream ended early or carried trailing garbage

    @property
    def snapshot_count(self) -> int:
        return self.snapshots.num_rows

    def stream_counts(self) -> dict[str, int]:
        return {
            BOOK_TICKER: self.book_ticker.num_rows,
            TRADE: self.trades.num_rows,
            DEPTH: self.depth_updates.num_rows,
            SNAPSHOT: self.snapshots.num_rows,
            GAP: self.gaps.num_rows,
            "unknown": sum(self.unknown_streams.values()),
            "malformed": self.malformed_lines,
        }


def empty_sample() -> GoldenSample:
    return GoldenSample(
        book_ticker=BOOK_TICKER_SCHEMA.empty_table(),
        trades=TRADES_SCHEMA.empty_table(),
        depth_updates=DEPTH_UPDATES_SCHEMA.empty_table(),
        snapshots=SNAPSHOTS_SCHEMA.empty_table(),
    )


def concat_samples(samples: list[GoldenSample]) -> GoldenSample:
    """Several captures as one (e.g. a day's file and the next, whose first lines carry the day's
    last exchange timestamps). Tables are concatenated in the order given; counts add up."""
    if not samples:
        return empty_sample()
    unknown: Counter[str] = Counter()
    numbers: list[int] = []
    for sample in samples:
        unknown.update(sample.unknown_streams)
        numbers += sample.malformed_line_numbers
    return GoldenSample(
        book_ticker=pa.concat_tables([s.book_ticker for s in samples]),
        trades=pa.concat_tables([s.trades for s in samples]),
        depth_updates=pa.concat_tables([s.depth_updates for s in samples]),
        snapshots=pa.concat_tables([s.snapshots for s in samples]),
        gaps=pa.concat_tables([s.gaps for s in samples]),
        lines=sum(s.lines for s in samples),
        malformed_lines=sum(s.malformed_lines for s in samples),
        malformed_line_numbers=tuple(numbers[:MAX_REPORTED_LINES]),
        unknown_streams=dict(unknown),
        symbols=tuple(sorted({symbol for s in samples for symbol in s.symbols})),
        truncated=any(s.truncated for s in samples),
    )


def _int(value: Any) -> int:
    # bool is an int in Python; a flag where an id belongs is a bad line.
    if type(value) is not int:
        raise _BadLine(f"expected an integer, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _BadLine(f"integer out of int64: {value}")
    return value


def _ms_to_ns(value: Any) -> int:
    return _int(_int(value) * _MS)


def _decimal(value: Any) -> Decimal:
    if type(value) is not str:
        raise _BadLine(f"expected a decimal string, got {type(value).__name__}")
    try:
        number = Decimal(value)
    except InvalidOperation as error:
        raise _BadLine(f"not a decimal: {value!r}") from error
    if not number.is_finite() or abs(number) >= _DECIMAL_LIMIT:
        raise _BadLine(f"decimal out of decimal128(38, 18): {value!r}")
    # Decimal.as_tuple is slow; a plain "123.45" string tells its places by the dot.
    dot = value.find(".")
    plain = "e" not in value and "E" not in value
    if (not plain or (dot >= 0 and len(value) - dot - 1 > _DECIMAL_PLACES)) and (
        number.as_tuple().exponent < -_DECIMAL_PLACES
    ):
        raise _BadLine(f"more than {_DECIMAL_PLACES} decimal places: {value!r}")
    return number


def _levels(value: Any) -> int:
    """Number of [price, size] pairs. Only their shape is checked: depth rows are counted here,
    not replayed, and parsing every level as a decimal would triple the parse time."""
    if type(value) is not list:
        raise _BadLine("price levels are not a list")
    for level in value:
        if type(level) is not list or len(level) != 2 or type(level[0]) is not str:
            raise _BadLine("a price level is not [price, size]")
    return len(value)


def _kind(stream: str) -> str | None:
    """The stream type by Binance's naming: `<sym>@depth[@100ms]`, `<sym>@trade`, ..."""
    if stream == SNAPSHOT_STREAM:
        return SNAPSHOT
    if stream == GAP_STREAM:
        return GAP
    parts = stream.split("@")
    if len(parts) < 2:
        return None
    if parts[1] == "depth" and (len(parts) == 2 or parts[2] in ("100ms", "1000ms")):
        return DEPTH
    if len(parts) == 2 and parts[1] in (TRADE, BOOK_TICKER):
        return parts[1]
    return None


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _window(data: dict, low: str, high: str) -> tuple[int | None, int | None]:
    start, end = _optional_int(data[low]), _optional_int(data[high])
    if (start is None) != (end is None):
        raise _BadLine(f"{low} and {high}: one is null, the other not")
    if start is not None and start > end:
        raise _BadLine(f"{low} > {high}")
    return start, end


def record_row(kind: str, capture_ns: int, data: Any) -> tuple:
    """One record's table row (the schema of `kind`), or `_BadLine` (a ValueError) saying why
    it cannot be one. The capture calls it too, so that it never writes what this reader skips."""
    if not isinstance(data, dict):
        raise _BadLine("data is not an object")
    try:
        if kind == BOOK_TICKER:
            return (
                capture_ns,
                _int(data["u"]),
                _decimal(data["b"]),
                _decimal(data["B"]),
                _decimal(data["a"]),
                _decimal(data["A"]),
            )
        if kind == TRADE:
            buyer_is_maker = data["m"]
            if not isinstance(buyer_is_maker, bool):
                raise _BadLine("m is not a boolean")
            return (
                capture_ns,
                _ms_to_ns(data["E"]),
                _ms_to_ns(data["T"]),
                _int(data["t"]),
                _decimal(data["p"]),
                _decimal(data["q"]),
                # The buyer resting on the book means the seller crossed the spread.
                "sell" if buyer_is_maker else "buy",
            )
        if kind == DEPTH:
            return (
                capture_ns,
                _ms_to_ns(data["E"]),
                _int(data["U"]),
                _int(data["u"]),
                _levels(data["b"]),
                _levels(data["a"]),
            )
        if kind == SNAPSHOT:
            return (
                capture_ns,
                _int(data["lastUpdateId"]),
                _levels(data["bids"]),
                _levels(data["asks"]),
            )
        if kind == GAP:
            reason = data["reason"]
            if type(reason) is not str:
                raise _BadLine("reason is not a string")
            times = _window(data, "from_time_ns", "to_time_ns")
            ids = _window(data, "from_update_id", "to_update_id")
            if times[0] is None and ids[0] is None:
                raise _BadLine("a gap with neither a time nor an update-id window")
            return (capture_ns, reason, *times, *ids)
    except KeyError as error:
        raise _BadLine(f"missing field {error}") from error
    raise _BadLine(f"unknown record kind {kind!r}")


class _Columns:
    """Per-stream column lists, appended only once a whole line has been validated."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {
            kind: [] for kind in (BOOK_TICKER, TRADE, DEPTH, SNAPSHOT, GAP)
        }

    def add(self, kind: str, capture_ns: int, data: Any) -> None:
        self.rows[kind].append(record_row(kind, capture_ns, data))

    @staticmethod
    def table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
        return pa.Table.from_arrays(
            [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)],
            schema=schema,
        )


def _lines(source: bytes | IO[bytes], name: str) -> Iterator[bytes | None]:
    """Decompressed lines. If the gzip stream breaks off after some data, the torn last line is
    yielded as it is (it will count as malformed), then one None, and the iteration stops."""
    fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    started = False
    pending = b""
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as stream:
        while True:
            try:
                # read1 hands over whatever decompressed before a break, so a truncated file
                # keeps every whole line it holds.
                chunk = stream.read1(_CHUNK)
            except (EOFError, OSError, zlib.error) as error:  # BadGzipFile is an OSError
                if not started:
                    raise GoldenFormatError(
                        f"{name}: not a readable gzip file ({error})"
                    ) from error
                if pending:
                    yield pending
                yield None
                return
            if not chunk:
                break
            started = True
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            yield from parts
    if pending:
        yield pending


def parse_golden(source: bytes | IO[bytes], name: str = "golden sample") -> GoldenSample:
    """Parse a golden sample from its gzip bytes or an open binary file; `name` labels errors."""
    columns = _Columns()
    unknown: Counter[str] = Counter()
    symbols: set[str] = set()
    malformed_numbers: list[int] = []
    malformed = lines = 0
    truncated = False
    for line_number, raw in enumerate(_lines(source, name), start=1):
        if raw is None:
            # The stream broke off (a collector killed mid-write): the lines before it are kept.
            truncated = True
            break
        if not raw.strip():
            continue
        lines += 1
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise _BadLine("line is not a JSON object")
            stream = record["stream"]
            if not isinstance(stream, str):
                raise _BadLine("stream is not a string")
            kind = _kind(stream)
            if kind is None:
                unknown[stream] += 1
                continue
            columns.add(kind, _int(record["capture_ns"]), record["data"])
            if kind not in (SNAPSHOT, GAP):
                symbols.add(stream.split("@", 1)[0])
        except (ValueError, KeyError, TypeError, RecursionError):
            # JSONDecodeError, UnicodeDecodeError and _BadLine are ValueErrors: count, go on.
            malformed += 1
            if len(malformed_numbers) < MAX_REPORTED_LINES:
                malformed_numbers.append(line_number)
    if lines and malformed == lines:
        raise GoldenFormatError(f"{name}: no line is a JSON capture record (not JSON lines)")
    return GoldenSample(
        book_ticker=columns.table(columns.rows[BOOK_TICKER], BOOK_TICKER_SCHEMA),
        trades=columns.table(columns.rows[TRADE], TRADES_SCHEMA),
        depth_updates=columns.table(columns.rows[DEPTH], DEPTH_UPDATES_SCHEMA),
        snapshots=columns.table(columns.rows[SNAPSHOT], SNAPSHOTS_SCHEMA),
        gaps=columns.table(columns.rows[GAP], GAPS_SCHEMA),
        lines=lines,
        malformed_lines=malformed,
        malformed_line_numbers=tuple(malformed_numbers),
        unknown_streams=dict(unknown),
        symbols=tuple(sorted(symbols)),
        truncated=truncated,
    )
