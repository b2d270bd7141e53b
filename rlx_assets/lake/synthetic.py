"""`synthetic://`: the embedded default lake, a deterministic market simulator.

It produces the three Crypto Lake tables (`trades`, `book`, `book_delta_v2`) in exactly the
normalized schemas of `schema.SCHEMAS`, consistent with each other:

- Every origin day opens at 00:00:00 with one message that is the whole book (a collector's REST
  snapshot), so a cold start works. The opening book of a day is its *anchor*: a full-depth book
  generated from the seed of that date alone, around a mid price that follows a slow seeded walk
  across dates.
- Intraday, the top of the book follows a Brownian bridge from today's anchor mid to tomorrow's;
  a numba kernel (`synthetic_kernel`) keeps the true book and publishes every change as delta
  rows (new absolute size per level), every fill as a trade at the best level it hits, and a
  20-level snapshot of the true book after the first message at least 100 ms after the previous
  snapshot. Replaying the deltas therefore reproduces every snapshot exactly.
- The last message of a day, 1 ms before midnight, reconciles the book to tomorrow's anchor (every
  anchor level set, every other level removed), so the book at the end of day D is exactly the
  book the opening burst of day D+1 describes: days join up exactly.
- Trade ids and sequence numbers start each day at values derived from the date alone, so they
  continue across days without generating the previous day.

`received_time` = origin time + a few ms of lognormal latency + a slowly drifting clock offset
(in order within each stream, as one socket delivers it), so the last message before midnight is
filed under the next `dt`, as Crypto Lake files by receive time.

Everything is seeded from (exchange, symbol, date) through SHA-256, never Python's `hash()`; the
anchor mid walk from the symbol alone, so one symbol has one price level on every exchange.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets import schema
from rlx_assets.lake import synthetic_kernel as kernel
from rlx_assets.lake.source import DayFiles, SourceFile, TableSource, ipc_sha256

if TYPE_CHECKING:
    from rlx_assets.lake.synthetic_faults import FaultRates

# Volume at scale 1.0: a busy real BTC-USDT day on Binance spot.
MESSAGES_PER_DAY = 860_000
DELTA_ROWS_PER_DAY = 40_000_000
TRADES_PER_DAY = 2_600_000
DELTA_ROWS_PER_MESSAGE = DELTA_ROWS_PER_DAY / MESSAGES_PER_DAY
SNAPSHOT_INTERVAL_MS = 100

DAY_MS = 86_400_000
DAY_NS = 86_400 * 10**9
SECONDS_PER_DAY = 86_400
EPOCH = dt.date(2010, 1, 1)  # trade ids, sequence numbers and the price walk count from here
_WALK_DAYS = 20_000  # the price walk is defined for EPOCH .. EPOCH + 20000 days (2064)

_FIRST_TRADE_ID = 1_000_000
_FIRST_SEQUENCE = 10_000_000_000
_SEQUENCE_PER_MESSAGE = 70  # Binance update ids advance ~70 per depth message

# Intraday messages keep 100 ms away from midnight so the opening snapshot (00:00:00.000) is
# always 100 ms after the previous day's last one; fills start 50 ms after midnight so a
# day's trades are received after the previous day's (latency < 50 ms).
_FIRST_MESSAGE_MS = 100
_LAST_MESSAGE_MS = DAY_MS - 100
_FIRST_FILL_MS = 50
_CLOSE_MS = DAY_MS - 1  # the reconciliation message

# Receive delay = the collector's clock offset (4 +- 3 ms, drifting) + network latency (lognormal
# around 2 ms, capped). The caps keep received_time increasing across midnight too (see
# `_FIRST_FILL_MS`) and bound which neighbouring origin days can land in a `dt`.
_CLOCK_OFFSET_MS = 4.0
_CLOCK_SLOW_MS = 2.0  # amplitude of a ~7.3 h swing
_CLOCK_FAST_MS = 1.0  # amplitude of a ~53 min swing
_LATENCY_MEDIAN_MS = 2.0
_LATENCY_SIGMA = 0.6
_LATENCY_MIN_MS = 0.3
_LATENCY_MAX_MS = 40.0
_DELAY_MIN_NS = int(1e6 * (_CLOCK_OFFSET_MS - _CLOCK_SLOW_MS - _CLOCK_FAST_MS + _LATENCY_MIN_MS))
_DELAY_MAX_NS = int(1e6 * (_CLOCK_OFFSET_MS + _CLOCK_SLOW_MS + _CLOCK_FAST_MS + _LATENCY_MAX_MS))

# Order flow per message: lognormal rows (median and spread from real Binance depth messages).
_ROWS_SIGMA = 1.2
_ROWS_MEDIAN = 22.0
_FILLS_SIGMA = 0.7
_PRICE_MOVE_SHARE = 0.3  # messages in which the price path moves at all (mid is sticky)


@dataclass(frozen=True)
class Instrument:
    """Grid and typical figures of one symbol (the kernel works in ticks and lots)."""

    price_decimals: int  # tick = tick_units / 10**price_decimals
    tick_units: int
    size_decimals: int  # lot = lot_units / 10**size_decimals
    lot_units: int
    price: float  # level the anchor walk wanders around
    daily_vol: float  # standard deviation of daily log returns
    spread_ticks: int  # usual spread
    levels: tuple[int, int]  # full-depth levels per side of an anchor book (min, max)
    gap_ticks: float  # mean distance between neighbouring levels

    @property
    def tick(self) -> float:
        return self.tick_units / 10**self.price_decimals

    @property
    def lot(self) -> float:
        return self.lot_units / 10**self.size_decimals

    @property
    def depth_ticks(self) -> int:
        """Distance from the best within which order flow lands (a little over the book)."""
        return int(1.1 * sum(self.levels) / 2 * self.gap_ticks) + 1

    def prices(self, ticks: np.ndarray) -> np.ndarray:
        """Tick counts as the float64 closest to the exact decimal (one correctly rounded /)."""
        return (ticks * self.tick_units) / 10.0**self.price_decimals

    def sizes(self, lots: np.ndarray) -> np.ndarray:
        return (lots * self.lot_units) / 10.0**self.size_decimals


_INSTRUMENTS = {
    # Binance spot: tick 0.01 and lot 0.00001 BTC; ~1000 levels span ~35 bp; spread 1 tick.
    "BTC-USDT": Instrument(2, 1, 5, 1, 60_000.0, 0.025, 1, (700, 1000), 20.0),
    "ETH-USDT": Instrument(2, 1, 4, 1, 3_000.0, 0.032, 1, (600, 1000), 3.0),
}


@lru_cache(maxsize=256)
def instrument(symbol: str) -> Instrument:
    """The symbol's grid: from the table, else tick 0.0001, lot 0.01, a seeded price in 1..1000."""
    if symbol in _INSTRUMENTS:
        return _INSTRUMENTS[symbol]
    price = round(10 ** (3 * _unit("price", symbol)), 4)
    ticks_per_unit = 10_000  # tick 0.0001
    return Instrument(
        price_decimals=4,
        tick_units=1,
        size_decimals=2,
        lot_units=1,
        price=max(price, 1.0),
        daily_vol=0.045,
        spread_ticks=max(1, round(0.3e-4 * price * ticks_per_unit)),  # ~0.3 bp
        levels=(300, 800),
        gap_ticks=max(1.2, 0.015 * price * ticks_per_unit / 550),  # ~550 levels over 1.5 %
    )


