"""Replay benchmark: our book engine against Crypto Lake's own client, on the same rows.

One run prints:

- engine only: `rlx_assets.engine.book.replay` over one day's delta messages (top 20 emitted after
  every message), rows/s and messages/s, after a warm-up call for the JIT;
- lakeapi: `lakeapi.orderbook.OrderBookUpdater` on the same rows, loaded from a Parquet file in
  Crypto Lake's float layout: load seconds, replay seconds, rows/s, and the engine/lakeapi ratio;
- end to end: `reconstructed_book` (with `book_state` and its checks) materialized through Dagster
  from the raw assets on local Parquet, in a subprocess of its own: wall seconds and peak RSS,
  against lakeapi's load + replay;
- peak RSS of that end-to-end run at half, one and two times the volume, and the 2x/1x ratio;
- the acceptance verdicts as PASS/FAIL lines.

Each measurement runs in a child process (this script with `--step`), so every peak RSS is that
step's alone (read with `os.wait4`), and the parent holds no data. Inputs are synthetic days
(`rlx_assets.lake.synthetic`, scale 1.0 = a busy BTC-USDT day), written once per scale under
`--work` in the IO manager's layout and reused by later runs.

    .venv/bin/python benchmarks/bench_reconstruct.py                # full scale: ~15 min, 14 GB
    .venv/bin/python benchmarks/bench_reconstruct.py --scale 0.05   # quick look
    .venv/bin/python benchmarks/bench_reconstruct.py --scale 0.2 --profile

lakeapi is a benchmark-only dependency: `poetry install --with bench`. See benchmarks/README.md.

One file, over 450 lines: a user runs one script and reads every measurement it makes, and the
steps it runs as child processes, in one place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _machine import available_memory
from experiment_book_layouts import fixture_arrays, fixture_kernels, profile_layouts, timed

from rlx_assets.engine.book import replay
from rlx_assets.engine.book_tables import day_digits, recorded_digits
from rlx_assets.engine.book_types import BookSide, ReplayInput
from rlx_assets.engine.day_replay import DayReplay
from rlx_assets.engine.decimals import (
    infer_step_exponent,
)
from rlx_assets.resources.parquet_files import PartitionWriter
from rlx_assets.schema import BOOK, BOOK_DELTAS

DAY = dt.date(2024, 8, 8)
EXCHANGE = "BINANCE"
SYMBOL = "BTC-USDT"
RAW_DELTAS = "raw_book_deltas"
RAW_SNAPSHOTS = "raw_book_snapshots"
LAKEAPI_COLUMNS = ["received_time", "sequence_number", "side_is_bid", "price", "size"]
GB = 1024**3

# The acceptance criteria of the replay-engine issue.
MIN_ENGINE_SPEEDUP = 2.0
MAX_E2E_OVER_LAKEAPI = 1.0
MAX_PEAK_RSS_BYTES = 2 * GB
MAX_TWO_DAY_RSS_RATIO = 1.2

ENGINE_CHUNK_ROWS = 1_000_000  # as RLX_REPLAY_CHUNK_ROWS feeds the engine in the asset
_CLEAN_CHUNK_ROWS = 2_000_000  # clean_day works in memory: a whole full-scale day needs ~18 GB


# --- inputs ----------------------------------------------------------------------------------


def scale_folder(work: Path, scale: float) -> Path:
    return work / f"scale-{scale:g}"


def storage_of(work: Path, scale: float) -> Path:
    """The Dagster storage root of one scale: raw inputs, and the outputs of the e2e runs."""
    return scale_folder(work, scale) / "storage"


def raw_path(work: Path, scale: float, asset: str) -> Path:
    # Imported here: it brings in Dagster, which the engine and lakeapi steps need not load.
    from rlx_assets.resources.io_manager import partition_path

    return Path(partition_path(str(storage_of(work, scale)), asset, EXCHANGE, SYMBOL, DAY))


def lake_deltas_path(work: Path, scale: float) -> Path:
    """The same delta rows in Crypto Lake's own layout (float64 prices/sizes), for lakeapi."""
    return scale_folder(work, scale) / "lake" / "book_delta_v2.parquet"


