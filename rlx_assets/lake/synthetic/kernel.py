"""Numba kernel of the synthetic market: one day of a full-depth book, message by message.

Pure numeric code (no I/O, no Arrow). The caller plans the day in numpy (message times, target
best prices, row and fill counts) and this kernel turns the plan into exchange messages: it keeps
the true book in dense per-tick arrays, applies fills, tracking moves and random order flow, and
writes every changed level as a delta row, the top 20 levels where a snapshot is due, and every
fill. Because rows are written from the very arrays that hold the book, replaying the rows
reproduces the snapshots exactly.

Prices are integer ticks, sizes integer lots. Randomness is a private splitmix64 stream seeded by
the caller, so the output depends on nothing but the arguments (not on numba's global RNG).

One file, over 450 lines: the kernel and the numba helpers it inlines share one parameter
layout (the `P_*` slots) and one loop; split, neither half reads on its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BID = 0
ASK = 1
LEVELS = 20

# Slots of the `state` array: best and farthest occupied index and level count, per side.
BEST = 0  # + side
FAR = 2  # + side
COUNT = 4  # + side

# Slots of the float parameter array `prm` (built by `market.kernel_params`).
P_XMAX = 0  # ticks from the best within which order flow lands
P_GAP = 1  # mean distance between levels (ticks)
P_RHO_TOP = 2  # chance that a tick uncovered by a price move gets a new level
P_TARGET_LEVELS = 3  # levels per side the order flow steers towards
P_NEAR_SHARE = 4  # share of order flow right at the top (within a few gaps)
P_DEPTH_POWER = 5  # distance = xmax * u**power for the rest: most flow near the top
P_MODIFY = 6  # share of touches that change the size of an existing level
P_LVL_W_SMALL = 7  # resting sizes: lognormal mixture (log lots), weight of the small part
P_LVL_MU_SMALL = 8
P_LVL_SIG_SMALL = 9
P_LVL_MU_LARGE = 10
P_LVL_SIG_LARGE = 11
P_LVL_TOP_BOOST = 12  # resting size multiplier at the best, decaying over ~3 gaps
P_ORD_W_SMALL = 13  # aggressive order sizes: lognormal mixture plus a Pareto tail
P_ORD_MU_SMALL = 14
P_ORD_SIG_SMALL = 15
P_ORD_MU_LARGE = 16
P_ORD_SIG_LARGE = 17
P_ORD_W_PARETO = 18
P_ORD_PARETO_MIN = 19  # log lots
P_ORD_PARETO_ALPHA = 20
P_CHUNK_MU = 21  # one maker order inside a level (log lots): a fill is at most one of them
P_CHUNK_SIG = 22
P_FOLLOW = 23  # chance that fills go the way the price moves
P_CANCEL_BEST = 24  # chance that a cancel drawn at the best level really pulls it
N_PARAMS = 25

_MAX_LOG_LOTS = 40.0  # keeps exp() far from int64 overflow
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True)
def _next(rng: np.ndarray) -> np.uint64:
    """splitmix64: tiny, fast, and the same on every platform."""
    rng[0] += _GOLDEN
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform(rng: np.ndarray) -> float:
    """Uniform in [0, 1) with 53 random bits."""
    return float(_next(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(rng: np.ndarray) -> float:
    u1 = 1.0 - _uniform(rng)  # (0, 1]: log() stays finite
    u2 = _uniform(rng)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def _int_between(rng: np.ndarray, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return lo + int(_uniform(rng) * (hi - lo + 1))


@njit(cache=True)
def _lots(log_lots: float) -> int:
    return max(1, int(np.exp(min(log_lots, _MAX_LOG_LOTS))))


@njit(cache=True)
def _level_lots(rng: np.ndarray, prm: np.ndarray, distance: float) -> int:
    """Size of a new resting level `distance` ticks behind the best; the top is thicker."""
    if _uniform(rng) < prm[P_LVL_W_SMALL]:
        log_lots = prm[P_LVL_MU_SMALL] + prm[P_LVL_SIG_SMALL] * _normal(rng)
    else:
        log_lots = prm[P_LVL_MU_LARGE] + prm[P_LVL_SIG_LARGE] * _normal(rng)
    boost = 1.0 + prm[P_LVL_TOP_BOOST] * np.exp(-distance / (3.0 * prm[P_GAP]))
    return _lots(log_lots + np.log(boost))


@njit(cache=True)
def _order_lots(rng: np.ndarray, prm: np.ndarray) -> int:
    """Heavy-tailed aggressive order size: small retail, larger lognormal, Pareto tail."""
    u = _uniform(rng)
    if u < prm[P_ORD_W_PARETO]:
        tail = -np.log(1.0 - _uniform(rng)) / prm[P_ORD_PARETO_ALPHA]
        return _lots(prm[P_ORD_PARETO_MIN] + tail)
    if u < prm[P_ORD_W_PARETO] + prm[P_ORD_W_SMALL]:
        return _lots(prm[P_ORD_MU_SMALL] + prm[P_ORD_SIG_SMALL] * _normal(rng))
    return _lots(prm[P_ORD_MU_LARGE] + prm[P_ORD_SIG_LARGE] * _normal(rng))


@njit(cache=True)
def _deeper(side: int) -> int:
    """Index step away from the top: bids go down, asks go up."""
    return -1 if side == BID else 1


@njit(cache=True)
def _new_book(n_cells: int):
    """The book and its per-message bookkeeping, as one tuple the helpers share.

    sizes[side, i]: lots at tick lo + i; state: best/far/count per side; stamp[side, i]: last
    message that touched the level, before[side, i]: its size before that message, touched/
    ntouched: the levels touched by the current message; traded[side, i]: last message that
    filled against the level (order flow leaves it alone for that message).
    """
    sizes = np.zeros((2, n_cells), dtype=np.int64)
    state = np.full(6, -1, dtype=np.int64)
    state[COUNT + BID] = 0
    state[COUNT + ASK] = 0
    stamp = np.full((2, n_cells), -1, dtype=np.int64)
    before = np.zeros((2, n_cells), dtype=np.int64)
    touched = np.empty((2, n_cells), dtype=np.int64)
    ntouched = np.zeros(2, dtype=np.int64)
    traded = np.full((2, n_cells), -1, dtype=np.int64)
    return sizes, state, stamp, before, touched, ntouched, traded


@njit(cache=True)
def _set(book, side: int, idx: int, new: int, msg: int) -> None:
    """Set one level's size, remembering it as touched by message `msg`; keep best/far/count."""
    sizes, state, stamp, before, touched, ntouched, _ = book
    if stamp[side, idx] != msg:
        stamp[side, idx] = msg
        before[side, idx] = sizes[side, idx]
        touched[side, ntouched[side]] = idx
        ntouched[side] += 1
    old = sizes[side, idx]
    sizes[side, idx] = new
    step = _deeper(side)
    if old == 0 and new > 0:
        state[COUNT + side] += 1
        if state[BEST + side] < 0:
            state[BEST + side] = idx
            state[FAR + side] = idx
        else:
            if (idx - state[BEST + side]) * step < 0:
                state[BEST + side] = idx
            if (idx - state[FAR + side]) * step > 0:
                state[FAR + side] = idx
    elif old > 0 and new == 0:
        state[COUNT + side] -= 1
        if state[COUNT + side] == 0:
            state[BEST + side] = -1
            state[FAR + side] = -1
            return
        # The other levels all lie deeper than the best and above the far end: scans stop.
        if idx == state[BEST + side]:
            j = idx + step
            while sizes[side, j] == 0:
                j += step
            state[BEST + side] = j
        if idx == state[FAR + side]:
            j = idx - step
            while sizes[side, j] == 0:
                j -= step
            state[FAR + side] = j


