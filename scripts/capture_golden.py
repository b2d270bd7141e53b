#!/usr/bin/env python3
"""Capture golden samples live from Binance: `<RLX_GOLDEN_DIR>/<SYMBOL>-<YYYY-MM-DD>.jsonl.gz`.

    poetry run python scripts/capture_golden.py --symbols BTC-USDT --duration 1h
    poetry run python scripts/capture_golden.py --symbols BTC-USDT ETH-USDT --market spot
    poetry run python scripts/capture_golden.py --symbols BTC-USDT-PERP --market usdm --duration 1d

Streams `<sym>@trade`, `<sym>@depth@100ms` and `<sym>@bookTicker` of every symbol on one
connection, with a REST depth snapshot after each (re)connect and at the start of each day's file;
files rotate at UTC midnight; disconnects and update-id discontinuities are recorded as gaps, in
the files and in `capture-<start>-<market>.summary.json`. Stops after --duration, or on SIGTERM or
Ctrl-C (exit status 0, every file complete). Base URLs: RLX_CAPTURE_WS_URL, RLX_CAPTURE_REST_URL;
RLX_GOLDEN_KEY set: files are encrypted at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import re
import signal
import sys
from pathlib import Path

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 6h or 1d")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", nargs="+", help="platform symbols (default: RLX_SYMBOLS)")
    parser.add_argument(
        "--duration", type=duration, help="e.g. 90s, 30m, 6h, 1d (default: run until stopped)"
    )
    parser.add_argument("--market", choices=["spot", "usdm", "coinm"], default="spot")
    parser.add_argument("--output-dir", help="default: RLX_GOLDEN_DIR")
    parser.add_argument(
        "--depth-limit", type=int, help="REST snapshot levels (default: the most the market serves)"
    )
    parser.add_argument("--backoff-initial", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--backoff-max", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=5.0,
        help="seconds between flushes to disk (default 5)",
    )
    arguments = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from rlx_assets.capture.binance import MARKETS
    from rlx_assets.capture.encryption import GoldenKeyError, parse_key
    from rlx_assets.capture.session import CaptureConfig, capture
    from rlx_assets.settings import get_settings

    settings = get_settings()
    market = MARKETS[arguments.market]
    output = arguments.output_dir or settings.golden_dir
    if "://" in output:
        parser.error(f"the capture writes to a local folder, not {output}: pass --output-dir")
    symbols = [s.upper() for s in arguments.symbols] if arguments.symbols else settings.symbols
    try:
        for symbol in symbols:
            market.exchange_symbol(symbol)
        key = parse_key(settings.golden_key.get_secret_value() if settings.golden_key else None)
    except (ValueError, GoldenKeyError) as error:
        print(f"capture_golden: {error}", file=sys.stderr)
        return 2
    directory = Path(output)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    config = CaptureConfig(
        market=market,
        symbols=symbols,
        directory=directory,
        ws_url=settings.capture_ws_url or market.ws_url,
        rest_url=settings.capture_rest_url or market.rest_url,
        key=key,
        duration_s=arguments.duration,
        depth_limit=arguments.depth_limit,
        backoff_initial_s=arguments.backoff_initial,
        backoff_max_s=arguments.backoff_max,
        flush_interval_s=arguments.flush_interval,
        summary_path=directory / f"capture-{started}-{market.name}.summary.json",
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await capture(config, stop)

    try:
        asyncio.run(run())
    except (OSError, ValueError) as error:
        print(f"capture_golden: {error}", file=sys.stderr)
        return 1
    print(f"capture_golden: summary in {config.summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
