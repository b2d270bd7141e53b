"""The day's files against each other: the same columns, one instrument's prices."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from rlx_assets.lake.consistency import foreign_prices, schema_drift
from rlx_assets.schema import (
    BOOK,
    SCHEMAS,
    TRADES,
    SourceSchemaError,
    canonical_names,
    normalize_table,
)

TRADE_COLUMNS = SCHEMAS[TRADES].names


def test_files_with_the_same_columns_agree_whatever_the_spelling_or_extras() -> None:
    raw = canonical_names(["timestamp", "receipt_timestamp", "id", "price", "amount", "side"])
    files = [("a", TRADE_COLUMNS), ("b", raw), ("c", [*TRADE_COLUMNS, "exchange"])]
    assert schema_drift(TRADES, files) is None
    assert schema_drift(TRADES, files[:1]) is None


def test_a_file_with_fewer_book_levels_names_itself_the_columns_and_its_neighbour() -> None:
    full = SCHEMAS[BOOK].names
    shallow = [name for name in full if not name.startswith(("bid_19_", "ask_19_"))]
    message = schema_drift(BOOK, [("s3://lake/1.parquet", full), ("s3://lake/2.parquet", shallow)])
    assert message == (
        "s3://lake/2.parquet: lacks column(s) ['bid_19_price', 'bid_19_size', 'ask_19_price',"
        " 'ask_19_size'] of 1.parquet beside it (the schema changes between the day's files)"
    )
    message = schema_drift(BOOK, [("s3://lake/1.parquet", shallow), ("s3://lake/2.parquet", full)])
    assert message is not None and "has column(s) ['bid_19_price'," in message


@pytest.mark.parametrize(
    ("price", "others", "foreign"),
    [
        (61_000.0, {"book": 61_010.0, "book_delta_v2": 61_500.0}, False),
        (2_800.0, {"book": 61_010.0, "book_delta_v2": 61_500.0}, True),
        # Agreeing with one table is enough: the other may be the foreign one.
        (61_000.0, {"book": 61_010.0, "book_delta_v2": 2_800.0}, False),
        (2_800.0, {"book": None, "book_delta_v2": 61_500.0}, True),
        (2_800.0, {"book": None, "book_delta_v2": None}, False),  # nothing to compare
        (None, {"book": 61_010.0, "book_delta_v2": 61_500.0}, False),
        # Within the ratio limit: not told apart (a symbol with a close price).
        (40_000.0, {"book": 61_010.0, "book_delta_v2": 61_500.0}, False),
    ],
)
def test_foreign_prices(price: float | None, others: dict, foreign: bool) -> None:
    message = foreign_prices(TRADES, [("file:///t/1.parquet", price)], others)
    assert (message is not None) is foreign
    if foreign:
        assert message.startswith("file:///t/1.parquet: column 'price': prices near 2800,")


def _trades(**extra: list) -> pa.Table:
    return pa.table(
        {
            "origin_time": [1],
            "received_time": [2],
            "trade_id": [3],
            "price": ["61000.5"],
            "quantity": [0.1],
            "side": ["buy"],
            **extra,
        }
    )


def test_numbers_written_as_text_are_refused_not_parsed() -> None:
    with pytest.raises(
        SourceSchemaError, match=r"^f: column 'price': expected double, found string$"
    ):
        normalize_table(TRADES, _trades(), "f")


@pytest.mark.parametrize("spelling", ["BTC-USDT", "BTCUSDT", "btc/usdt"])
def test_a_symbol_column_must_name_the_symbol_in_any_spelling(spelling: str) -> None:
    table = _trades(symbol=[spelling]).set_column(3, "price", pa.array([61000.5]))
    assert normalize_table(TRADES, table, "f", "BTC-USDT").num_rows == 1
    expected = f"f: column 'symbol': holds [{spelling!r}], not 'ETH-USDT'"
    with pytest.raises(SourceSchemaError, match=f"^{re.escape(expected)}"):
        normalize_table(TRADES, table, "f", "ETH-USDT")