@njit(cache=True)
def _fills(book, rng, prm, msg, n_fills, direction, buy, lo, trades, n_tr) -> tuple[int, int, bool]:
    """Aggressive orders eat the best level of the other side, one maker order per fill.

    Returns (fills written, orders, side of the last order); fill k of this message belongs
    to order trades[4][n_tr + k].
    """
    sizes, state, _, _, _, _, traded = book
    _, tr_buy, tr_tick, tr_lots, tr_order = trades
    n_cells = sizes.shape[1]
    gap = prm[P_GAP]
    orders = 0
    done = 0
    while done < n_fills:
        u = _uniform(rng)
        if direction > 0:
            buy = u < prm[P_FOLLOW]
        elif direction < 0:
            buy = u >= prm[P_FOLLOW]
        else:
            buy = buy if u < 0.6 else not buy
        side = ASK if buy else BID
        want = _order_lots(rng, prm)
        while want > 0 and done < n_fills:
            if state[COUNT + side] <= 2:
                # Never let a side run dry: a new level appears behind the last one.
                far = state[FAR + side] + _deeper(side) * max(1, int(gap))
                if 0 <= far < n_cells:
                    _set(book, side, far, _level_lots(rng, prm, 10.0 * gap), msg)
            idx = state[BEST + side]
            resting = sizes[side, idx]
            qty = min(want, resting, _lots(prm[P_CHUNK_MU] + prm[P_CHUNK_SIG] * _normal(rng)))
            k = n_tr + done
            tr_order[k] = orders
            tr_buy[k] = buy
            tr_tick[k] = idx + lo
            tr_lots[k] = qty
            traded[side, idx] = msg
            _set(book, side, idx, resting - qty, msg)
            want -= qty
            done += 1
        orders += 1
    return done, orders, buy