def _message_bounds(sequence: np.ndarray, rows_per_chunk: int) -> list[int]:
    """Chunk boundaries of ~rows_per_chunk rows that never split a message (sorted sequence)."""
    bounds = [0]
    while bounds[-1] < sequence.size:
        target = bounds[-1] + rows_per_chunk
        if target >= sequence.size:
            bounds.append(sequence.size)
            break
        cut = int(np.searchsorted(sequence, sequence[target], side="left"))
        if cut <= bounds[-1]:
            cut = int(np.searchsorted(sequence, sequence[target], side="right"))
        bounds.append(cut)
    return bounds


def step_build(work: Path, scale: float) -> dict[str, Any]:
    """Synthetic day -> raw_book_snapshots and raw_book_deltas Parquet (+ the lake-layout copy).

    The raw tables are what the raw assets hold: `clean_day` over every row whose origin_time is in
    the day (the rows the assets gather from the dt folders D-1, D and D+1). Deltas are cleaned in
    chunks of whole messages, in sequence order, with the day's grid passed in, so each chunk's
    rows, order and decimals are those of one whole-day `clean_day` (checked at small scales), in a
    bounded amount of memory.
    """
    from rlx_assets.engine.raw import clean_day
    from rlx_assets.lake.synthetic.day import generate_origin_day

    started = time.perf_counter()
    tables = generate_origin_day(EXCHANGE, SYMBOL, DAY, scale)
    generated = time.perf_counter() - started

    snapshots = clean_day(BOOK, DAY, [(DAY, tables[BOOK])])
    if not snapshots.accounted():
        raise RuntimeError("raw_book_snapshots: row accounting does not add up")
    _write(snapshots.table, raw_path(work, scale, RAW_SNAPSHOTS))

    deltas = tables[BOOK_DELTAS]
    rows_read = deltas.num_rows
    order = pc.sort_indices(deltas, sort_keys=[("sequence_number", "ascending")])  # stable
    sequence = deltas["sequence_number"].to_numpy()[order.to_numpy()]
    price_exponent = infer_step_exponent(deltas["price"].to_numpy())
    size_exponent = infer_step_exponent(deltas["size"].to_numpy())
    bounds = _message_bounds(sequence, _CLEAN_CHUNK_ROWS)
    kept = 0
    raw_file, lake_file = raw_path(work, scale, RAW_DELTAS), lake_deltas_path(work, scale)
    raw_writer = lake_writer = None
    for first, end in itertools.pairwise(bounds):
        chunk = deltas.take(order.slice(first, end - first))
        cleaned = clean_day(BOOK_DELTAS, DAY, [(DAY, chunk)], price_exponent, size_exponent)
        if not cleaned.accounted():
            raise RuntimeError("raw_book_deltas: row accounting does not add up")
        table = cleaned.table
        lake = pa.table(
            {
                "origin_time": table["origin_time"],
                "received_time": table["received_time"],
                "sequence_number": table["sequence_number"],
                "side_is_bid": table["side_is_bid"],
                "price": pc.cast(table["price"], pa.float64()),
                "size": pc.cast(table["size"], pa.float64()),
            }
        )
        if raw_writer is None or lake_writer is None:
            raw_writer = _AtomicWriter(raw_file)
            lake_writer = _AtomicWriter(lake_file, vendor_format=True)
        raw_writer.write(table)
        lake_writer.write(lake)
        kept += table.num_rows
    for writer in (raw_writer, lake_writer):
        if writer is not None:
            writer.close()
    return {
        "scale": scale,
        "day": str(DAY),
        "delta_rows": kept,
        "delta_rows_read": rows_read,
        "messages": int(np.count_nonzero(np.diff(sequence)) + 1) if sequence.size else 0,
        "snapshots": snapshots.table.num_rows,
        "raw_deltas_bytes": raw_file.stat().st_size,
        "lake_deltas_bytes": lake_file.stat().st_size,
        "generate_seconds": generated,
        "build_seconds": time.perf_counter() - started,
    }


