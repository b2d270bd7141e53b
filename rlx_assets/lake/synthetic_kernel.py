"""Numba kernel of the synthetic market: one day of a full-depth book, message by message.

Pure numeric code (no I/O, no Arrow). The caller plans the day in numpy (message times, target
best prices, row and fill counts) and this kernel turns the plan into exchange messages: it keeps
the true book in dense per-tick arrays, applies fills, tracking moves and random order flow, and
writes every changed level as a delta row, the top 20 levels where a snapshot is due, and every
fill. Because rows are written from the very arrays that hold the book, replaying the rows
reproduces the snapshots exactly.

Prices are integer ticks, sizes integer lots. Randomness is a private splitmix64 stream seeded by
the caller, so the output depends on nothing but the arguments (not on numba's global RNG).
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

# Slots of the float parameter array `prm` (built by `synthetic.py`).
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
N_PARAMS = 24

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
def _set(
    sizes: np.ndarray,
    state: np.ndarray,
    stamp: np.ndarray,
    before: np.ndarray,
    touched: np.ndarray,
    ntouched: np.ndarray,
    side: int,
    idx: int,
    new: int,
    msg: int,
) -> None:
    """Set one level's size, remembering it as touched by message `msg`; keep best/far/count."""
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
def _emittable(sizes: np.ndarray, before: np.ndarray, touched: np.ndarray, ntouched: np.ndarray):
    """Touched levels that make a row: all but those that were empty and are empty again."""
    n = 0
    for side in range(2):
        for k in range(ntouched[side]):
            idx = touched[side, k]
            if before[side, idx] > 0 or sizes[side, idx] > 0:
                n += 1
    return n