def _seed(*parts: object) -> int:
    """64-bit seed from SHA-256 of the parts: stable across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_seed(*parts)))


def _unit(*parts: object) -> float:
    """A seeded number in [0, 1)."""
    return _seed(*parts) / 2.0**64


def _day_index(day: dt.date) -> int:
    index = (day - EPOCH).days
    if not 0 <= index < _WALK_DAYS - 1:
        last = EPOCH + dt.timedelta(days=_WALK_DAYS - 2)
        raise ValueError(f"synthetic://: {day} is outside the simulated dates {EPOCH} .. {last}")
    return index


def _day_start_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_NS


def _as_date(day: dt.date) -> dt.date:
    return day.date() if isinstance(day, dt.datetime) else day


# --- Across days: price walk, anchors, id counters -------------------------------------------


@lru_cache(maxsize=64)
def _log_price_walk(symbol: str) -> np.ndarray:
    """Log of the anchor mid relative to the symbol's price level, per day from EPOCH.

    A mean-reverting AR(1) of seeded daily returns (stationary spread 0.3 in log price), so
    adjacent days are close and the price stays near its level over the years.
    """
    vol = instrument(symbol).daily_vol
    spread = 0.3
    phi = math.sqrt(1.0 - (vol / spread) ** 2)
    shocks = _rng("walk", symbol).standard_normal(_WALK_DAYS)
    walk = np.empty(_WALK_DAYS)
    walk[0] = spread * shocks[0]
    for day in range(1, _WALK_DAYS):
        walk[day] = phi * walk[day - 1] + vol * shocks[day]
    return walk


@dataclass(frozen=True)
class _Anchor:
    """The book at a midnight: tomorrow's opening burst and yesterday's closing reconciliation."""

    bid_ticks: np.ndarray  # best first
    bid_lots: np.ndarray
    ask_ticks: np.ndarray
    ask_lots: np.ndarray
    latency_ns: int  # receive latency of both midnight messages, so they stay in order

    @property
    def mid_ticks(self) -> float:
        return (self.bid_ticks[0] + self.ask_ticks[0]) / 2.0

    @property
    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.bid_ticks, self.bid_lots, self.ask_ticks, self.ask_lots


@lru_cache(maxsize=32)
def _anchor(exchange: str, symbol: str, day: dt.date) -> _Anchor:
    """Full-depth book at 00:00 of `day`, from the seed of that date alone."""
    inst = instrument(symbol)
    price = inst.price * math.exp(_log_price_walk(symbol)[_day_index(day)])
    mid = price / inst.tick
    rng = _rng("anchor", exchange, symbol, day)
    best_bid = max(1, round(mid - inst.spread_ticks / 2))
    best_ask = best_bid + inst.spread_ticks
    params = _kernel_params(inst, price)
    sides = []
    for best, step in ((best_bid, -1), (best_ask, 1)):
        n_levels = int(rng.integers(inst.levels[0], inst.levels[1] + 1))
        # Level gaps: geometric around the mean, with a share of adjacent ticks near any level.
        gaps = np.where(
            rng.random(n_levels - 1) < 0.15,
            1,
            rng.geometric(min(1.0, 1.0 / inst.gap_ticks), n_levels - 1),
        )
        distance = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
        ticks = best + step * distance
        keep = ticks >= 1
        sides += [ticks[keep], _level_lots(rng, params, distance[keep].astype(float))]
    latency = _clock_offset_ns(exchange, np.array([_day_start_ns(day)]))[0]
    latency += _latency_ns(rng, 1)[0]
    return _Anchor(*sides, latency_ns=int(latency))


def _first_trade_id(exchange: str, symbol: str, day: dt.date, scale: float) -> int:
    """First trade id of an origin day; the next day's first id minus this one is its count."""
    jitter = 0.1 * _unit("trades", exchange, symbol, day)  # +-10 % trades from day to day
    return _FIRST_TRADE_ID + math.floor(TRADES_PER_DAY * scale * (_day_index(day) + jitter))


