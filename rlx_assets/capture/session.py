"""Capture golden samples from Binance's combined stream, byte for byte.

One WebSocket connection carries `<sym>@trade`, `<sym>@depth@100ms` and `<sym>@bookTicker` of
every symbol; a REST depth snapshot of each symbol is taken after every (re)connect and at the
start of each day's file. Every frame is written untouched, prefixed by its local receive time:
`{"capture_ns":<ns>,` + the frame without its opening brace, which for Binance's
`{"stream":...,"data":...}` frames gives the golden-sample line `{"capture_ns":..,"stream":..,
"data":..}` (`rlx_assets.engine.golden`). A frame that reader would not accept is counted and
skipped, never written. Gaps (see `gaps.py`) are written as `capture@gap` lines and listed in the
run's summary (JSON beside the files).

The connection is re-established with exponential backoff and full jitter. websockets' own
reconnecting iterator does not say when it reconnects nor let the delays be set per call, and the
capture must know the moment a connection drops to record the gap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import connect

from rlx_assets.capture.binance import Market
from rlx_assets.capture.files import DayFiles, FileSummary, day_end_ns, utc_day
from rlx_assets.capture.gaps import Gap, SymbolGaps
from rlx_assets.engine.golden import GAP_STREAM, SNAPSHOT, SNAPSHOT_STREAM, record_row

log = logging.getLogger(__name__)

_KINDS = {"trade": "trade", "depth@100ms": "depth", "bookTicker": "bookTicker"}
_MAX_FRAME_BYTES = 1 << 24
_SNAPSHOT_ATTEMPTS = 5
_REPORTED_MALFORMED = 5  # the first malformed frames are logged (shortened), the rest counted


@dataclass
class CaptureConfig:
    market: Market
    symbols: list[str]  # platform symbols, e.g. BTC-USDT; files are named after them
    directory: Path
    ws_url: str  # base URLs; Binance's paths are appended
    rest_url: str
    key: bytes | None = None  # AES-256 key: files encrypted at rest
    duration_s: float | None = None  # None: until stopped
    depth_limit: int | None = None  # REST snapshot levels; None: the market's deepest
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    flush_interval_s: float = 5.0
    timeout_s: float = 10.0  # WebSocket opening handshake, REST requests
    summary_path: Path | None = None
    clock: Callable[[], int] = time.time_ns  # capture time, ns since the epoch (UTC)


@dataclass
class CaptureSummary:
    market: str
    symbols: list[str]
    started: str
    stopped: str | None = None
    stop_reason: str | None = None
    encrypted: bool = False
    connections: int = 0
    disconnects: int = 0
    failed_connection_attempts: int = 0
    frames: int = 0
    malformed_frames: int = 0
    malformed_reasons: Counter = field(default_factory=Counter)
    unexpected_frames: int = 0  # well-formed but of a stream not subscribed
    snapshots: int = 0
    snapshot_failures: int = 0
    files: list[FileSummary] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        values = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("files", "malformed_reasons")
        }
        values["malformed_reasons"] = dict(self.malformed_reasons)
        values["files"] = [f.as_dict() for f in self.files]
        return values


class _Malformed(ValueError):
    pass


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds")


def _line(capture_ns: int, body: bytes) -> bytes:
    """`body`, a JSON object, as a golden-sample line with `capture_ns` first."""
    body = body.strip()
    if b"\n" in body or b"\r" in body:
        # Only whitespace between tokens can hold a raw line break in JSON: one line per record.
        body = body.replace(b"\r", b" ").replace(b"\n", b" ")
    return b'{"capture_ns":%d,%s\n' % (capture_ns, body[1:])


class Capture:
    """One capture run: `await Capture(config).run(stop)`; `summary` is live while it runs."""

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self.http: httpx.AsyncClient | None = None
        market = config.market
        self.exchange_symbols = {s: market.exchange_symbol(s) for s in config.symbols}
        self.routes: dict[str, tuple[str, str]] = {}
        for symbol, exchange_symbol in self.exchange_symbols.items():
            for name in market.stream_names(exchange_symbol):
                self.routes[name] = (symbol, _KINDS[name.split("@", 1)[1]])
        self.files = {s: DayFiles(config.directory, s, config.key) for s in config.symbols}
        self.gaps = {s: SymbolGaps(market) for s in config.symbols}
        self.summary = CaptureSummary(
            market=market.name,
            symbols=list(config.symbols),
            started=_iso(config.clock()),
            encrypted=config.key is not None,
        )
        self.snapshot_pending: dict[str, asyncio.Task] = {}  # each symbol's snapshot on its way

    # --- files -------------------------------------------------------------------------------

    def _write(self, symbol: str, capture_ns: int, line: bytes, stream: str) -> None:
        files = self.files[symbol]
        day = utc_day(capture_ns)
        if files.day is not None and files.day != day:
            self._close_file(symbol, day_end_ns(files.day) - 1)
        if files.day is None:
            files.open(day)
            if self.summary.connections and symbol not in self.snapshot_pending:
                # Each day's file carries its own snapshot, so it can be read alone.
                self._request_snapshot(symbol)
        files.write(line, stream)

    def _write_gap(self, symbol: str, capture_ns: int, gap: Gap) -> None:
        record = gap.record()
        body = json.dumps({"stream": GAP_STREAM, "data": record}, separators=(",", ":")).encode()
        self._write(symbol, capture_ns, _line(capture_ns, body), GAP_STREAM)
        self.summary.gaps.append({"symbol": symbol, "capture_ns": capture_ns, **record})
        log.warning(
            "%s: gap (%s) exchange time %s..%s, update ids %s..%s",
            symbol,
            gap.reason,
            gap.from_time_ns and _iso(gap.from_time_ns),
            gap.to_time_ns and _iso(gap.to_time_ns),
            gap.from_update_id,
            gap.to_update_id,
        )

    def _close_file(self, symbol: str, capture_ns: int) -> None:
        files = self.files[symbol]
        if files.day is None:
            return
        gap = self.gaps[symbol].file_ends(capture_ns)
        if gap is not None:
            self._write_gap(symbol, min(capture_ns, day_end_ns(files.day) - 1), gap)
        closed = files.close()
        if closed is not None:
            self.summary.files.append(closed)
            log.info("%s: %d lines -> %s", symbol, closed.lines, closed.path)
        self.write_summary()

    def tick(self) -> None:
        """Flush every file; close those whose day has ended (a quiet feed still gets its file
        at midnight)."""
        now = self.config.clock()
        for symbol, files in self.files.items():
            if files.day is not None and utc_day(now) != files.day:
                self._close_file(symbol, now)
            else:
                files.flush()

    def write_summary(self) -> None:
        path = self.config.summary_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + ".partial")
        staged.write_text(json.dumps(self.summary.as_dict(), indent=2, default=str) + "\n")
        staged.replace(path)

    # --- frames ------------------------------------------------------------------------------

    def on_frame(self, frame: bytes | str) -> None:
        capture_ns = self.config.clock()
        self.summary.frames += 1
        if isinstance(frame, str):
            frame = frame.encode()
        try:
            symbol, kind, stream, data = self._route(frame)
        except _Malformed as error:
            self._malformed(str(error), frame)
            return
        if symbol is None:
            self.summary.unexpected_frames += 1
            return
        for gap in self.gaps[symbol].observe(kind, data):
            self._write_gap(symbol, capture_ns, gap)
        self._write(symbol, capture_ns, _line(capture_ns, frame), stream)

    def _route(self, frame: bytes) -> tuple[str | None, str, str, dict]:
        try:
            message = json.loads(frame)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise _Malformed("not JSON") from error
        if not isinstance(message, dict):
            raise _Malformed("not a JSON object")
        stream, data = message.get("stream"), message.get("data")
        if not isinstance(stream, str) or not isinstance(data, dict):
            raise _Malformed("no stream name or no data object")
        route = self.routes.get(stream)
        if route is None:
            return None, "", stream, data
        symbol, kind = route
        try:
            record_row(kind, 0, data)
        except ValueError as error:
            raise _Malformed(f"{stream}: {error}") from error
        if (
            kind == "depth"
            and self.config.market.continuity_by_pu
            and type(data.get("pu")) is not int
        ):
            raise _Malformed(f"{stream}: no integer pu")
        return symbol, kind, stream, data

    def _malformed(self, reason: str, frame: bytes) -> None:
        self.summary.malformed_frames += 1
        self.summary.malformed_reasons[reason.split(":")[-1].strip()] += 1
        if self.summary.malformed_frames <= _REPORTED_MALFORMED:
            log.warning("malformed frame skipped (%s): %r", reason, frame[:200])

    # --- connection --------------------------------------------------------------------------

    def connected(self) -> None:
        now = self.config.clock()
        self.summary.connections += 1
        for state in self.gaps.values():
            state.reconnected(now)
        for symbol in self.config.symbols:
            # A snapshot asked before the drop does not cover the gap, and its retries may all
            # have fallen while the server refused: always ask again.
            pending = self.snapshot_pending.get(symbol)
            if pending is not None:
                pending.cancel()
            self._request_snapshot(symbol)

    def disconnected(self, reason: str) -> None:
        now = self.config.clock()
        self.summary.disconnects += 1
        log.warning("connection lost (%s)", reason)
        for state in self.gaps.values():
            state.disconnected(now)

    def _request_snapshot(self, symbol: str) -> None:
        task = asyncio.get_running_loop().create_task(self._snapshot(symbol))
        self.snapshot_pending[symbol] = task

        def done(task: asyncio.Task) -> None:
            # A snapshot cancelled for a newer one must not clear the newer one's mark.
            if self.snapshot_pending.get(symbol) is task:
                del self.snapshot_pending[symbol]

        task.add_done_callback(done)

    def cancel_snapshots(self) -> None:
        for task in list(self.snapshot_pending.values()):
            task.cancel()

    async def _snapshot(self, symbol: str) -> None:
        config = self.config
        url = config.market.depth_url(
            config.rest_url, self.exchange_symbols[symbol], config.depth_limit
        )
        delay = config.backoff_initial_s
        for attempt in range(1, _SNAPSHOT_ATTEMPTS + 1):
            problem = None
            try:
                response = await self.http.get(url)
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    capture_ns = config.clock()
                    body = response.content
                    try:
                        data = json.loads(body)
                        record_row(SNAPSHOT, 0, data)
                    except ValueError as error:
                        problem = f"not a depth snapshot ({error})"
                    else:
                        framed = b'{"stream":"%s","data":%s}' % (
                            SNAPSHOT_STREAM.encode(),
                            body.strip(),
                        )
                        self._write(symbol, capture_ns, _line(capture_ns, framed), SNAPSHOT_STREAM)
                        self.summary.snapshots += 1
                        return
                else:
                    problem = f"HTTP {response.status_code}"
                    if response.status_code in (418, 429):  # rate limited: wait as told
                        retry_after = response.headers.get("Retry-After", "")
                        if retry_after.isdigit():
                            delay = max(delay, min(float(retry_after), config.backoff_max_s))
            log.warning("%s: depth snapshot attempt %d failed: %s", symbol, attempt, problem)
            if attempt < _SNAPSHOT_ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.backoff_max_s)
        self.summary.snapshot_failures += 1

    async def run(self, stop: asyncio.Event | None = None) -> CaptureSummary:
        """Capture until `stop` is set or `config.duration_s` has passed; every file is
        complete when this returns."""
        return await _run(self, stop)

    async def read(self, websocket) -> None:
        while True:
            self.on_frame(await websocket.recv(decode=False))

    def close(self, reason: str) -> CaptureSummary:
        self.cancel_snapshots()
        now = self.config.clock()
        for symbol in self.config.symbols:
            self._close_file(symbol, now)
        self.summary.stopped = _iso(now)
        self.summary.stop_reason = reason
        self.write_summary()
        return self.summary


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """True when `event` is set within `seconds`."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        return False
    return True


