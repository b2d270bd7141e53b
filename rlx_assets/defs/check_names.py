"""Every asset check's name, in one place. Names state what must hold."""

BOOK_NEVER_CROSSED = "book_never_crossed"
MID_DEVIATION_WITHIN_LIMIT = "mid_deviation_within_limit"
TOP20_MATCHES_VENDOR = "top20_matches_vendor"
EVENTS_CHRONOLOGICAL = "events_chronological"
