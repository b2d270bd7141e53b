"""A plain-Python order book with the engine's rules, written for clarity, not speed."""

from __future__ import annotations

LEVELS = 20


class ReferenceBook:
    def __init__(self) -> None:
        self.bids: dict[int, tuple[int, int]] = {}  # price -> (size, stamp)
        self.asks: dict[int, tuple[int, int]] = {}

    def apply(self, rows: list[tuple[bool, int, int]], stamp: int) -> int:
        """Apply one message; returns the stale crossing levels removed."""
        for is_bid, price, size in rows:
            side = self.bids if is_bid else self.asks
            if size == 0:
                side.pop(price, None)
            else:
                side[price] = (size, stamp)
        repaired = 0
        while self.crossed():
            best_bid, best_ask = max(self.bids), min(self.asks)
            bid_stamp, ask_stamp = self.bids[best_bid][1], self.asks[best_ask][1]
            if bid_stamp == ask_stamp:
                break
            del (self.bids if bid_stamp < ask_stamp else self.asks)[
                best_bid if bid_stamp < ask_stamp else best_ask
            ]
            repaired += 1
        return repaired

    def drop_crossed(self) -> int:
        removed = 0
        while self.crossed():
            del self.bids[max(self.bids)]
            del self.asks[min(self.asks)]
            removed += 2
        return removed

    def crossed(self) -> bool:
        return bool(self.bids and self.asks and max(self.bids) >= min(self.asks))

    def top(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = [(p, self.bids[p][0]) for p in sorted(self.bids, reverse=True)[:LEVELS]]
        asks = [(p, self.asks[p][0]) for p in sorted(self.asks)[:LEVELS]]
        return bids, asks