@njit(cache=True)
def _fill_times(rng, trades, first: int, n: int, orders: int, lo_ms: int, hi_ms: int) -> None:
    """One time per aggressive order, in order; its fills share it (as on Binance)."""
    times = np.empty(orders, dtype=np.int64)
    for k in range(orders):
        times[k] = _int_between(rng, lo_ms, hi_ms)
    times = np.sort(times)
    tr_time, _, _, _, tr_order = trades
    for k in range(first, first + n):
        tr_time[k] = times[tr_order[k]]


@njit(cache=True)
def _set_all(book, anchor, lo: int, msg: int) -> None:
    """Set every level of an anchor book (bid ticks, bid lots, ask ticks, ask lots)."""
    bid_ticks, bid_lots, ask_ticks, ask_lots = anchor
    for k in range(bid_ticks.shape[0]):
        _set(book, BID, bid_ticks[k] - lo, bid_lots[k], msg)
    for k in range(ask_ticks.shape[0]):
        _set(book, ASK, ask_ticks[k] - lo, ask_lots[k], msg)


@njit(cache=True)
def _reconcile(book, anchor, lo: int, msg: int) -> None:
    """The book becomes exactly `anchor`: every other level removed, every anchor level set."""
    sizes = book[0]
    n_cells = sizes.shape[1]
    keep = np.zeros((2, n_cells), dtype=np.bool_)
    for side, ticks in ((BID, anchor[0]), (ASK, anchor[2])):
        for k in range(ticks.shape[0]):
            keep[side, ticks[k] - lo] = True
    for side in range(2):
        for idx in range(n_cells):
            if sizes[side, idx] > 0 and not keep[side, idx]:
                _set(book, side, idx, 0, msg)
    _set_all(book, anchor, lo, msg)


@njit(cache=True)
def _track(book, rng, prm, msg: int, bid: int, ask: int) -> None:
    """Move the top to the target (bid, ask) and keep both sides about as deep as before.

    The side the top moves into loses the levels it jumped over and gets as many new ones at
    its deep end; the side it moves away from gets new levels in the uncovered ticks, and
    withdraws what is now farther than the depth window.
    """
    sizes, state = book[0], book[1]
    n_cells = sizes.shape[1]
    xmax = int(prm[P_XMAX])
    old_bid = state[BEST + BID]
    old_ask = state[BEST + ASK]
    cleared = np.zeros(2, dtype=np.int64)
    while 0 <= state[BEST + ASK] < ask:
        _set(book, ASK, state[BEST + ASK], 0, msg)
        cleared[ASK] += 1
    while state[BEST + BID] > bid:
        _set(book, BID, state[BEST + BID], 0, msg)
        cleared[BID] += 1
    if sizes[ASK, ask] == 0:
        _set(book, ASK, ask, _level_lots(rng, prm, 0.0), msg)
    if sizes[BID, bid] == 0:
        _set(book, BID, bid, _level_lots(rng, prm, 0.0), msg)
    for side in range(2):
        step = _deeper(side)
        idx = state[FAR + side]
        for _ in range(cleared[side]):
            idx += step * max(1, int(-np.log(1.0 - _uniform(rng)) * prm[P_GAP] + 0.5))
            distance = (idx - state[BEST + side]) * step
            if distance >= xmax or idx < 0 or idx >= n_cells:
                break
            _set(book, side, idx, _level_lots(rng, prm, float(distance)), msg)
    # Liquidity follows the move into the ticks the top just uncovered.
    if old_bid >= 0:
        for idx in range(max(old_bid + 1, bid - xmax), bid):
            if _uniform(rng) < prm[P_RHO_TOP]:
                _set(book, BID, idx, _level_lots(rng, prm, float(bid - idx)), msg)
    if old_ask >= 0:
        for idx in range(ask + 1, min(old_ask, ask + xmax)):
            if _uniform(rng) < prm[P_RHO_TOP]:
                _set(book, ASK, idx, _level_lots(rng, prm, float(idx - ask)), msg)
    # Levels the price left far behind are withdrawn.
    for side in range(2):
        while (
            state[COUNT + side] > 2
            and (state[FAR + side] - state[BEST + side]) * _deeper(side) > xmax
        ):
            _set(book, side, state[FAR + side], 0, msg)


