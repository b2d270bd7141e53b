"""Every asset check's name, in one place. Names state what must hold."""

import warnings

from dagster import AssetCheckSpec, PreviewWarning

BOOK_NEVER_CROSSED = "book_never_crossed"
MID_DEVIATION_WITHIN_LIMIT = "mid_deviation_within_limit"
TOP20_MATCHES_VENDOR = "top20_matches_vendor"
EVENTS_CHRONOLOGICAL = "events_chronological"
GAPS_FILLED = "gaps_filled"
CLOCK_SKEW_WITHIN_LIMIT = "clock_skew_within_limit"
ORIGIN_TIME_COMPLETE = "origin_time_complete"
NO_PRECISION_LOSS = "no_precision_loss"
ROWS_QUARANTINED_WITHIN_LIMIT = "rows_quarantined_within_limit"
GRID_STABLE = "grid_stable"
DAY_HAS_ROWS = "day_has_rows"
BOOK_REPLAYED_FROM_DELTAS = "book_replayed_from_deltas"
TOP_OF_BOOK_MATCHES_GOLDEN = "top_of_book_matches_golden"
DISTRIBUTIONS_MATCH_GOLDEN = "distributions_match_golden"


def partitioned_check(name: str, **kwargs) -> AssetCheckSpec:
    """A check evaluated per partition, so the UI shows each day's result on its own.

    Partitioned check specs are a Dagster preview feature; the warning on every load helps no
    user, so it is silenced here, in one place.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(name, **kwargs)