def _first_sequence(exchange: str, symbol: str, day: dt.date, scale: float) -> int:
    """Sequence number of an origin day's opening burst; the day's messages stay below the next."""
    per_day = _SEQUENCE_PER_MESSAGE * MESSAGES_PER_DAY * scale
    jitter = 0.1 * _unit("sequence", exchange, symbol, day)
    index = _day_index(day)
    # The 10_000 per day keeps room for a few messages even at tiny scales.
    return _FIRST_SEQUENCE + 10_000 * index + math.floor(per_day * (index + jitter))


# --- Receive clock ---------------------------------------------------------------------------


def _clock_offset_ns(exchange: str, origin_ns: np.ndarray) -> np.ndarray:
    """The collector's clock error: a few ms, drifting slowly and continuously across days."""
    seconds = origin_ns / 1e9
    phase1 = 2 * math.pi * _unit("clock", exchange, 1)
    phase2 = 2 * math.pi * _unit("clock", exchange, 2)
    slow = np.sin(2 * math.pi * seconds / 26_280 + phase1)
    fast = np.sin(2 * math.pi * seconds / 3_180 + phase2)
    return 1e6 * (_CLOCK_OFFSET_MS + _CLOCK_SLOW_MS * slow + _CLOCK_FAST_MS * fast)


def _latency_ns(rng: np.random.Generator, n: int) -> np.ndarray:
    latency_ms = _LATENCY_MEDIAN_MS * np.exp(_LATENCY_SIGMA * rng.standard_normal(n))
    return 1e6 * np.clip(latency_ms, _LATENCY_MIN_MS, _LATENCY_MAX_MS)