class _AtomicWriter:
    """A Parquet file written beside its final name and renamed over it when complete. Raw
    tables go through the IO manager's own writer (options, row groups), so reads cost what they
    cost in the assets; the copy lakeapi loads is written as Crypto Lake ships its files
    (`*.snappy.parquet`: snappy, pyarrow's default dictionaries, like the shared fixture)."""

    def __init__(self, path: Path, vendor_format: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.staging = path, path.with_name(path.name + ".tmp")
        self.vendor_format = vendor_format
        self.writer: Any = None if vendor_format else PartitionWriter(str(self.staging))

    def write(self, table: pa.Table) -> None:
        if self.vendor_format:
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.staging, table.schema, compression="snappy")
            self.writer.write_table(table)
        else:
            self.writer.write(table)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.staging, self.path)


def _write(table: pa.Table, path: Path) -> None:
    writer = _AtomicWriter(path)
    writer.write(table)
    writer.close()


# --- engine only ----------------------------------------------------------------------------


def replay_input(deltas: pa.Table, snapshots: pa.Table) -> ReplayInput:
    """The whole day as one engine input, prepared as `DayReplay.prepare` prepares a chunk (the
    synthetic day opens with a whole book, so no message is forced to resync)."""
    digits = recorded_digits(deltas.schema.metadata) or day_digits(deltas, snapshots, None)
    return DayReplay(None, *digits, DAY, seed_from_vendor=False).prepare(deltas, snapshots).data


def _head(data: ReplayInput, messages: int) -> ReplayInput:
    """The first `messages` messages (for the JIT warm-up)."""
    messages = min(messages, data.sequence_numbers.size)
    rows = int(data.message_starts[messages])
    snapshot = data.snapshot_of_message[:messages]
    return ReplayInput(
        message_starts=data.message_starts[: messages + 1],
        sequence_numbers=data.sequence_numbers[:messages],
        side_is_bid=data.side_is_bid[:rows],
        prices=data.prices[:rows],
        sizes=data.sizes[:rows],
        snapshot_of_message=snapshot,
        snapshot_bid_prices=data.snapshot_bid_prices,
        snapshot_bid_sizes=data.snapshot_bid_sizes,
        snapshot_ask_prices=data.snapshot_ask_prices,
        snapshot_ask_sizes=data.snapshot_ask_sizes,
        force_resync_message=data.force_resync_message
        if data.force_resync_message < messages
        else -1,
    )


def load_replay_input(work: Path, scale: float) -> ReplayInput:
    from rlx_assets.defs.book.streaming import DELTA_COLUMNS

    deltas = pq.read_table(raw_path(work, scale, RAW_DELTAS), columns=DELTA_COLUMNS)
    snapshots = pq.read_table(raw_path(work, scale, RAW_SNAPSHOTS))
    return replay_input(deltas, snapshots)


def engine_chunks(work: Path, scale: float, chunk_rows: int) -> tuple[DayReplay, list]:
    """The day as `reconstructed_book` feeds the engine: message-aligned chunks of about
    `chunk_rows` delta rows with their vendor snapshots, prepared (decimals to scaled integers)
    the way `DayReplay.prepare` does it on the reader thread. Preparation is not timed."""
    from rlx_assets.defs.book.streaming import day_chunks

    deltas = pq.ParquetFile(raw_path(work, scale, RAW_DELTAS))
    snapshots = pq.ParquetFile(raw_path(work, scale, RAW_SNAPSHOTS))
    digits = recorded_digits(deltas.metadata.metadata)
    template = DayReplay(None, *digits, DAY, seed_from_vendor=True)
    prepared = [template.prepare(d, v) for d, v in day_chunks(deltas, snapshots, chunk_rows)]
    return DayReplay(None, *digits, DAY, seed_from_vendor=True), prepared


