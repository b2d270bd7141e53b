"""What one file cannot show alone: the files of a day must agree with each other.

- Every file of a table under one `dt` carries the same columns: a file that loses columns the
  others have (a book with 10 levels instead of 20) would otherwise read as empty levels.
- A table's prices sit where the day's other tables trade: a valid file of another instrument
  filed under this symbol (ETH-USDT under BTC-USDT) has no column that says so, but its prices
  are another order of magnitude. Instruments whose prices are close (BTC-USDT and BTC-USDC) are
  beyond this test; a `symbol` column, when a file has one, catches them (`schema.normalize_table`).
"""

from __future__ import annotations

from rlx_assets.schema import PRICE_COLUMNS, SCHEMAS

# Prices of the day's tables within this factor of each other belong to one instrument. A trade,
# the touch and a full-depth delta stay within a few percent of each other in a day; symbols
# that differ in price by less than this factor are not told apart by it.
PRICE_RATIO_LIMIT = 2.0

_SHOWN = 4  # columns named in a message; the rest counted


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(name) for name in columns[:_SHOWN])
    more = len(columns) - _SHOWN
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"


def schema_drift(table_name: str, files: list[tuple[str, list[str]]]) -> str | None:
    """A message when a file of the day has other table columns than the day's first file."""
    if len(files) < 2:
        return None
    target = SCHEMAS[table_name].names
    first_uri, first_columns = files[0]
    first = set(first_columns) & set(target)
    for uri, columns in files[1:]:
        present = set(columns) & set(target)
        if present == first:
            continue
        missing = [name for name in target if name in first - present]
        extra = [name for name in target if name in present - first]
        differences = []
        if missing:
            differences.append(f"lacks column(s) {_names(missing)}")
        if extra:
            differences.append(f"has column(s) {_names(extra)} it lacks")
        first_name = first_uri.rsplit("/", 1)[-1]  # same folder: the name says which
        return (
            f"{uri}: {' and '.join(differences)} of {first_name} beside it"
            " (the schema changes between the day's files)"
        )
    return None


def foreign_prices(
    table_name: str, files: list[tuple[str, float | None]], others: dict[str, float | None]
) -> str | None:
    """A message when a file's typical price is more than PRICE_RATIO_LIMIT away from that of
    every other table of the day (those without prices are not asked)."""
    references = {name: price for name, price in sorted(others.items()) if price is not None}
    if not references:
        return None
    for uri, price in files:
        if price is None:
            continue
        if all(
            max(price, reference) / min(price, reference) > PRICE_RATIO_LIMIT
            for reference in references.values()
        ):
            seen = " and ".join(f"{name} near {value:.6g}" for name, value in references.items())
            column = PRICE_COLUMNS[table_name][0]
            return (
                f"{uri}: column {column!r}: prices near {price:.6g}, the day's {seen}"
                " (another symbol's file filed under this one?)"
            )
    return None