@njit(cache=True)
def _order_flow(book, rng, prm, msg: int, rows_wanted: int, lo: int) -> None:
    """Adds, cancels and resizes, most near the top, until the message has `rows_wanted` rows."""
    sizes, state, _, before, touched, ntouched, traded = book
    n_cells = sizes.shape[1]
    xmax = int(prm[P_XMAX])
    attempts = 0
    while ntouched[0] + ntouched[1] < rows_wanted and attempts < 3 * rows_wanted + 10:
        attempts += 1
        side = BID if _uniform(rng) < 0.5 else ASK
        step = _deeper(side)
        best = state[BEST + side]
        if _uniform(rng) < prm[P_NEAR_SHARE]:
            distance = int(-np.log(1.0 - _uniform(rng)) * 2.0 * prm[P_GAP])
        else:
            distance = int(xmax * _uniform(rng) ** prm[P_DEPTH_POWER])
        distance = min(distance, xmax - 1)
        idx = best + step * distance
        if idx < 0 or idx >= n_cells:
            continue
        action = _uniform(rng)
        remove = False
        if action >= prm[P_MODIFY]:
            # Add or cancel, steering the level count towards its target.
            drift = (prm[P_TARGET_LEVELS] - state[COUNT + side]) / prm[P_TARGET_LEVELS]
            p_add = min(0.95, max(0.05, 0.5 + 2.0 * drift))
            if (action - prm[P_MODIFY]) / (1.0 - prm[P_MODIFY]) < p_add:
                if lo + idx >= 1 and traded[side, idx] != msg:
                    new = sizes[side, idx] + _level_lots(rng, prm, float(distance))
                    _set(book, side, idx, new, msg)
                continue
            remove = True
        # Cancel or resize: the nearest existing level at or behind the drawn price.
        j = idx
        if (j - state[FAR + side]) * step > 0:
            j = state[FAR + side]
        while j != state[FAR + side] and sizes[side, j] == 0:
            j += step
        if sizes[side, j] == 0 or traded[side, j] == msg:
            continue
        if remove and j == best and _uniform(rng) >= prm[P_CANCEL_BEST]:
            remove = False  # the best level is defended: mostly resized, rarely pulled
        if not remove:
            _set(book, side, j, _level_lots(rng, prm, float((j - best) * step)), msg)
        elif state[COUNT + side] > 2:
            _set(book, side, j, 0, msg)

    rows = 0
    for side in range(2):
        for k in range(ntouched[side]):
            idx = touched[side, k]
            rows += before[side, idx] > 0 or sizes[side, idx] > 0
    if rows == 0:
        # A message always changes something: the best bid is resized.
        idx = state[BEST + BID]
        _set(book, BID, idx, sizes[BID, idx] + 1, msg)


@njit(cache=True)
def _snapshot(book, k: int, snap_idx: np.ndarray, snap_lots: np.ndarray, lo: int) -> None:
    """Top `LEVELS` levels of both sides, best first, into row `k` (tick -1 where absent)."""
    sizes, state = book[0], book[1]
    for side in range(2):
        step = _deeper(side)
        idx = state[BEST + side]
        n = 0
        while idx >= 0 and n < LEVELS:
            if sizes[side, idx] > 0:
                snap_idx[k, side, n] = idx + lo
                snap_lots[k, side, n] = sizes[side, idx]
                n += 1
            if idx == state[FAR + side]:
                break
            idx += step
        while n < LEVELS:
            snap_idx[k, side, n] = -1
            snap_lots[k, side, n] = 0
            n += 1


@njit(cache=True)
def _publish(book, msg: int, lo: int, rows, n_rows: int) -> int:
    """One row per changed level, bids best first, then asks; returns the new row count or -1.

    A level that was empty and is empty again (added and pulled within the message) is left
    out, as in clean exchange data.
    """
    sizes, _, _, before, touched, ntouched, _ = book
    row_msg, row_bid, row_tick, row_lots = rows
    for side in range(2):
        n = ntouched[side]
        order = np.sort(touched[side, :n])
        for k in range(n):
            idx = order[n - 1 - k] if side == BID else order[k]
            if before[side, idx] == 0 and sizes[side, idx] == 0:
                continue
            if n_rows >= row_msg.shape[0]:
                return -1
            row_msg[n_rows] = msg
            row_bid[n_rows] = side == BID
            row_tick[n_rows] = idx + lo
            row_lots[n_rows] = sizes[side, idx]
            n_rows += 1
        ntouched[side] = 0
    return n_rows