def step_engine(work: Path, scale: float, repeat: int, kernel: str) -> dict[str, Any]:
    from rlx_assets.engine import reconstruct

    started = time.perf_counter()
    first, chunks = engine_chunks(work, scale, ENGINE_CHUNK_ROWS)
    prepared = time.perf_counter() - started
    if kernel != "auto":  # --kernel sorted/dense forces one
        reconstruct.replay = lambda data, bids, asks: replay(data, bids, asks, kernel=kernel)
    price_digits, size_digits = first.price_digits, first.size_digits
    warm = _head(chunks[0].data, 1000)
    replay(warm, BookSide.empty(), BookSide.empty())  # JIT (or load the on-disk numba cache)
    seconds = []
    for _ in range(repeat):
        day = DayReplay(None, price_digits, size_digits, DAY, seed_from_vendor=True)
        started = time.perf_counter()
        published = [day.replay_chunk(chunk) for chunk in chunks]
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    result = day.finish()
    rows = sum(int(chunk.data.prices.size) for chunk in chunks)
    messages = sum(int(chunk.data.sequence_numbers.size) for chunk in chunks)
    return {
        "rows": rows,
        "messages": messages,
        "chunks": len(chunks),
        "kernel": kernel,
        "prepare_seconds": prepared,
        "seconds": best,
        "seconds_all": seconds,
        "rows_per_s": rows / best,
        "messages_per_s": messages / best,
        "resyncs": int(sum(rows.resynced.sum() for rows in published)),
        "vendor_match_share": result.stats["top20_match_share"],
        "final_best_bid": int(day.bids.prices[-1]) if day.bids.prices.size else None,
        "final_best_ask": int(day.asks.prices[-1]) if day.asks.prices.size else None,
        "final_depth": [int(day.bids.prices.size), int(day.asks.prices.size)],
    }


# --- lakeapi ---------------------------------------------------------------------------------


def step_lakeapi(
    work: Path, scale: float, repeat: int, deltas_path: Path | None = None
) -> dict[str, Any]:
    """lakeapi's load + replay of `deltas_path` (default: this benchmark's lake-layout copy);
    bench_graph.py passes a day's own `dt=` file."""
    os.chdir(scale_folder(work, scale))  # lakeapi creates a `.lake_cache` folder in the cwd
    try:
        from lakeapi.orderbook import OrderBookUpdater
    except ImportError:
        return {"error": "lakeapi is not installed: poetry install --with bench"}
    path = deltas_path or lake_deltas_path(work, scale)

    # Warm-up on a small slice: lakeapi's kernel is numba-compiled (cache=True) on first use.
    warm = pq.read_table(path, columns=LAKEAPI_COLUMNS).slice(0, 50_000).to_pandas()
    book = OrderBookUpdater(warm)
    while book.process_next_update():
        pass
    del warm, book

    loads, replays = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        frame = pq.read_table(path, columns=LAKEAPI_COLUMNS).to_pandas()
        loads.append(time.perf_counter() - started)
        started = time.perf_counter()
        book = OrderBookUpdater(frame)
        updates = 0
        while book.process_next_update():
            updates += 1
        replays.append(time.perf_counter() - started)
    load, seconds = min(loads), min(replays)
    rows = len(frame)
    best_bid, best_ask = book.get_bests()
    return {
        "rows": rows,
        "updates": updates,  # lakeapi's steps: runs of rows with one received_time
        "load_seconds": load,
        "replay_seconds": seconds,
        "replay_seconds_all": replays,
        "rows_per_s": rows / seconds,
        "final_best_bid": best_bid,
        "final_best_ask": best_ask,
        "final_depth": [len(book.bid), len(book.ask)],
    }


# --- end to end through Dagster --------------------------------------------------------------


