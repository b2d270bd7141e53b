"""What a capture knows it missed, per symbol: disconnects and id discontinuities, as windows of
exchange time and update ids (the `capture@gap` records of a golden sample; pure, no I/O).

A disconnect. Everything the exchange sent while the connection was down is lost, on every
stream. What was lost lies between the last message each stream delivered before and the first
each delivered after, so the window runs
- in update ids from min(last bookTicker u, last depth u) + 1 to max(first depth u after,
  first bookTicker u after - 1): a bookTicker is pushed in real time while the depth message
  that holds the same update comes up to 100 ms later, so either stream may be the one ahead;
- in exchange time from min(last trade time, last depth event time) to max(first depth event
  time after, first trade time after), both ends included (trades share milliseconds).
The gap is written once each of the symbol's three streams has delivered after the reconnect.
If a file ends first (UTC midnight, or the capture stops), that file gets the gap as far as it
knows it, up to the last exchange time and id it holds; the next file gets the whole gap.

An id discontinuity while connected: a spot depth message must start at the previous one's
`u` + 1, a futures one must name it as `pu`; spot trade ids are consecutive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlx_assets.capture.binance import Market

_MS = 1_000_000
DISCONNECT, DEPTH_IDS, TRADE_IDS = "disconnect", "depth_update_ids", "trade_ids"


@dataclass(frozen=True)
class Gap:
    reason: str
    from_time_ns: int | None
    to_time_ns: int | None
    from_update_id: int | None
    to_update_id: int | None
    detail: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The `data` of a `capture@gap` line (the fields `golden.GAPS_SCHEMA` reads first)."""
        return {
            "reason": self.reason,
            "from_time_ns": self.from_time_ns,
            "to_time_ns": self.to_time_ns,
            "from_update_id": self.from_update_id,
            "to_update_id": self.to_update_id,
            **self.detail,
        }


@dataclass
class _Disconnect:
    from_time_ns: int
    from_update_id: int
    disconnected_ns: int
    disconnects: int = 1
    reconnected_ns: int | None = None
    depth: tuple[int, int] | None = None  # first depth after: (event time ns, u)
    ticker_id: int | None = None  # first bookTicker u after
    trade_time_ns: int | None = None  # first trade time after


def _low(*values: int | None, default: int = 0) -> int:
    known = [v for v in values if v is not None]
    return min(known) if known else default


class SymbolGaps:
    """One symbol's stream state. `observe` each valid message (in arrival order) before
    writing it; it returns the gaps that message reveals, to be written first."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.depth_id: int | None = None  # last depth u
        self.depth_time: int | None = None  # its event time, ns
        self.ticker_id: int | None = None
        self.trade_id: int | None = None
        self.trade_time: int | None = None
        self.pending: _Disconnect | None = None
        self._file_time: int | None = None  # the highest exchange time / id in the open file
        self._file_id: int | None = None

    @property
    def seen(self) -> bool:
        return self.depth_id is not None or self.ticker_id is not None or self.trade_id is not None

    def disconnected(self, capture_ns: int) -> None:
        if self.pending is not None:
            # Down again before the gap closed: one gap, from the same last messages.
            self.pending.disconnects += 1
            self.pending.reconnected_ns = None
            self.pending.depth = self.pending.ticker_id = self.pending.trade_time_ns = None
            return
        if not self.seen:
            return  # nothing captured yet for this symbol: its capture starts later
        self.pending = _Disconnect(
            from_time_ns=_low(self.trade_time, self.depth_time),
            from_update_id=_low(self.ticker_id, self.depth_id, default=-1) + 1,
            disconnected_ns=capture_ns,
        )

    def reconnected(self, capture_ns: int) -> None:
        if self.pending is not None:
            self.pending.reconnected_ns = capture_ns

    def observe(self, kind: str, data: dict[str, Any]) -> list[Gap]:
        """`kind`: 'depth', 'bookTicker' or 'trade' (golden's names); `data` already validated."""
        gaps: list[Gap] = []
        pending = self.pending
        first_after = pending is not None and pending.reconnected_ns is not None
        if kind == "depth":
            time, last = data["E"] * _MS, data["u"]
            if first_after and pending.depth is None:
                pending.depth = (time, last)
            elif self.depth_id is not None:
                gap = self._depth_discontinuity(data, time)
                if gap is not None:
                    gaps.append(gap)
            self.depth_id, self.depth_time = last, time
            self._in_file(time, last)
        elif kind == "bookTicker":
            if first_after and pending.ticker_id is None:
                pending.ticker_id = data["u"]
            self.ticker_id = data["u"]
            self._in_file(None, data["u"])
        elif kind == "trade":
            time, trade_id = data["T"] * _MS, data["t"]
            if first_after and pending.trade_time_ns is None:
                pending.trade_time_ns = time
            elif (
                self.market.trade_ids_consecutive
                and self.trade_id is not None
                and trade_id != self.trade_id + 1
            ):
                gaps.append(
                    Gap(
                        TRADE_IDS,
                        min(self.trade_time, time),
                        max(self.trade_time, time),
                        None,
                        None,
                        {"previous_trade_id": self.trade_id, "trade_id": trade_id},
                    )
                )
            self.trade_id, self.trade_time = trade_id, time
            self._in_file(time, None)
        if pending is not None and (
            pending.depth and pending.ticker_id is not None and pending.trade_time_ns is not None
        ):
            gaps.append(self._closed_disconnect(pending))
            self.pending = None
        return gaps

    def file_ends(self, capture_ns: int) -> Gap | None:
        """The file being closed ends inside an open disconnect gap: the gap as far as this file
        goes (the next file gets it whole). Resets the per-file highs either way."""
        gap = None
        pending = self.pending
        if pending is not None:
            gap = Gap(
                DISCONNECT,
                pending.from_time_ns,
                max(pending.from_time_ns, self._file_time or 0),
                pending.from_update_id,
                max(pending.from_update_id, self._file_id or 0),
                {**self._disconnect_detail(pending), "open_at_file_end": True},
            )
        self._file_time = self._file_id = None
        return gap

    def _in_file(self, time: int | None, update_id: int | None) -> None:
        if time is not None and (self._file_time is None or time > self._file_time):
            self._file_time = time
        if update_id is not None and (self._file_id is None or update_id > self._file_id):
            self._file_id = update_id

    def _depth_discontinuity(self, data: dict[str, Any], time: int) -> Gap | None:
        previous, first = self.depth_id, data["U"]
        if self.market.continuity_by_pu:
            linked = data["pu"]
            if linked == previous:
                return None
            low, detail = min(previous, linked) + 1, {"previous_u": previous, "pu": linked}
        else:
            if first == previous + 1:
                return None
            low, detail = min(previous + 1, first), {"previous_u": previous, "U": first}
        return Gap(
            DEPTH_IDS,
            min(self.depth_time, time),
            max(self.depth_time, time),
            low,
            max(previous, first - 1),
            detail,
        )

    def _closed_disconnect(self, pending: _Disconnect) -> Gap:
        depth_time, depth_id = pending.depth
        return Gap(
            DISCONNECT,
            pending.from_time_ns,
            max(depth_time, pending.trade_time_ns),
            pending.from_update_id,
            max(depth_id, pending.ticker_id - 1),
            self._disconnect_detail(pending),
        )

    @staticmethod
    def _disconnect_detail(pending: _Disconnect) -> dict[str, Any]:
        return {
            "disconnected_ns": pending.disconnected_ns,
            "reconnected_ns": pending.reconnected_ns,
            "disconnects": pending.disconnects,
        }
