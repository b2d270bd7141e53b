"""`synthetic://`: the embedded default lake, a deterministic market simulator.

It produces the three Crypto Lake tables (`trades`, `book`, `book_delta_v2`) in exactly the
normalized schemas of `schema.SCHEMAS`, consistent with each other:

- Every origin day opens at 00:00:00 with one message that is the whole book (a collector's REST
  snapshot), so a cold start works. The opening book of a day is its *anchor*: a full-depth book
  generated from the seed of that date alone, around a mid price that follows a slow seeded walk
  across dates.
- Intraday, the top of the book follows a Brownian bridge from today's anchor mid to tomorrow's;
  a numba kernel (`kernel.py`) keeps the true book and publishes every change as delta
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

import numpy as np

from rlx_assets.lake.synthetic import kernel

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
FIRST_FILL_MS = 50
_CLOSE_MS = DAY_MS - 1  # the reconciliation message

# Receive delay = the collector's clock offset (4 +- 3 ms, drifting) + network latency (lognormal
# around 2 ms, capped). The caps keep received_time increasing across midnight too (see
# `FIRST_FILL_MS`) and bound which neighbouring origin days can land in a `dt`.
_CLOCK_OFFSET_MS = 4.0
_CLOCK_SLOW_MS = 2.0  # amplitude of a ~7.3 h swing
_CLOCK_FAST_MS = 1.0  # amplitude of a ~53 min swing
_LATENCY_MEDIAN_MS = 2.0
_LATENCY_SIGMA = 0.6
_LATENCY_MIN_MS = 0.3
_LATENCY_MAX_MS = 40.0
DELAY_MIN_NS = int(1e6 * (_CLOCK_OFFSET_MS - _CLOCK_SLOW_MS - _CLOCK_FAST_MS + _LATENCY_MIN_MS))
DELAY_MAX_NS = int(1e6 * (_CLOCK_OFFSET_MS + _CLOCK_SLOW_MS + _CLOCK_FAST_MS + _LATENCY_MAX_MS))

# Order flow per message: lognormal rows (median and spread from real Binance depth messages).
ROWS_SIGMA = 1.2
ROWS_MEDIAN = 22.0
FILLS_SIGMA = 0.7
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
    price = round(10 ** (3 * unit("price", symbol)), 4)
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


def seed_of(*parts: object) -> int:
    """64-bit seed from SHA-256 of the parts: stable across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seeded_rng(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed_of(*parts)))


def unit(*parts: object) -> float:
    """A seeded number in [0, 1)."""
    return seed_of(*parts) / 2.0**64


def _day_index(day: dt.date) -> int:
    index = (day - EPOCH).days
    if not 0 <= index < _WALK_DAYS - 1:
        last = EPOCH + dt.timedelta(days=_WALK_DAYS - 2)
        raise ValueError(f"synthetic://: {day} is outside the simulated dates {EPOCH} .. {last}")
    return index


def day_start_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_NS


def as_date(day: dt.date) -> dt.date:
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
    shocks = seeded_rng("walk", symbol).standard_normal(_WALK_DAYS)
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
def day_anchor(exchange: str, symbol: str, day: dt.date) -> _Anchor:
    """Full-depth book at 00:00 of `day`, from the seed of that date alone."""
    inst = instrument(symbol)
    price = inst.price * math.exp(_log_price_walk(symbol)[_day_index(day)])
    mid = price / inst.tick
    rng = seeded_rng("anchor", exchange, symbol, day)
    best_bid = max(1, round(mid - inst.spread_ticks / 2))
    best_ask = best_bid + inst.spread_ticks
    params = kernel_params(inst, price)
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
    latency = _clock_offset_ns(exchange, np.array([day_start_ns(day)]))[0]
    latency += _latency_ns(rng, 1)[0]
    return _Anchor(*sides, latency_ns=int(latency))


def first_trade_id(exchange: str, symbol: str, day: dt.date, scale: float) -> int:
    """First trade id of an origin day; the next day's first id minus this one is its count."""
    jitter = 0.1 * unit("trades", exchange, symbol, day)  # +-10 % trades from day to day
    return _FIRST_TRADE_ID + math.floor(TRADES_PER_DAY * scale * (_day_index(day) + jitter))


def first_sequence(exchange: str, symbol: str, day: dt.date, scale: float) -> int:
    """Sequence number of an origin day's opening burst; the day's messages stay below the next."""
    per_day = _SEQUENCE_PER_MESSAGE * MESSAGES_PER_DAY * scale
    jitter = 0.1 * unit("sequence", exchange, symbol, day)
    index = _day_index(day)
    # The 10_000 per day keeps room for a few messages even at tiny scales.
    return _FIRST_SEQUENCE + 10_000 * index + math.floor(per_day * (index + jitter))


# --- Receive clock ---------------------------------------------------------------------------


def _clock_offset_ns(exchange: str, origin_ns: np.ndarray) -> np.ndarray:
    """The collector's clock error: a few ms, drifting slowly and continuously across days."""
    seconds = origin_ns / 1e9
    phase1 = 2 * math.pi * unit("clock", exchange, 1)
    phase2 = 2 * math.pi * unit("clock", exchange, 2)
    slow = np.sin(2 * math.pi * seconds / 26_280 + phase1)
    fast = np.sin(2 * math.pi * seconds / 3_180 + phase2)
    return 1e6 * (_CLOCK_OFFSET_MS + _CLOCK_SLOW_MS * slow + _CLOCK_FAST_MS * fast)


def _latency_ns(rng: np.random.Generator, n: int) -> np.ndarray:
    latency_ms = _LATENCY_MEDIAN_MS * np.exp(_LATENCY_SIGMA * rng.standard_normal(n))
    return 1e6 * np.clip(latency_ms, _LATENCY_MIN_MS, _LATENCY_MAX_MS)


def delays_ns(exchange: str, origin_ns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """received - origin before ordering: the clock offset plus network latency."""
    delay = _clock_offset_ns(exchange, origin_ns) + _latency_ns(rng, origin_ns.shape[0])
    return delay.astype(np.int64)


def received_ns(origin_ns: np.ndarray, delay_ns: np.ndarray) -> np.ndarray:
    """origin + delay, never earlier than the previous row: one socket delivers in order."""
    return np.maximum.accumulate(origin_ns + delay_ns)


# --- Sizes -----------------------------------------------------------------------------------


def kernel_params(inst: Instrument, price: float) -> np.ndarray:
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


def intraday_activity(exchange: str, symbol: str, day: dt.date) -> np.ndarray:
    """Per-second trading intensity, mean 1: seasonality, regimes, decaying news bursts."""
    rng = seeded_rng("activity", exchange, symbol, day)
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


def message_times(activity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
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


def price_path(
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


def sequence_steps(rows_per_msg: np.ndarray, room: int, rng: np.random.Generator) -> np.ndarray:
    """Offsets of each message's sequence number from the day's first, all below `room`.

    Steps grow with the message's rows (update ids count events) and jitter; they are scaled
    so the last step, into tomorrow's first sequence number, still has room.
    """
    n = rows_per_msg.shape[0]
    weight = (rows_per_msg[1:] + 1.0) * np.exp(0.5 * rng.standard_normal(n - 1))
    weight = np.concatenate([weight, [weight.mean()]])  # the step into tomorrow
    steps = 1 + np.floor(weight / weight.sum() * (room - n)).astype(np.int64)
    return np.concatenate([[0], np.cumsum(steps[:-1])])


# --- The lake --------------------------------------------------------------------------------