def step_e2e(work: Path, scale: float) -> dict[str, Any]:
    """Materialize reconstructed_book + book_state (and their checks) for one partition."""
    from dagster import AssetSelection, materialize

    from rlx_assets.definitions import build_definitions
    from rlx_assets.defs.book.assets import BOOK_STATE, RECONSTRUCTED_BOOK
    from rlx_assets.partitions import partition_key
    from rlx_assets.settings import RlxSettings

    folder = scale_folder(work, scale)
    settings = RlxSettings(
        _env_file=None,
        lake_url="synthetic://",
        exchange=EXCHANGE,
        symbols=[SYMBOL],
        start_date=DAY - dt.timedelta(days=7),
        storage_url=str(storage_of(work, scale)),
        golden_dir=str(folder / "golden"),
        metrics_dir=str(folder / "metrics"),
        synthetic_scale=min(scale, 4.0),
    )
    definitions = build_definitions(settings)
    # The raw assets are in the list only so their outputs can be loaded (already on disk);
    # the selection materializes the `reconstruct` multi-asset alone.
    started = time.perf_counter()
    result = materialize(
        list(definitions.assets),
        resources=definitions.resources,
        partition_key=partition_key(DAY, SYMBOL),
        selection=AssetSelection.assets(RECONSTRUCTED_BOOK, BOOK_STATE),
        raise_on_error=True,
    )
    seconds = time.perf_counter() - started
    materialized = {
        event.materialization.asset_key.to_user_string(): {
            key: value.value for key, value in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }
    book = materialized.get(RECONSTRUCTED_BOOK, {})
    return {
        "success": result.success,
        "seconds": seconds,
        "assets": sorted(materialized),
        "book_rows": book.get("row_count"),
        "book_bytes": book.get("bytes"),
        "checks": {
            check.check_name: bool(check.passed) for check in result.get_asset_check_evaluations()
        },
    }


# --- profile: where the engine's time goes ---------------------------------------------------


def step_profile(work: Path, scale: float) -> dict[str, Any]:
    data = load_replay_input(work, scale)
    empty = BookSide.empty()
    replay(_head(data, 1000), empty, empty)
    engine_seconds = timed(replay, data, empty, empty)
    skip = int(data.message_starts[1]) if data.force_resync_message < 0 else 0
    arrays = (data.message_starts, data.side_is_bid, data.prices, data.sizes)
    result = {"engine_seconds": engine_seconds, "synthetic": profile_layouts(*arrays, skip)}
    fixture = fixture_arrays()
    if fixture is not None:
        result["fixture"] = profile_layouts(*fixture, skip_rows=int(fixture[0][1]))
        result["fixture_kernels"] = fixture_kernels(*fixture)
    return result


# --- parent: run the steps, print the figures ------------------------------------------------


def run_step(args: argparse.Namespace, step: str, scale: float) -> dict[str, Any]:
    """Run one step in a child process; its result, wall seconds and peak RSS (bytes)."""
    folder = scale_folder(args.work, scale)
    folder.mkdir(parents=True, exist_ok=True)
    result_file = folder / f"{step}.result.json"
    log_file = folder / f"{step}.log"
    result_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--step",
        step,
        "--scale",
        repr(scale),
        "--work",
        str(args.work),
        "--repeat",
        str(args.repeat),
        "--kernel",
        args.kernel,
        "--result",
        str(result_file),
    ]
    print(f"  {step} at scale {scale:g} ...", end="", flush=True)
    started = time.perf_counter()
    stopped = False
    with open(log_file, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            available = available_memory()
            if not stopped and available is not None and available < args.min_free_gb * GB:
                # Stop this child (only it) before the machine runs out of memory.
                os.kill(child.pid, signal.SIGKILL)
                stopped = True
            time.sleep(0.2)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(f" {wall:.1f} s, peak RSS {peak / GB:.2f} GB", flush=True)
    if stopped and step == "e2e":
        print(f"  stopped: less than {args.min_free_gb:g} GB of memory left", flush=True)
        return {"stopped": True, "wall_seconds": wall, "peak_rss_bytes": peak}
    if child.returncode != 0 or not result_file.exists():
        tail = log_file.read_text().splitlines()[-15:]
        raise RuntimeError(
            f"step {step} at scale {scale:g} failed (exit {child.returncode}); log {log_file}:\n"
            + "\n".join(tail)
        )
    result = json.loads(result_file.read_text())
    result["wall_seconds"] = wall
    result["peak_rss_bytes"] = peak
    return result


def _bytecode_compiled() -> bool:
    import dagster

    package = Path(dagster.__file__).parent
    return any((package / "__pycache__").glob("*.pyc"))


def build_input(args: argparse.Namespace, scale: float) -> dict[str, Any]:
    marker = scale_folder(args.work, scale) / "input.json"
    if marker.exists() and not args.rebuild:
        return json.loads(marker.read_text())
    if args.rebuild and scale_folder(args.work, scale).exists():
        shutil.rmtree(scale_folder(args.work, scale))
    built = run_step(args, "build", scale)
    marker.write_text(json.dumps(built, indent=2))
    return built


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value / GB:.2f} GB"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M/s"


