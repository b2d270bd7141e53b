import gzip
import io
import json
from collections import Counter
from decimal import Decimal

import pytest

from rlx_assets.engine.golden import (
    BOOK_TICKER_SCHEMA,
    DEPTH_UPDATES_SCHEMA,
    TRADES_SCHEMA,
    GoldenFormatError,
    concat_samples,
    parse_golden,
)
from rlx_assets_tests.conftest import SLICE

GOLDEN = SLICE / "golden"

TICKER = {"u": 50, "s": "BTCUSDT", "b": "100.01", "B": "1.5", "a": "100.02", "A": "0.00000001"}
TRADE = {"e": "trade", "E": 1001, "s": "BTCUSDT", "t": 7, "p": "100.01", "q": "0.25", "T": 1000}
DEPTH = {"e": "depthUpdate", "E": 1002, "U": 41, "u": 50, "b": [["100.01", "1.5"]], "a": []}
SNAPSHOT = {"lastUpdateId": 40, "bids": [["100.00", "2"]], "asks": [["100.02", "1"], ["101", "3"]]}


def _line(stream: str, data: object, capture_ns: int = 5) -> str:
    return json.dumps({"capture_ns": capture_ns, "stream": stream, "data": data})


def _gzip(lines: list[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode())


@pytest.mark.parametrize(
    ("day", "tickers", "trades", "depth"),
    [("2024-08-08", 8249, 3364, 897), ("2024-08-09", 13444, 3479, 900)],
)
def test_the_committed_slice_parses_completely(day, tickers, trades, depth) -> None:
    path = GOLDEN / f"BTC-USDT-{day}.jsonl.gz"
    with path.open("rb") as handle:
        sample = parse_golden(handle, str(path))
    assert sample.stream_counts() == {
        "bookTicker": tickers,
        "trade": trades,
        "depth": depth,
        "depthSnapshot": 0,
        "gap": 0,
        "unknown": 0,
        "malformed": 0,
    }
    assert sample.lines == tickers + trades + depth
    assert sample.symbols == ("btcusdt",) and not sample.truncated
    # An independent count with the standard library agrees line for line.
    records = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    streams = Counter(record["stream"] for record in records)
    assert streams["btcusdt@bookTicker"] == tickers
    assert streams["btcusdt@trade"] == trades
    assert streams["btcusdt@depth@100ms"] == depth
    # Same values, exactly, in file order.
    first_trade = next(r for r in records if r["stream"] == "btcusdt@trade")
    row = sample.trades.slice(0, 1).to_pylist()[0]
    assert row["trade_id"] == first_trade["data"]["t"]
    assert row["price"] == Decimal(first_trade["data"]["p"])
    assert row["quantity"] == Decimal(first_trade["data"]["q"])
    assert row["trade_time_ns"] == first_trade["data"]["T"] * 1_000_000
    assert row["capture_ns"] == first_trade["capture_ns"]
    assert sample.book_ticker.schema == BOOK_TICKER_SCHEMA
    assert sample.trades.schema == TRADES_SCHEMA
    assert sample.depth_updates.schema == DEPTH_UPDATES_SCHEMA


def test_every_stream_is_read_exactly() -> None:
    sample = parse_golden(
        _gzip(
            [
                _line("rest@depthSnapshot", SNAPSHOT, 1),
                _line("btcusdt@depth@100ms", DEPTH, 2),
                _line("btcusdt@bookTicker", TICKER, 3),
                _line("btcusdt@trade", {**TRADE, "m": True}, 4),
            ]
        )
    )
    assert sample.snapshots.to_pylist() == [
        {"capture_ns": 1, "last_update_id": 40, "bid_levels": 1, "ask_levels": 2}
    ]
    assert sample.snapshot_count == 1
    assert sample.depth_updates.to_pylist() == [
        {
            "capture_ns": 2,
            "event_time_ns": 1_002_000_000,
            "first_update_id": 41,
            "last_update_id": 50,
            "bid_rows": 1,
            "ask_rows": 0,
        }
    ]
    assert sample.book_ticker.to_pylist() == [
        {
            "capture_ns": 3,
            "update_id": 50,
            "bid_price": Decimal("100.01"),
            "bid_size": Decimal("1.5"),
            "ask_price": Decimal("100.02"),
            "ask_size": Decimal("0.00000001"),
        }
    ]
    assert sample.trades.to_pylist() == [
        {
            "capture_ns": 4,
            "event_time_ns": 1_001_000_000,
            "trade_time_ns": 1_000_000_000,
            "trade_id": 7,
            "price": Decimal("100.01"),
            "quantity": Decimal("0.25"),
            "side": "sell",
        }
    ]


@pytest.mark.parametrize(("buyer_is_maker", "aggressor"), [(True, "sell"), (False, "buy")])
def test_the_aggressor_is_the_side_that_was_not_the_maker(buyer_is_maker, aggressor) -> None:
    sample = parse_golden(_gzip([_line("btcusdt@trade", {**TRADE, "m": buyer_is_maker})]))
    assert sample.trades["side"].to_pylist() == [aggressor]


def test_malformed_lines_are_counted_with_their_numbers_and_never_fatal() -> None:
    good_trade = _line("btcusdt@trade", {**TRADE, "m": False})
    lines = [
        _line("btcusdt@bookTicker", TICKER),  # 1 good
        '{"capture_ns": 5, "stream": "btcusdt@trade", "data": {"t": 1',  # 2 torn JSON
        "",  # 3 blank: skipped, not counted
        _line("btcusdt@bookTicker", {k: v for k, v in TICKER.items() if k != "A"}),  # 4 no field
        _line("btcusdt@trade", {**TRADE, "m": False, "p": "abc"}),  # 5 not a decimal
        _line("btcusdt@trade", {**TRADE, "m": False, "q": "0.0000000000000000001"}),  # 6: 19 dp
        _line("btcusdt@trade", {**TRADE, "m": "yes"}),  # 7 m not a boolean
        _line("btcusdt@trade", {**TRADE, "t": True, "m": False}),  # 8 a flag as trade id
        "[1, 2, 3]",  # 9 not an object
        _line("btcusdt@aggTrade", {"a": 1}),  # 10 unknown stream: counted apart
        _line("btcusdt@depth@100ms", {**DEPTH, "b": [["100.01"]]}),  # 11 level without a size
        json.dumps({"stream": "btcusdt@trade", "data": TRADE}),  # 12 no capture_ns
        _line("btcusdt@trade", {**TRADE, "m": False}, capture_ns=2**63),  # 13 beyond int64
        _line("btcusdt@trade", {**TRADE, "m": False, "T": 2**60}),  # 14 ms -> ns overflows
        "[" * 100_000,  # 15 nested too deep for the JSON decoder
        good_trade,  # 16 good
    ]
    sample = parse_golden(_gzip(lines))
    assert sample.malformed_lines == 12
    assert sample.malformed_line_numbers == (2, 4, 5, 6, 7, 8, 9, 11, 12, 13)  # the first 10
    assert sample.unknown_streams == {"btcusdt@aggTrade": 1}
    assert sample.lines == 15
    assert sample.book_ticker.num_rows == 1 and sample.trades.num_rows == 1
    assert sample.depth_updates.num_rows == 0


def test_only_the_first_malformed_line_numbers_are_kept() -> None:
    lines = [_line("btcusdt@trade", TRADE)] * 25 + [_line("btcusdt@bookTicker", TICKER)]
    sample = parse_golden(_gzip(lines))
    assert sample.malformed_lines == 25
    assert sample.malformed_line_numbers == tuple(range(1, 11))


def test_a_file_object_and_its_bytes_give_the_same_sample() -> None:
    data = _gzip([_line("btcusdt@bookTicker", TICKER), _line("btcusdt@depth", DEPTH)])
    from_bytes, from_file = parse_golden(data), parse_golden(io.BytesIO(data))
    assert from_bytes.book_ticker.equals(from_file.book_ticker)
    assert from_bytes.depth_updates.num_rows == from_file.depth_updates.num_rows == 1


def test_a_truncated_capture_keeps_the_lines_before_the_break() -> None:
    data = _gzip([_line("btcusdt@bookTicker", {**TICKER, "u": u}) for u in range(2000)])
    sample = parse_golden(data[: len(data) // 2])
    assert sample.truncated
    assert 0 < sample.book_ticker.num_rows < 2000
    assert sample.book_ticker["update_id"].to_pylist() == list(range(sample.book_ticker.num_rows))


@pytest.mark.parametrize(
    "data",
    [
        b"not gzip at all",
        json.dumps({"capture_ns": 1, "stream": "x", "data": {}}).encode(),  # plain JSON
        gzip.compress(b"col1,col2\n1,2\n", mtime=0),  # gzip, but CSV
        gzip.compress(bytes(range(256)) * 4, mtime=0),  # gzip, but binary
    ],
)
def test_input_that_is_not_gzip_jsonl_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(GoldenFormatError, match=r"golden/X\.jsonl\.gz"):
        parse_golden(data, "golden/X.jsonl.gz")


def test_an_empty_capture_is_an_empty_sample() -> None:
    sample = parse_golden(gzip.compress(b""))
    assert sample.lines == 0 and sample.book_ticker.num_rows == 0


def test_samples_concatenate_in_order() -> None:
    first = parse_golden(_gzip([_line("btcusdt@bookTicker", {**TICKER, "u": 1}), "oops"]))
    second = parse_golden(_gzip([_line("btcusdt@bookTicker", {**TICKER, "u": 2})]))
    both = concat_samples([first, second])
    assert both.book_ticker["update_id"].to_pylist() == [1, 2]
    assert both.malformed_lines == 1 and both.lines == 3
    assert concat_samples([]).lines == 0


def test_gap_records_are_read_and_bad_ones_counted() -> None:
    disconnect = {
        "reason": "disconnect",
        "from_time_ns": 10,
        "to_time_ns": 20,
        "from_update_id": 5,
        "to_update_id": 9,
        "disconnected_ns": 1,
    }
    trade_ids = {**disconnect, "reason": "trade_ids", "from_update_id": None, "to_update_id": None}
    bad = [
        {**disconnect, "to_time_ns": None},  # one end of a window
        {**disconnect, "from_update_id": 10},  # from > to
        {**trade_ids, "from_time_ns": None, "to_time_ns": None},  # no window at all
    ]
    lines = [_line("capture@gap", disconnect, 7), _line("capture@gap", trade_ids, 8)]
    sample = parse_golden(_gzip(lines + [_line("capture@gap", b) for b in bad]))
    assert sample.gaps.to_pylist() == [
        {
            "capture_ns": 7,
            "reason": "disconnect",
            "from_time_ns": 10,
            "to_time_ns": 20,
            "from_update_id": 5,
            "to_update_id": 9,
        },
        {
            "capture_ns": 8,
            "reason": "trade_ids",
            "from_time_ns": 10,
            "to_time_ns": 20,
            "from_update_id": None,
            "to_update_id": None,
        },
    ]
    assert sample.malformed_lines == 3 and sample.symbols == ()
    assert sample.stream_counts()["gap"] == 2
    assert concat_samples([sample, sample]).gaps.num_rows == 4