async def capture(config: CaptureConfig, stop: asyncio.Event | None = None) -> CaptureSummary:
    """Capture until `stop` is set or `config.duration_s` has passed; every file is complete
    when this returns."""
    return await Capture(config).run(stop)


async def _run(session: Capture, stop: asyncio.Event | None) -> CaptureSummary:
    config = session.config
    stop = stop or asyncio.Event()
    url = config.market.stream_url(config.ws_url, list(session.exchange_symbols.values()))
    loop = asyncio.get_running_loop()
    timer = loop.call_later(config.duration_s, stop.set) if config.duration_s is not None else None
    reason = "stopped"
    async with httpx.AsyncClient(timeout=config.timeout_s) as http:
        session.http = http

        async def tick() -> None:
            while not await _wait(stop, config.flush_interval_s):
                session.tick()

        ticker = loop.create_task(tick())
        log.info("capturing %s from %s into %s", ", ".join(config.symbols), url, config.directory)
        try:
            attempt = 0
            while not stop.is_set():
                established = False
                try:
                    async with connect(
                        url, open_timeout=config.timeout_s, max_size=_MAX_FRAME_BYTES
                    ) as websocket:
                        attempt = 0
                        established = True
                        session.connected()
                        reader = loop.create_task(session.read(websocket))
                        stopper = loop.create_task(stop.wait())
                        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        if not reader.done():
                            reader.cancel()
                            await asyncio.gather(reader, return_exceptions=True)
                            break  # stopped; leaving the block closes the connection cleanly
                        stopper.cancel()
                        reader.result()  # raises why the connection ended
                except websockets.ConnectionClosed as error:
                    session.disconnected(f"closed: {error}")
                except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
                    if established:
                        # A connection lost by a socket error is a disconnect all the same: what
                        # the exchange sent meanwhile is a gap, bounded from both sides.
                        session.disconnected(f"{type(error).__name__}: {error}")
                    else:
                        session.summary.failed_connection_attempts += 1
                        log.warning("cannot connect to %s: %s", config.ws_url, error)
                if stop.is_set():
                    break
                # Full jitter: many captures dropped at once do not come back in step.
                delay = random.uniform(
                    0, min(config.backoff_max_s, config.backoff_initial_s * 2**attempt)
                )
                attempt += 1
                if await _wait(stop, delay):
                    break
            reason = "duration" if timer is not None and timer.when() <= loop.time() else "stopped"
        finally:
            if timer is not None:
                timer.cancel()
            stop.set()
            await asyncio.gather(ticker, return_exceptions=True)
            session.cancel_snapshots()  # a snapshot still on its way is not waited for
            await asyncio.gather(*session.snapshot_pending.values(), return_exceptions=True)
            summary = session.close(reason)
    log.info(
        "capture %s: %d frames, %d malformed, %d disconnects, %d gaps, %d files",
        reason,
        summary.frames,
        summary.malformed_frames,
        summary.disconnects,
        len(summary.gaps),
        len(summary.files),
    )
    return summary