def _verdict(passed: bool | None, text: str) -> str:
    label = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
    return f"{label}  {text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="day volume (1.0 = busy day)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlx-bench"), help="work folder")
    parser.add_argument(
        "--rss-scales",
        default=None,
        help="comma-separated scales for the RSS series (default: scale/2, scale, 2*scale); "
        "'none' skips it",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of the engine and of lakeapi (best)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the engine's time")
    parser.add_argument(
        "--kernel",
        choices=("auto", "sorted", "dense"),
        default="auto",
        help="engine-only: the replay kernel (default: the one `replay` picks)",
    )
    parser.add_argument("--skip-lakeapi", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="regenerate cached inputs")
    parser.add_argument(
        "--min-free-gb",
        type=float,
        default=1.5,
        help="stop a step when the machine has less memory available than this",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    if not (args.scale > 0 and math.isfinite(args.scale)):
        parser.error("--scale must be a positive number")

    if args.step:
        steps = {
            "build": lambda: step_build(args.work, args.scale),
            "engine": lambda: step_engine(args.work, args.scale, args.repeat, args.kernel),
            "lakeapi": lambda: step_lakeapi(args.work, args.scale, args.repeat),
            "e2e": lambda: step_e2e(args.work, args.scale),
            "profile": lambda: step_profile(args.work, args.scale),
        }
        result = steps[args.step]()
        args.result.write_text(json.dumps(result, indent=2))
        return 0

    if args.rss_scales is None:
        rss_scales = [args.scale / 2, args.scale, args.scale * 2]
    elif args.rss_scales.strip().lower() == "none":
        rss_scales = []
    else:
        rss_scales = [float(part) for part in args.rss_scales.split(",") if part.strip()]
    if args.skip_e2e:
        rss_scales = []
    return run(args, rss_scales)


def run(args: argparse.Namespace, rss_scales: list[float]) -> int:
    scale = args.scale
    print(f"work folder {args.work}; day {DAY} {EXCHANGE} {SYMBOL}; scale {scale:g}")
    if not _bytecode_compiled():
        print(
            "note: Dagster's bytecode is not compiled (install with `poetry install --compile`); "
            "with PYTHONDONTWRITEBYTECODE set, every step compiles it again and the end-to-end "
            "seconds include that"
        )
    print("inputs (cached between runs):")
    inputs = {s: build_input(args, s) for s in sorted({scale, *rss_scales})}
    for s, built in inputs.items():
        print(
            f"  scale {s:g}: {built['delta_rows']:,} delta rows in {built['messages']:,} messages, "
            f"{built['snapshots']:,} snapshots; raw_book_deltas "
            f"{built['raw_deltas_bytes'] / 1e6:.0f} MB (built in {built['build_seconds']:.0f} s)"
        )
    print("measuring:")
    engine = run_step(args, "engine", scale)
    lake = None if args.skip_lakeapi else run_step(args, "lakeapi", scale)
    if lake is not None and "error" in lake:
        print(f"  lakeapi: {lake['error']}")
        lake = None
    e2e: dict[float, dict[str, Any]] = {}
    if not args.skip_e2e:
        for s in sorted({scale, *rss_scales}):
            e2e[s] = run_step(args, "e2e", s)
    profile = run_step(args, "profile", scale) if args.profile else None

    lake_total = lake["load_seconds"] + lake["replay_seconds"] if lake else None
    speedup = engine["rows_per_s"] / lake["rows_per_s"] if lake else None
    main_e2e = e2e.get(scale)
    finished = main_e2e if main_e2e and not main_e2e.get("stopped") else None
    e2e_ratio = finished["seconds"] / lake_total if finished and lake_total else None
    two_day = e2e.get(2 * scale)
    rss_ratio = (
        two_day["peak_rss_bytes"] / main_e2e["peak_rss_bytes"] if two_day and main_e2e else None
    )

    rows = [
        ("delta rows / messages", f"{engine['rows']:,} / {engine['messages']:,}"),
        ("engine: replay seconds", f"{engine['seconds']:.2f} s (kernel {engine['kernel']})"),
        ("engine: rows/s", _rate(engine["rows_per_s"])),
        ("engine: messages/s", _rate(engine["messages_per_s"])),
        (
            "engine: resyncs / vendor match share",
            f"{engine['resyncs']} / {engine['vendor_match_share']}",
        ),
    ]
    if lake:
        rows += [
            ("lakeapi: load seconds", f"{lake['load_seconds']:.2f} s"),
            (
                "lakeapi: replay seconds",
                f"{lake['replay_seconds']:.2f} s ({lake['updates']:,} updates)",
            ),
            ("lakeapi: rows/s", _rate(lake["rows_per_s"])),
            (
                "lakeapi: load + replay",
                f"{lake_total:.2f} s, peak RSS {_gb(lake['peak_rss_bytes'])}",
            ),
            ("engine / lakeapi (rows/s)", f"{speedup:.2f}x"),
            (
                "final best bid/ask (engine | lakeapi)",
                f"{engine['final_best_bid']}/{engine['final_best_ask']} | "
                f"{lake['final_best_bid']}/{lake['final_best_ask']} (engine in scaled ints)",
            ),
        ]
    if finished:
        rows += [
            (
                "e2e reconstructed_book: materialize",
                f"{finished['seconds']:.2f} s (the whole process: {finished['wall_seconds']:.2f} s,"
                " with Python/Dagster start-up)",
            ),
            ("e2e peak RSS", _gb(finished["peak_rss_bytes"])),
            (
                "e2e checks",
                ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in finished["checks"].items()),
            ),
        ]
        if e2e_ratio is not None:
            rows.append(("e2e / lakeapi load+replay", f"{e2e_ratio:.2f}x"))
    for s, measured in sorted(e2e.items()):
        if measured.get("stopped"):
            figures = f"stopped for memory at peak RSS {_gb(measured['peak_rss_bytes'])} (or more)"
        else:
            figures = f"{measured['seconds']:.2f} s, peak RSS {_gb(measured['peak_rss_bytes'])}"
        rows.append((f"e2e at scale {s:g} ({s / scale:g}x volume)", figures))
    if rss_ratio is not None:
        bound = ">= " if two_day and two_day.get("stopped") else ""
        rows.append(("e2e peak RSS 2x / 1x volume", f"{bound}{rss_ratio:.2f}x"))
    if profile:
        rows += _profile_rows(profile)

    width = max(len(label) for label, _ in rows)
    print(f"\nfigures at scale {scale:g} (acceptance criteria are defined at scale 1.0):")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("\nverdicts:")
    verdicts = [
        _verdict(
            None if speedup is None else speedup >= MIN_ENGINE_SPEEDUP,
            f"engine >= {MIN_ENGINE_SPEEDUP:g}x lakeapi rows/s, top 20 emitted per message"
            + ("" if speedup is None else f" ({speedup:.2f}x)"),
        ),
        _verdict(
            None if e2e_ratio is None else e2e_ratio <= MAX_E2E_OVER_LAKEAPI,
            "e2e reconstructed_book <= lakeapi load + replay"
            + ("" if e2e_ratio is None else f" ({e2e_ratio:.2f}x)"),
        ),
        _verdict(
            None if main_e2e is None else main_e2e["peak_rss_bytes"] <= MAX_PEAK_RSS_BYTES,
            f"e2e peak RSS <= {_gb(MAX_PEAK_RSS_BYTES)}"
            + ("" if main_e2e is None else f" ({_gb(main_e2e['peak_rss_bytes'])})"),
        ),
        _verdict(
            None if rss_ratio is None else rss_ratio <= MAX_TWO_DAY_RSS_RATIO,
            f"e2e peak RSS at 2x volume <= {MAX_TWO_DAY_RSS_RATIO:g}x the 1x figure"
            + ("" if rss_ratio is None else f" ({rss_ratio:.2f}x)"),
        ),
    ]
    for line in verdicts:
        print(f"  {line}")
    summary = {
        "scale": scale,
        "inputs": {str(s): built for s, built in inputs.items()},
        "engine": engine,
        "lakeapi": lake,
        "e2e": {str(s): measured for s, measured in e2e.items()},
        "profile": profile,
        "verdicts": verdicts,
    }
    summary_file = args.work / f"results-scale-{scale:g}.json"
    summary_file.write_text(json.dumps(summary, indent=2))
    print(f"\nall figures: {summary_file}")
    return 0


def _profile_rows(profile: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("profile: engine replay (with its checks)", f"{profile['engine_seconds']:.2f} s")]
    for source in ("synthetic", "fixture"):
        figures = profile.get(source)
        if figures is None:
            continue
        label = f"profile {source}"
        kinds = ", ".join(f"{name} {share:.1%}" for name, share in figures["kinds"].items())
        depth = ", ".join(f"p{q} {v:g}" for q, v in figures["depth_percentiles"].items())
        deeper = ", ".join(f">={d}: {v:.1%}" for d, v in figures["rows_deeper_than"].items())
        rows += [
            (f"{label}: rows / messages", f"{figures['rows']:,} / {figures['messages']:,}"),
            (f"{label}: row kinds", kinds),
            (f"{label}: levels from best", depth),
            (f"{label}: rows by depth", deeper),
            (
                f"{label}: elements shifted",
                f"{figures['moved_per_row']:.0f}/row, "
                f"{figures['moved_share_from_rows_deeper_than_100']:.0%} by rows >= 100 deep",
            ),
            (f"{label}: price span", f"{figures['price_span_ticks']:,} ticks"),
        ]
        layouts = [("sorted (engine layout, no checks)", figures["sorted_seconds"], None)]
        for name in ("dense", "bitmap"):
            if f"{name}_seconds" in figures:
                layouts.append(
                    (
                        f"{name} tick array",
                        figures[f"{name}_seconds"],
                        f"+{figures[f'{name}_allocate_seconds']:.2f} s to allocate, same top 20: "
                        f"{figures[f'{name}_matches_sorted']}",
                    )
                )
        for name, seconds, note in layouts:
            rate = _rate(figures["rows"] / seconds)
            rows.append(
                (f"{label}: {name}", f"{seconds:.3f} s, {rate}" + (f" ({note})" if note else ""))
            )
        if "dense_ticks_scanned_per_message" in figures:
            scanned = figures["dense_ticks_scanned_per_message"]
            rows.append((f"{label}: dense emit scan", f"{scanned:,.0f} ticks/message"))
    kernels = profile.get("fixture_kernels")
    if kernels:
        rows.append(
            (
                "profile fixture: engine kernels after the REST snapshot",
                f"{kernels['rows']:,} rows: window {_rate(kernels['window_rows_per_s'])}, "
                f"sorted {_rate(kernels['sorted_rows_per_s'])}, "
                f"same output: {kernels['same_output']}",
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