def _delay_ns(exchange: str, origin_ns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """received - origin before ordering: the clock offset plus network latency."""
    delay = _clock_offset_ns(exchange, origin_ns) + _latency_ns(rng, origin_ns.shape[0])
    return delay.astype(np.int64)


def _received_ns(origin_ns: np.ndarray, delay_ns: np.ndarray) -> np.ndarray:
    """origin + delay, never earlier than the previous row: one socket delivers in order."""
    return np.maximum.accumulate(origin_ns + delay_ns)


# --- Sizes -----------------------------------------------------------------------------------


def _kernel_params(inst: Instrument, price: float) -> np.ndarray:
    """Kernel parameters; sizes are set in USD notional and converted to log lots at `price`."""
    lot_usd = price * inst.lot

    def log_lots(usd: float) -> float:
        return math.log(usd / lot_usd)

    prm = np.zeros(kernel.N_PARAMS)
    prm[kernel.P_XMAX] = inst.depth_ticks
    prm[kernel.P_GAP] = inst.gap_ticks
    prm[kernel.P_RHO_TOP] = min(0.9, 0.5 / inst.gap_ticks)
    prm[kernel.P_TARGET_LEVELS] = sum(inst.levels) / 2
    prm[kernel.P_NEAR_SHARE] = 0.05
    prm[kernel.P_DEPTH_POWER] = 2.5
    prm[kernel.P_MODIFY] = 0.3
    # Resting levels: many small ones (~$60) and a large mode (~$4000); thicker at the top.
    prm[kernel.P_LVL_W_SMALL] = 0.5
    prm[kernel.P_LVL_MU_SMALL] = log_lots(60.0)
    prm[kernel.P_LVL_SIG_SMALL] = 1.3
    prm[kernel.P_LVL_MU_LARGE] = log_lots(4_000.0)
    prm[kernel.P_LVL_SIG_LARGE] = 1.4
    prm[kernel.P_LVL_TOP_BOOST] = 10.0
    # Aggressive orders: retail (~$6), larger lognormal (~$2500) and a Pareto tail from $5000;
    # each fill takes at most one maker order (~$400, very dispersed), so big orders sweep.
    prm[kernel.P_ORD_W_SMALL] = 0.45
    prm[kernel.P_ORD_MU_SMALL] = log_lots(6.0)
    prm[kernel.P_ORD_SIG_SMALL] = 1.0
    prm[kernel.P_ORD_MU_LARGE] = log_lots(2_500.0)
    prm[kernel.P_ORD_SIG_LARGE] = 2.0
    prm[kernel.P_ORD_W_PARETO] = 0.04
    prm[kernel.P_ORD_PARETO_MIN] = log_lots(5_000.0)
    prm[kernel.P_ORD_PARETO_ALPHA] = 1.1
    prm[kernel.P_CHUNK_MU] = log_lots(400.0)
    prm[kernel.P_CHUNK_SIG] = 2.5
    prm[kernel.P_FOLLOW] = 0.6
    prm[kernel.P_CANCEL_BEST] = 0.03
    return prm


def _level_lots(rng: np.random.Generator, prm: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Resting sizes (lots) of anchor levels, the same distribution as the kernel's."""
    n = distance.shape[0]
    small = rng.random(n) < prm[kernel.P_LVL_W_SMALL]
    z = rng.standard_normal(n)
    log_lots = np.where(
        small,
        prm[kernel.P_LVL_MU_SMALL] + prm[kernel.P_LVL_SIG_SMALL] * z,
        prm[kernel.P_LVL_MU_LARGE] + prm[kernel.P_LVL_SIG_LARGE] * z,
    )
    boost = 1.0 + prm[kernel.P_LVL_TOP_BOOST] * np.exp(-distance / (3.0 * prm[kernel.P_GAP]))
    lots = np.exp(np.minimum(log_lots + np.log(boost), 40.0))
    return np.maximum(1, lots.astype(np.int64))


# --- One origin day --------------------------------------------------------------------------


def _activity(exchange: str, symbol: str, day: dt.date) -> np.ndarray:
    """Per-second trading intensity, mean 1: seasonality, regimes, decaying news bursts."""
    rng = _rng("activity", exchange, symbol, day)
    seconds = np.arange(SECONDS_PER_DAY)
    season = 1.0 + 0.35 * np.cos(2 * np.pi * (seconds / 3600 - 15) / 24)  # busiest ~15:00 UTC
    # Regimes switch per minute (calm, normal, busy, frantic): sticky Markov chain.
    level = np.array([0.45, 1.0, 2.2, 5.0])
    stay = np.array([0.97, 0.96, 0.90, 0.80])
    regime = np.empty(1440, dtype=np.int64)
    state = 1
    draws = rng.random((1440, 2))
    for minute in range(1440):
        if draws[minute, 0] > stay[state]:
            up = draws[minute, 1] < (0.0 if state == 3 else 1.0 if state == 0 else 0.5)
            state += 1 if up else -1
        regime[minute] = state
    intensity = season * level[regime[seconds // 60]]
    intensity *= np.exp(0.35 * rng.standard_normal(SECONDS_PER_DAY))
    # Self-exciting bursts (news, liquidations): jumps that decay over minutes.
    for _ in range(int(rng.poisson(2.0))):
        start = int(rng.integers(0, SECONDS_PER_DAY))
        height = float(np.exp(rng.normal(np.log(6.0), 0.5)))
        decay = float(rng.uniform(60.0, 600.0))
        after = seconds[start:] - start
        intensity[start:] += height * np.exp(-after / decay)
    return intensity / intensity.mean()


def _message_times(activity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """ms since midnight of all messages: 0 (burst), n intraday, `_CLOSE_MS` (reconciliation).

    Intraday messages arrive as a Poisson process whose clock runs with the activity (bursty),
    pushed at least 100 ms apart (an exchange's depth stream throttle) while that still fits, so
    every message can carry a vendor snapshot up to scale 1.0.
    """
    span = _LAST_MESSAGE_MS - _FIRST_MESSAGE_MS
    gap = min(SNAPSHOT_INTERVAL_MS, span // max(n - 1, 1))
    free = span - (n - 1) * gap
    waits = rng.exponential(size=n + 1)
    position = np.cumsum(waits)[:n] / waits.sum()  # sorted in (0, 1)
    cumulative = np.concatenate([[0.0], np.cumsum(activity)])
    seconds = np.interp(position * cumulative[-1], cumulative, np.arange(SECONDS_PER_DAY + 1))
    offset = np.floor(seconds / SECONDS_PER_DAY * (free + 1)).astype(np.int64)
    intraday = _FIRST_MESSAGE_MS + np.arange(n, dtype=np.int64) * gap + offset
    return np.concatenate([[0], intraday, [_CLOSE_MS]]).astype(np.int64)


@dataclass(frozen=True)
class _Path:
    target_bid: np.ndarray  # per message, absolute ticks
    target_ask: np.ndarray
    direction: np.ndarray  # sign of the change of the target mid


def _price_path(
    inst: Instrument,
    open_book: _Anchor,
    close_book: _Anchor,
    t_ms: np.ndarray,
    activity: np.ndarray,
    rng: np.random.Generator,
) -> _Path:
    """Target best bid/ask per message: a Brownian bridge from today's anchor mid to tomorrow's.

    The mid is sticky (most messages leave it alone) with heavy-tailed jumps whose size clusters
    with activity; per-message volatility is that of a full-scale day, so small scales do not
    jump more per message (the bridge's drift still joins the anchors).
    """
    n = t_ms.shape[0]
    sigma = inst.daily_vol * open_book.mid_ticks / math.sqrt(max(n - 1, MESSAGES_PER_DAY))
    moves = rng.random(n - 1) < _PRICE_MOVE_SHARE
    jump_scale = sigma / math.sqrt(_PRICE_MOVE_SHARE * 3.0)  # Student t(3) has variance 3
    jumps = np.clip(rng.standard_t(3, n - 1), -8.0, 8.0) * jump_scale
    steps = np.where(moves, jumps, 0.0) * np.sqrt(activity[1:])
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    tau = t_ms / t_ms[-1]
    start, end = open_book.mid_ticks, close_book.mid_ticks
    mid = start + (end - start) * tau + walk - tau * walk[-1]

    # Spread: the usual one, wider now and then, more often when busy or after a big jump.
    big = np.concatenate([[False], np.abs(steps) > 2.5 * sigma])
    p_wide = np.clip(0.002 * activity + 0.25 * big, 0.0, 0.5)
    wide = rng.random(n) < p_wide
    spread = inst.spread_ticks * (1 + np.where(wide, rng.geometric(0.3, n), 0))
    bid = np.maximum(1, np.floor(mid - spread / 2 + 0.5)).astype(np.int64)
    ask = bid + spread
    bid[0], ask[0] = open_book.bid_ticks[0], open_book.ask_ticks[0]
    bid[-1], ask[-1] = close_book.bid_ticks[0], close_book.ask_ticks[0]
    direction = np.concatenate([[0], np.sign(np.diff(bid + ask))]).astype(np.int64)
    return _Path(bid, ask, direction)


def _sequence_steps(rows_per_msg: np.ndarray, room: int, rng: np.random.Generator) -> np.ndarray:
    """Offsets of each message's sequence number from the day's first, all below `room`.

    Steps grow with the message's rows (update ids count events) and jitter; they are scaled
    so the last step, into tomorrow's first sequence number, still has room.
    """
    n = rows_per_msg.shape[0]
    weight = (rows_per_msg[1:] + 1.0) * np.exp(0.5 * rng.standard_normal(n - 1))
    weight = np.concatenate([weight, [weight.mean()]])  # the step into tomorrow
    steps = 1 + np.floor(weight / weight.sum() * (room - n)).astype(np.int64)
    return np.concatenate([[0], np.cumsum(steps[:-1])])


def book_table(
    inst: Instrument,
    origin: np.ndarray,
    received: np.ndarray,
    sequence: np.ndarray,
    snapshots: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> pa.Table:
    """The vendor `book` table from the kernel's snapshots (tick -1 = level absent = null)."""
    snap_msg, snap_tick, snap_lots = snapshots
    columns: dict[str, pa.Array] = {
        "origin_time": pa.array(origin[snap_msg]),
        "received_time": pa.array(received[snap_msg]),
        "sequence_number": pa.array(sequence[snap_msg]),
    }
    for level in range(kernel.LEVELS):
        for side, name in ((kernel.BID, "bid"), (kernel.ASK, "ask")):
            ticks = snap_tick[:, side, level]
            missing = ticks < 0
            columns[f"{name}_{level}_price"] = pa.array(inst.prices(ticks), mask=missing)
            lots = snap_lots[:, side, level]
            columns[f"{name}_{level}_size"] = pa.array(inst.sizes(lots), mask=missing)
    return pa.table(columns, schema=schema.SCHEMAS[schema.BOOK])


def _simulate(exchange: str, symbol: str, day: dt.date, scale: float) -> dict[str, pa.Table]:
    """One origin day: plan it in numpy, run the kernel, shape the three tables."""
    inst = instrument(symbol)
    next_day = day + dt.timedelta(days=1)
    open_book = _anchor(exchange, symbol, day)
    close_book = _anchor(exchange, symbol, next_day)
    rng = _rng("day", exchange, symbol, day, repr(scale))

    activity = _activity(exchange, symbol, day)
    volume = 0.95 + 0.05 * _unit("volume", exchange, symbol, day)
    n_intraday = max(1, round(MESSAGES_PER_DAY * scale * volume))
    t_ms = _message_times(activity, n_intraday, rng)
    n_msgs = t_ms.shape[0]
    msg_activity = activity[np.minimum(t_ms // 1000, SECONDS_PER_DAY - 1)]
    path = _price_path(inst, open_book, close_book, t_ms, msg_activity, rng)

    # Rows per message: lognormal like Binance's depth messages, more when busy.
    busy = np.sqrt(msg_activity) / np.sqrt(msg_activity).mean()
    # The midnight messages (about twice the anchor book) come out of the day's row budget, so
    # the volume stays linear in `scale` down to small scales.
    anchor_rows = open_book.bid_ticks.shape[0] + open_book.ask_ticks.shape[0]
    budget = np.clip(1.0 - 2.0 * anchor_rows / (DELTA_ROWS_PER_MESSAGE * n_intraday), 0.5, 1.0)
    rows_wanted = _ROWS_MEDIAN * np.exp(_ROWS_SIGMA * rng.standard_normal(n_msgs)) * busy * budget
    rows_wanted = np.maximum(1, np.round(rows_wanted)).astype(np.int64)
    rows_wanted[[0, -1]] = 0

    # Fills: the day's exact count (ids continue across days), spread over messages by activity.
    first_trade = _first_trade_id(exchange, symbol, day, scale)
    n_trades = _first_trade_id(exchange, symbol, next_day, scale) - first_trade
    weight = msg_activity[1:] * np.exp(_FILLS_SIGMA * rng.standard_normal(n_msgs - 1))
    fills = np.concatenate([[0], rng.multinomial(n_trades, weight / weight.sum())])
    fill_lo = np.maximum(np.maximum(t_ms - 99, _FIRST_FILL_MS), np.roll(t_ms, 1) + 1)
    fill_lo[0] = 0

    depth = inst.depth_ticks
    lo = min(
        int(path.target_bid.min()), int(open_book.bid_ticks.min()), int(close_book.bid_ticks.min())
    )
    hi = max(
        int(path.target_ask.max()), int(open_book.ask_ticks.max()), int(close_book.ask_ticks.max())
    )
    lo = max(1, lo - depth - 64)
    n_cells = hi + depth + 64 - lo + 1
    params = _kernel_params(inst, open_book.mid_ticks * inst.tick)
    seed = np.uint64(_seed("kernel", exchange, symbol, day, repr(scale)))
    capacity = int(1.3 * rows_wanted.sum() + 2 * fills.sum() + 4 * anchor_rows + 20 * n_msgs)
    plan = (t_ms, fill_lo, path.target_bid, path.target_ask, path.direction, rows_wanted, fills)
    plan += (kernel.snapshot_mask(t_ms, n_msgs - 1),)
    while True:
        n_rows, rows, fill_rows, snapshots = kernel.simulate_day(
            lo, n_cells, plan, open_book.levels, close_book.levels, params, seed, capacity
        )
        if n_rows >= 0:
            break
        capacity *= 2
    row_msg, row_bid, row_tick, row_lots = (column[:n_rows] for column in rows)
    tr_time, tr_buy, tr_tick, tr_lots = fill_rows

    first_seq = _first_sequence(exchange, symbol, day, scale)
    room = _first_sequence(exchange, symbol, next_day, scale) - first_seq
    rows_per_msg = np.bincount(row_msg, minlength=n_msgs)
    sequence = first_seq + _sequence_steps(rows_per_msg, room, rng)

    day_ns = _day_start_ns(day)
    origin = day_ns + t_ms * 1_000_000
    delay = _delay_ns(exchange, origin, rng)
    # The two midnight messages take the anchor's delay, so the reconciliation is received 1 ms
    # before the next day's opening burst (both are derived from that midnight's seed).
    delay[0] = open_book.latency_ns
    delay[-1] = close_book.latency_ns
    received = _received_ns(origin, delay)

    deltas = pa.table(
        {
            "origin_time": origin[row_msg],
            "received_time": received[row_msg],
            "sequence_number": sequence[row_msg],
            "side_is_bid": row_bid,
            "price": inst.prices(row_tick),
            "size": inst.sizes(row_lots),
        },
        schema=schema.SCHEMAS[schema.BOOK_DELTAS],
    )
    book = book_table(inst, origin, received, sequence, snapshots)
    trade_origin = day_ns + tr_time * 1_000_000
    trades = pa.table(
        {
            "origin_time": trade_origin,
            "received_time": _received_ns(trade_origin, _delay_ns(exchange, trade_origin, rng)),
            "trade_id": first_trade + np.arange(tr_time.shape[0], dtype=np.int64),
            "price": inst.prices(tr_tick),
            "quantity": inst.sizes(tr_lots),
            "side": pa.DictionaryArray.from_arrays(
                pa.array(tr_buy.astype(np.int8)), pa.array(["sell", "buy"])
            ).cast(pa.string()),
        },
        schema=schema.SCHEMAS[schema.TRADES],
    )
    return {schema.TRADES: trades, schema.BOOK: book, schema.BOOK_DELTAS: deltas}


@lru_cache(maxsize=4)
def _origin_day(exchange: str, symbol: str, day: dt.date, scale: float) -> dict[str, pa.Table]:
    # A raw partition reads the dt folders D-1, D and D+1 of each of three tables, which need the
    # origin days D-2 .. D+1: four days cached simulate each once (~2.2 GB a day at scale 1.0).
    return _simulate(exchange, symbol, day, scale)


def generate_origin_day(
    exchange: str, symbol: str, day: dt.date, scale: float
) -> dict[str, pa.Table]:
    """All rows whose origin_time lies in `day` (UTC), before filing by dt, per table.

    Rows are in receive order (received_time, then sequence_number / trade_id). Deterministic:
    the same arguments give identical tables in any process.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"synthetic://: scale must be a positive number, got {scale!r}")
    return dict(_origin_day(exchange, symbol, _as_date(day), float(scale)))


# --- The lake --------------------------------------------------------------------------------


def _sort_key(table: str) -> str:
    return "trade_id" if table == schema.TRADES else "sequence_number"


def _received_between(rows: pa.Table, start_ns: int) -> pa.Table:
    """Rows received in the UTC day starting at `start_ns`; a zero-copy slice when in order."""
    received = rows.column("received_time").to_numpy()
    if np.all(received[1:] >= received[:-1]):
        first, end = np.searchsorted(received, [start_ns, start_ns + DAY_NS])
        return rows.slice(first, end - first)
    column = rows.column("received_time")
    inside = pc.and_(pc.greater_equal(column, start_ns), pc.less(column, start_ns + DAY_NS))
    return rows.filter(inside)


def _in_receive_order(rows: pa.Table, key: str) -> bool:
    received = rows.column("received_time").to_numpy()
    ids = rows.column(key).to_numpy()
    step = np.diff(received)
    return bool(np.all(step >= 0) and np.all(np.diff(ids)[step == 0] >= 0))


class SyntheticLake:
    """`synthetic://`: a `Lake` whose files are simulated on demand (see the module docstring).

    `scale` sets the volume: 1.0 is a busy real BTC-USDT day (about 40 million delta rows in 860
    thousand messages, 860 thousand snapshots, 2.6 million trades); it scales linearly.

    `faults` switches on real-world faults at the given rates (`synthetic_faults`); without it
    they come from the URL's query, e.g. `synthetic://?faults=gaps=0.001,duplicates=0.0005`.
    """

    def __init__(
        self, scale: float = 0.002, url: str = "synthetic://", faults: FaultRates | None = None
    ) -> None:
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"synthetic://: scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.url = url
        if faults is None and "?" in url:
            # Imported here and below: synthetic_faults builds on this module.
            from rlx_assets.lake.synthetic_faults import FaultRates

            faults = FaultRates.from_url(url)
        self.faults = faults if faults is not None and faults.any() else None

    def read_day(self, table: str, exchange: str, symbol: str, day: dt.date) -> DayFiles:
        """The rows of `table` a collector files under `dt=day`: those received that UTC day."""
        day = _as_date(day)
        uri = (
            f"synthetic://{table}/exchange={exchange}/symbol={symbol}/dt={day}/part-0.parquet"
            f"?scale={self.scale!r}"
        )
        if self.faults is not None:
            uri += f"&faults={self.faults}"
        if table not in schema.SCHEMAS:
            raise schema.SourceSchemaError(
                f"{uri}: unknown table {table!r} (expected one of {schema.TABLES})"
            )
        start = _day_start_ns(day)
        parts = [
            _received_between(self._origin_tables(exchange, symbol, origin)[table], start)
            for origin in self._origin_days(day)
        ]
        if self.faults is not None:
            parts += self._copies_filed_under(table, exchange, symbol, day)
        rows = pa.concat_tables(parts)
        key = _sort_key(table)
        if not _in_receive_order(rows, key):
            rows = rows.sort_by([("received_time", "ascending"), (key, "ascending")])
        file = SourceFile(
            uri=uri, size=rows.nbytes, etag=None, sha256=ipc_sha256(rows.schema, [rows])
        )
        return DayFiles(files=[file], tables=[rows])

    def open_day(
        self, table: str, exchange: str, symbol: str, day: dt.date, whole: bool
    ) -> list[TableSource]:
        """`read_day` as readers (the simulator makes a day's rows in memory anyway)."""
        found = self.read_day(table, exchange, symbol, day)
        return [TableSource(f, t, table) for f, t in zip(found.files, found.tables, strict=True)]

    def typical_prices(self, table: str, exchange: str, symbol: str, day: dt.date) -> list[float]:
        """None to compare: the simulator makes each symbol's files itself."""
        return []

    def _origin_tables(self, exchange: str, symbol: str, day: dt.date) -> dict[str, pa.Table]:
        """The rows of one origin day, with the lake's faults injected (before filing)."""
        if self.faults is None:
            return generate_origin_day(exchange, symbol, day, self.scale)
        from rlx_assets.lake.synthetic_faults import faulty_origin_day

        return faulty_origin_day(exchange, symbol, day, self.scale, self.faults).tables

    def _copies_filed_under(
        self, table: str, exchange: str, symbol: str, day: dt.date
    ) -> list[pa.Table]:
        """Duplicate rows (a fault) filed under `day` although received across a midnight."""
        from rlx_assets.lake.synthetic_faults import faulty_origin_day

        return [
            faulty_origin_day(exchange, symbol, origin, self.scale, self.faults).copies_filed_under(
                table, _day_start_ns(day)
            )
            for origin in self._origin_days(day)
        ]

    def _origin_days(self, day: dt.date) -> list[dt.date]:
        """Origin days whose rows can be received on `day`, from the bounds of the receive delay.

        The clean clock only runs late (by under a second), so that is the day and the one
        before; a clock running early or copies filed across midnight (faults) bring in the next
        one as well.
        """
        one = dt.timedelta(days=1)
        days = [day]
        if _DELAY_MAX_NS > 0:
            days.insert(0, day - one)
        if _DELAY_MIN_NS < 0 or (self.faults is not None and self.faults.files_into_previous_dt()):
            days.append(day + one)
        return days