@njit(cache=True)
def snapshot_mask(t_ms: np.ndarray, last_index: int) -> np.ndarray:
    """Vendor snapshots: the first message at least 100 ms after the previous snapshot.

    Message 0 (the opening burst) always has one; `last_index` (the closing reconciliation, 1 ms
    before midnight) never does, so the next day's opening snapshot stays 100 ms away.
    """
    mask = np.zeros(t_ms.shape[0], dtype=np.bool_)
    mask[0] = True
    last = t_ms[0]
    for j in range(1, t_ms.shape[0]):
        if j != last_index and t_ms[j] >= last + 100:
            mask[j] = True
            last = t_ms[j]
    return mask


@njit(cache=True)
def simulate_day(lo: int, n_cells: int, plan, open_book, close_book, prm, seed, row_capacity: int):
    """Run one origin day. Message 0 is the opening burst, the last one the reconciliation.

    plan = (t_ms, fill_lo_ms, target_bid, target_ask, direction, rows_wanted, fills, snap), one
    entry per message; open_book/close_book = (bid ticks, bid lots, ask ticks, ask lots), best
    first. All prices in and out are absolute ticks; the book covers ticks [lo, lo + n_cells).
    Returns (n_rows, rows, trades, snapshots) with the row buffers at full capacity; n_rows -1
    means `row_capacity` was too small (the caller retries with more: the day does not depend
    on the capacity).
    """
    t_ms, fill_lo_ms, target_bid, target_ask, direction, rows_wanted, fills, snap = plan
    n_msgs = t_ms.shape[0]
    rng = np.empty(1, dtype=np.uint64)
    rng[0] = seed
    book = _new_book(n_cells)

    rows = (
        np.empty(row_capacity, dtype=np.int64),  # message index
        np.empty(row_capacity, dtype=np.bool_),  # side is bid
        np.empty(row_capacity, dtype=np.int64),  # tick
        np.empty(row_capacity, dtype=np.int64),  # lots
    )
    n_rows = 0
    n_fills = int(fills.sum())
    trades = (
        np.empty(n_fills, dtype=np.int64),  # time (ms since midnight)
        np.empty(n_fills, dtype=np.bool_),  # aggressor buys
        np.empty(n_fills, dtype=np.int64),  # tick
        np.empty(n_fills, dtype=np.int64),  # lots
        np.empty(n_fills, dtype=np.int64),  # order within its message (scratch)
    )
    n_tr = 0
    planned = 0  # rows planned for the intraday messages so far
    n_open = 0  # rows of the opening burst
    n_snaps = int(snap.sum())
    snap_msg = np.empty(n_snaps, dtype=np.int64)
    snap_tick = np.empty((n_snaps, 2, LEVELS), dtype=np.int64)
    snap_lots = np.empty((n_snaps, 2, LEVELS), dtype=np.int64)
    n_snap = 0
    buy = True

    for msg in range(n_msgs):
        done, orders, buy = _fills(
            book, rng, prm, msg, fills[msg], direction[msg], buy, lo, trades, n_tr
        )
        if orders > 0:
            _fill_times(rng, trades, n_tr, done, orders, fill_lo_ms[msg], t_ms[msg])
        n_tr += done

        if msg == 0:
            _set_all(book, open_book, lo, msg)  # the collector's REST snapshot at 00:00
        elif msg == n_msgs - 1:
            _reconcile(book, close_book, lo, msg)  # 1 ms before midnight: tomorrow's open
        else:
            _track(book, rng, prm, msg, target_bid[msg] - lo, target_ask[msg] - lo)
            # Rows forced by big price moves (mostly at small scales) are paid back out of
            # later order flow, so the day's row count stays close to plan.
            excess = max(0, n_rows - n_open - planned)
            _order_flow(book, rng, prm, msg, max(1, rows_wanted[msg] - excess), lo)
            planned += rows_wanted[msg]

        if snap[msg]:
            snap_msg[n_snap] = msg
            _snapshot(book, n_snap, snap_tick, snap_lots, lo)
            n_snap += 1
        n_rows = _publish(book, msg, lo, rows, n_rows)
        if n_rows < 0:
            break
        if msg == 0:
            n_open = n_rows
    return n_rows, rows, trades[:4], (snap_msg, snap_tick, snap_lots)
