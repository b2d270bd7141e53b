"""Date x symbol partitions; the key string is "2024-08-08|BTC-USDT" (dimensions sorted by name)."""

from __future__ import annotations

import datetime as dt
import warnings

from dagster import (
    BetaWarning,
    DailyPartitionsDefinition,
    DimensionPartitionMapping,
    IdentityPartitionMapping,
    MultiPartitionKey,
    MultiPartitionMapping,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionMapping,
)

DATE = "date"
SYMBOL = "symbol"


def market_partitions(start_date: dt.date, symbols: list[str]) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {
            DATE: DailyPartitionsDefinition(start_date=start_date.isoformat()),
            SYMBOL: StaticPartitionsDefinition(list(symbols)),
        }
    )


def _previous_day_mapping() -> MultiPartitionMapping:
    return MultiPartitionMapping(
        {
            DATE: DimensionPartitionMapping(
                DATE,
                TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
                ),
            ),
            SYMBOL: DimensionPartitionMapping(SYMBOL, IdentityPartitionMapping()),
        }
    )


# The same symbol's previous day: how a day continues from yesterday's book.
with warnings.catch_warnings():
    warnings.simplefilter(
        "ignore", BetaWarning
    )  # beta in Dagster; a warning on every load helps no user
    previous_day = _previous_day_mapping()


def partition_key(day: dt.date | str, symbol: str) -> str:
    return str(MultiPartitionKey({DATE: str(day), SYMBOL: symbol}))


def day_and_symbol(key: MultiPartitionKey | str) -> tuple[dt.date, str]:
    """("2024-08-08", "BTC-USDT") from a partition key, whatever form it came in."""
    if isinstance(key, MultiPartitionKey):
        dimensions = key.keys_by_dimension
        return dt.date.fromisoformat(dimensions[DATE]), dimensions[SYMBOL]
    day, symbol = str(key).split("|")
    return dt.date.fromisoformat(day), symbol