@njit(cache=True)
def _snapshot(sizes: np.ndarray, state: np.ndarray, k: int, snap_idx: np.ndarray, snap_lots):
    """Top `LEVELS` levels of both sides, best first, into row `k` (index -1 where absent)."""
    for side in range(2):
        step = _deeper(side)
        idx = state[BEST + side]
        n = 0
        while idx >= 0 and n < LEVELS:
            if sizes[side, idx] > 0:
                snap_idx[k, side, n] = idx
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
def simulate_day(
    lo: int,
    n_cells: int,
    t_ms: np.ndarray,
    fill_lo_ms: np.ndarray,
    target_bid: np.ndarray,
    target_ask: np.ndarray,
    direction: np.ndarray,
    rows_wanted: np.ndarray,
    fills: np.ndarray,
    snap: np.ndarray,
    open_bid: np.ndarray,
    open_bid_lots: np.ndarray,
    open_ask: np.ndarray,
    open_ask_lots: np.ndarray,
    close_bid: np.ndarray,
    close_bid_lots: np.ndarray,
    close_ask: np.ndarray,
    close_ask_lots: np.ndarray,
    prm: np.ndarray,
    seed: np.uint64,
    row_capacity: int,
):
    """Run one origin day. Message 0 is the opening burst, the last one the reconciliation.

    All prices in and out are absolute ticks; the book arrays cover ticks [lo, lo + n_cells).
    Returns (n_rows, rows..., trades..., snapshots...) with the row buffers still at full
    capacity; n_rows -1 means `row_capacity` was too small (the caller retries with more; the
    result does not depend on the capacity).
    """
    n_msgs = t_ms.shape[0]
    last = n_msgs - 1
    rng = np.empty(1, dtype=np.uint64)
    rng[0] = seed

    sizes = np.zeros((2, n_cells), dtype=np.int64)
    stamp = np.full((2, n_cells), -1, dtype=np.int64)
    traded = np.full((2, n_cells), -1, dtype=np.int64)
    before = np.zeros((2, n_cells), dtype=np.int64)
    touched = np.empty((2, n_cells), dtype=np.int64)
    ntouched = np.zeros(2, dtype=np.int64)
    state = np.full(6, -1, dtype=np.int64)
    state[COUNT + BID] = 0
    state[COUNT + ASK] = 0

    row_msg = np.empty(row_capacity, dtype=np.int64)
    row_bid = np.empty(row_capacity, dtype=np.bool_)
    row_tick = np.empty(row_capacity, dtype=np.int64)
    row_lots = np.empty(row_capacity, dtype=np.int64)
    n_rows = 0

    n_fills = int(fills.sum())
    tr_time = np.empty(n_fills, dtype=np.int64)
    tr_buy = np.empty(n_fills, dtype=np.bool_)
    tr_tick = np.empty(n_fills, dtype=np.int64)
    tr_lots = np.empty(n_fills, dtype=np.int64)
    tr_order = np.empty(n_fills, dtype=np.int64)
    n_tr = 0

    n_snaps = int(snap.sum())
    snap_msg = np.empty(n_snaps, dtype=np.int64)
    snap_idx = np.empty((n_snaps, 2, LEVELS), dtype=np.int64)
    snap_lots = np.empty((n_snaps, 2, LEVELS), dtype=np.int64)
    n_snap = 0

    xmax = int(prm[P_XMAX])
    gap = prm[P_GAP]
    target_levels = prm[P_TARGET_LEVELS]
    last_buy = True

    for msg in range(n_msgs):
        # 1. Fills: aggressive orders eat the best level of the other side, one maker at a time.
        first_fill = n_tr
        n_orders = 0
        done = 0
        while done < fills[msg]:
            u = _uniform(rng)
            if direction[msg] > 0:
                buy = u < prm[P_FOLLOW]
            elif direction[msg] < 0:
                buy = u >= prm[P_FOLLOW]
            else:
                buy = last_buy if u < 0.6 else not last_buy
            last_buy = buy
            side = ASK if buy else BID
            want = _order_lots(rng, prm)
            while want > 0 and done < fills[msg]:
                if state[COUNT + side] <= 2:
                    # Never let a side run dry: a new level appears behind the last one.
                    far = state[FAR + side] + _deeper(side) * max(1, int(gap))
                    if 0 <= far < n_cells:
                        _set(
                            sizes,
                            state,
                            stamp,
                            before,
                            touched,
                            ntouched,
                            side,
                            far,
                            _level_lots(rng, prm, 10.0 * gap),
                            msg,
                        )
                idx = state[BEST + side]
                resting = sizes[side, idx]
                chunk = _lots(prm[P_CHUNK_MU] + prm[P_CHUNK_SIG] * _normal(rng))
                qty = min(want, resting, chunk)
                tr_order[n_tr] = n_orders
                tr_buy[n_tr] = buy
                tr_tick[n_tr] = idx + lo
                tr_lots[n_tr] = qty
                n_tr += 1
                traded[side, idx] = msg
                _set(sizes, state, stamp, before, touched, ntouched, side, idx, resting - qty, msg)
                want -= qty
                done += 1
            n_orders += 1
        if n_orders > 0:
            # Each aggressive order has one time; fills of one order share it (as on Binance).
            times = np.empty(n_orders, dtype=np.int64)
            for k in range(n_orders):
                times[k] = _int_between(rng, fill_lo_ms[msg], t_ms[msg])
            times = np.sort(times)
            for k in range(first_fill, n_tr):
                tr_time[k] = times[tr_order[k]]

        if msg == 0:
            # 2a. Opening burst: the whole book, as a collector's REST snapshot at 00:00.
            for k in range(open_bid.shape[0]):
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    BID,
                    open_bid[k] - lo,
                    open_bid_lots[k],
                    msg,
                )
            for k in range(open_ask.shape[0]):
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    ASK,
                    open_ask[k] - lo,
                    open_ask_lots[k],
                    msg,
                )
        elif msg == last:
            # 2b. Reconciliation 1 ms before midnight: the book becomes tomorrow's opening book.
            keep = np.zeros((2, n_cells), dtype=np.bool_)
            for k in range(close_bid.shape[0]):
                keep[BID, close_bid[k] - lo] = True
            for k in range(close_ask.shape[0]):
                keep[ASK, close_ask[k] - lo] = True
            for side in range(2):
                for idx in range(n_cells):
                    if sizes[side, idx] > 0 and not keep[side, idx]:
                        _set(sizes, state, stamp, before, touched, ntouched, side, idx, 0, msg)
            for k in range(close_bid.shape[0]):
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    BID,
                    close_bid[k] - lo,
                    close_bid_lots[k],
                    msg,
                )
            for k in range(close_ask.shape[0]):
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    ASK,
                    close_ask[k] - lo,
                    close_ask_lots[k],
                    msg,
                )
        else:
            # 2c. Track the price path: clear what the new top jumped over, quote the new top.
            tb = target_bid[msg] - lo
            ta = target_ask[msg] - lo
            old_bid = state[BEST + BID]
            old_ask = state[BEST + ASK]
            while 0 <= state[BEST + ASK] < ta:
                _set(sizes, state, stamp, before, touched, ntouched, ASK, state[BEST + ASK], 0, msg)
            while state[BEST + BID] > tb:
                _set(sizes, state, stamp, before, touched, ntouched, BID, state[BEST + BID], 0, msg)
            if sizes[ASK, ta] == 0:
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    ASK,
                    ta,
                    _level_lots(rng, prm, 0.0),
                    msg,
                )
            if sizes[BID, tb] == 0:
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    BID,
                    tb,
                    _level_lots(rng, prm, 0.0),
                    msg,
                )
            # Liquidity follows the move into the ticks the top just uncovered.
            if old_bid >= 0:
                for idx in range(max(old_bid + 1, tb - xmax), tb):
                    if _uniform(rng) < prm[P_RHO_TOP]:
                        _set(
                            sizes,
                            state,
                            stamp,
                            before,
                            touched,
                            ntouched,
                            BID,
                            idx,
                            _level_lots(rng, prm, float(tb - idx)),
                            msg,
                        )
            if old_ask >= 0:
                for idx in range(ta + 1, min(old_ask, ta + xmax)):
                    if _uniform(rng) < prm[P_RHO_TOP]:
                        _set(
                            sizes,
                            state,
                            stamp,
                            before,
                            touched,
                            ntouched,
                            ASK,
                            idx,
                            _level_lots(rng, prm, float(idx - ta)),
                            msg,
                        )

            # 3. Far cancels: levels the price left far behind are withdrawn, a few per message.
            for side in range(2):
                removed = 0
                while (
                    removed < 16
                    and state[COUNT + side] > 2
                    and (state[FAR + side] - state[BEST + side]) * _deeper(side) > xmax
                ):
                    _set(
                        sizes,
                        state,
                        stamp,
                        before,
                        touched,
                        ntouched,
                        side,
                        state[FAR + side],
                        0,
                        msg,
                    )
                    removed += 1

            # 4. Order flow: adds, cancels and size changes, most of them near the top, until
            #    the message has the planned number of rows.
            attempts = 0
            max_attempts = 3 * rows_wanted[msg] + 10
            while ntouched[0] + ntouched[1] < rows_wanted[msg] and attempts < max_attempts:
                attempts += 1
                side = BID if _uniform(rng) < 0.5 else ASK
                step = _deeper(side)
                best = state[BEST + side]
                if _uniform(rng) < prm[P_NEAR_SHARE]:
                    distance = int(-np.log(1.0 - _uniform(rng)) * 2.0 * gap)
                else:
                    distance = int(xmax * _uniform(rng) ** prm[P_DEPTH_POWER])
                distance = min(distance, xmax - 1)
                idx = best + step * distance
                if idx < 0 or idx >= n_cells:
                    continue
                action = _uniform(rng)
                if action >= prm[P_MODIFY]:
                    # Add or cancel, steering the level count towards its target.
                    drift = (target_levels - state[COUNT + side]) / target_levels
                    p_add = min(0.95, max(0.05, 0.5 + 2.0 * drift))
                    if (action - prm[P_MODIFY]) / (1.0 - prm[P_MODIFY]) < p_add:
                        if lo + idx < 1 or traded[side, idx] == msg:
                            continue
                        new = _level_lots(rng, prm, float(distance))
                        _set(
                            sizes,
                            state,
                            stamp,
                            before,
                            touched,
                            ntouched,
                            side,
                            idx,
                            sizes[side, idx] + new,
                            msg,
                        )
                        continue
                    remove = True
                else:
                    remove = False
                # Cancel or resize: the nearest existing level at or behind the drawn price.
                j = idx
                if (j - state[FAR + side]) * step > 0:
                    j = state[FAR + side]
                while j != state[FAR + side] and sizes[side, j] == 0:
                    j += step
                if sizes[side, j] == 0 or traded[side, j] == msg:
                    continue
                if remove:
                    if state[COUNT + side] <= 2:
                        continue
                    _set(sizes, state, stamp, before, touched, ntouched, side, j, 0, msg)
                else:
                    dist_j = float((j - best) * step)
                    _set(
                        sizes,
                        state,
                        stamp,
                        before,
                        touched,
                        ntouched,
                        side,
                        j,
                        _level_lots(rng, prm, dist_j),
                        msg,
                    )

            if _emittable(sizes, before, touched, ntouched) == 0:
                # A message always changes something: the best bid is resized.
                idx = state[BEST + BID]
                _set(
                    sizes,
                    state,
                    stamp,
                    before,
                    touched,
                    ntouched,
                    BID,
                    idx,
                    sizes[BID, idx] + 1,
                    msg,
                )

        # 5. Vendor snapshot of the true book after this message.
        if snap[msg]:
            snap_msg[n_snap] = msg
            _snapshot(sizes, state, n_snap, snap_idx, snap_lots)
            n_snap += 1

        # 6. Publish: one row per changed level, bids best first, then asks best first.
        for side in range(2):
            n = ntouched[side]
            order = np.sort(touched[side, :n])
            for k in range(n):
                idx = order[n - 1 - k] if side == BID else order[k]
                if before[side, idx] == 0 and sizes[side, idx] == 0:
                    continue
                if n_rows >= row_capacity:
                    return (
                        -1,
                        row_msg,
                        row_bid,
                        row_tick,
                        row_lots,
                        tr_time,
                        tr_buy,
                        tr_tick,
                        tr_lots,
                        snap_msg,
                        snap_idx,
                        snap_lots,
                    )
                row_msg[n_rows] = msg
                row_bid[n_rows] = side == BID
                row_tick[n_rows] = idx + lo
                row_lots[n_rows] = sizes[side, idx]
                n_rows += 1
            ntouched[side] = 0

    for k in range(n_snap):
        for side in range(2):
            for n in range(LEVELS):
                if snap_idx[k, side, n] >= 0:
                    snap_idx[k, side, n] += lo
    # Full buffers (the caller slices to n_rows): one return type for both exits.
    return (
        n_rows,
        row_msg,
        row_bid,
        row_tick,
        row_lots,
        tr_time,
        tr_buy,
        tr_tick,
        tr_lots,
        snap_msg,
        snap_idx,
        snap_lots,
    )
