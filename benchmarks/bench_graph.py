"""Whole-graph benchmark: a busy day through every asset, as a user materializes it, in bounded
memory and at lakeapi's pace.

One run prints, per scale (`--scales`, default 1,2; scale 1.0 is a busy BTC-USDT day):

- the middle day of three (2024-08-08 of 07..09), its whole graph materialized with one
  `dagster asset materialize -m rlx_assets --select '*'` in a subprocess: its wall seconds and
  the peak RSS of its whole process tree (VmRSS summed over it every ~50 ms), and per stage (raw,
  book, events, quality) the seconds of its steps and the tree's peak while they ran;
- lakeapi's load + replay of the same day's own `dt=` delta file (bench_reconstruct's lakeapi step,
  in a child process), and the ratio of the whole graph's seconds to it;
- the bytes the raw assets report reading (their `bytes_read` metadata) against the size of the
  day's own `dt=` files;
- with `--select`, part of the graph instead (e.g. the raw tables and the book): what that part
  costs, against the same lakeapi run; the speed criterion is the whole graph's, so its line
  says SKIP with the ratio;
- with `--days7`, `scripts/run_pipeline.py` over 7 days (`--days7-count`) in one process:
  seconds and peak memory per day, and the daily peak's trend;
- PASS/FAIL lines for the acceptance criteria, and every figure in a JSON file.

The lake is written once per scale under `--work` in Crypto Lake's layout (pyarrow's default
Parquet options, float64 prices) from `rlx_assets.lake.synthetic`, and reused by later runs.

    .venv/bin/python benchmarks/bench_graph.py --scales 0.05        # quick look, a few minutes
    .venv/bin/python benchmarks/bench_graph.py                      # scales 1 and 2
    .venv/bin/python benchmarks/bench_graph.py --scales none --days7

lakeapi is a benchmark-only dependency: `poetry install --with bench`. See benchmarks/README.md.

One file, over 450 lines: a user runs one script and reads every measurement it makes, and the
child processes it runs, in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _machine import available_memory

REPO = Path(__file__).resolve().parents[1]
EXCHANGE = "BINANCE"
SYMBOL = "BTC-USDT"
TABLES = ("trades", "book", "book_delta_v2")
DELTAS_TABLE = "book_delta_v2"
RAW_ASSETS = ("raw_trades", "raw_book_snapshots", "raw_book_deltas")
# The graph's steps (Dagster step keys) by stage; the stages' assets in the comments.
STAGES = (
    ("raw", RAW_ASSETS),
    ("book", ("reconstruct",)),  # reconstructed_book, book_state
    ("events", ("unified_events",)),
    ("quality", ("validation_report", "microstructure_metrics", "fidelity")),  # fidelity_report
)
MIDDLE_DAY = dt.date(2024, 8, 8)  # of 2024-08-07..09
FIRST_OF_DAYS = dt.date(2024, 8, 8)  # the multi-day run's first day (7 by default)


def multi_days(count: int) -> tuple[dt.date, dt.date]:
    return FIRST_OF_DAYS, FIRST_OF_DAYS + dt.timedelta(days=count - 1)


def peak_trend_mb_per_day(days: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of the daily peaks, in MB a day, from the second day on (the first
    carries the process's start-up and a cold book)."""
    peaks = [day["peak_bytes"] / 2**20 for day in days[1:]]
    if len(peaks) < 2:
        return None
    mean_x, mean_y = (len(peaks) - 1) / 2, sum(peaks) / len(peaks)
    spread = sum((x - mean_x) ** 2 for x in range(len(peaks)))
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(peaks)) / spread


GIB = 1024**3

# The acceptance criteria.
MAX_STAGE_PEAK_BYTES = 2 * GIB
MAX_STAGES_OVER_LAKEAPI = 3.0
MAX_DOUBLE_VOLUME_PEAK_RATIO = 1.2
MAX_BYTES_READ_OVER_DAY_FILES = 1.1
MAX_LAST_DAY_TIME_CHANGE = 0.15

SAMPLE_SECONDS = 0.05
PARTITION_LINE = re.compile(
    r"partition (\d{4}-\d{2}-\d{2})\|(\S+): ([\d.]+) s, peak RSS ([\d.]+) GiB \(([^)]*)\)"
)


# --- the lake --------------------------------------------------------------------------------


def scale_folder(work: Path, scale: float) -> Path:
    return work / f"scale-{scale:g}"  # as bench_reconstruct names it (its lakeapi step cds here)


def lake_root(work: Path, scale: float) -> Path:
    return scale_folder(work, scale) / "lake"


def lake_file(work: Path, scale: float, table: str, day: dt.date) -> Path:
    folder = lake_root(work, scale) / table / f"exchange={EXCHANGE}" / f"symbol={SYMBOL}"
    return folder / f"dt={day}" / "1.snappy.parquet"


def dt_folders(first: dt.date, last: dt.date) -> list[dt.date]:
    """The dt folders the partitions first..last read: each day's and its two neighbours'."""
    return [first + dt.timedelta(days=n) for n in range(-1, (last - first).days + 2)]


def step_build(work: Path, scale: float, days: list[dt.date]) -> dict[str, Any]:
    """Write each dt folder as a collector files it: `SyntheticLake.read_day`'s rows, with
    pyarrow's default Parquet options (snappy, dictionaries, 1Mi-row groups, statistics)."""
    import pyarrow.parquet as pq

    from rlx_assets.lake.synthetic import day as synthetic_day
    from rlx_assets.lake.synthetic.lake import SyntheticLake

    lake = SyntheticLake(scale=scale)
    built: dict[str, Any] = {}
    for day in days:
        # A dt folder needs the origin days D-1 and D. The simulator caches four (~18 GB at
        # scale 2); clearing before each folder keeps two, at the cost of simulating most twice.
        synthetic_day._origin_day.cache_clear()
        started = time.perf_counter()
        built[str(day)] = {}
        for table in TABLES:
            rows = lake.read_day(table, EXCHANGE, SYMBOL, day).tables[0]
            path = lake_file(work, scale, table, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(path.name + ".tmp")  # not *.parquet: the lake skips it
            pq.write_table(rows, staging)
            os.replace(staging, path)
            built[str(day)][table] = {"rows": rows.num_rows, "bytes": path.stat().st_size}
            del rows
        built[str(day)]["seconds"] = time.perf_counter() - started
    synthetic_day._origin_day.cache_clear()
    return built


def build_lake(args: argparse.Namespace, scale: float, days: list[dt.date]) -> dict[str, Any]:
    """The dt folders `days` of one scale, built once (the marker lists what is on disk)."""
    marker = lake_root(args.work, scale) / "built.json"
    built = json.loads(marker.read_text()) if marker.exists() else {}
    missing = [day for day in days if str(day) not in built]
    if not missing:
        peaks = [_gib(peak["tree_peak_bytes"]) for peak in built.get("builder_peaks", [])]
        print(f"  lake at scale {scale:g}: reused ({marker}; builder peak {', '.join(peaks)})")
    else:
        print(f"  building the lake at scale {scale:g}: dt {', '.join(map(str, missing))} ...")
        result_file = scale_folder(args.work, scale) / "build.result.json"
        measured = run_measured(
            [*_step_command(args, "build", scale, result_file), "--days", *map(str, missing)],
            os.environ.copy(),
            scale_folder(args.work, scale) / "build.log",
            args.min_free_gb,
        )
        print(f"    {_figures(asdict(measured))}")
        if measured.stopped or measured.returncode != 0:
            raise SystemExit(f"building the lake failed; see {measured.log}")
        built.update(json.loads(result_file.read_text()))
        built["builder_peaks"] = [*built.get("builder_peaks", []), asdict(measured)]
        marker.write_text(json.dumps(built, indent=2))
    return built


# --- children, measured ----------------------------------------------------------------------


@dataclass
class Measured:
    """One child process: wall seconds, the peak of its process tree's summed VmRSS, its own
    ru_maxrss (os.wait4), and whether the memory guard stopped it. `samples`: (epoch seconds,
    tree bytes, tree CPU seconds) every SAMPLE_SECONDS, when asked for (to attribute peaks and
    CPU time to a run's steps). A process that has exited no longer counts in the CPU seconds."""

    wall_seconds: float
    tree_peak_bytes: int
    own_maxrss_bytes: int
    returncode: int
    stopped: bool
    log: str
    started_at: float = 0.0
    cpu_seconds: float = 0.0  # user + system of the child and the descendants it waited for
    samples: list[tuple[float, int, float]] | None = None


def run_measured(
    command: list[str],
    environment: dict[str, str],
    log_file: Path,
    min_free_gb: float,
    keep_samples: bool = False,
) -> Measured:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tree_peak, stopped = 0, False
    samples: list[tuple[float, int, float]] = []
    started_at = time.time()
    started = time.perf_counter()
    with open(log_file, "w") as log:
        # A session of its own: the guard can stop the child's whole tree and nothing else.
        child = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            tree = _process_tree(child.pid)
            tree_bytes = sum(_rss_bytes(p) for p in tree)
            tree_peak = max(tree_peak, tree_bytes)
            if keep_samples:
                samples.append((time.time(), tree_bytes, sum(_cpu_seconds(p) for p in tree)))
            available = available_memory()
            if not stopped and available is not None and available < min_free_gb * GIB:
                _kill(child.pid, tree)
                stopped = True
            time.sleep(SAMPLE_SECONDS)
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    own = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Measured(
        wall_seconds=time.perf_counter() - started,
        tree_peak_bytes=max(tree_peak, own),
        own_maxrss_bytes=own,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        returncode=os.waitstatus_to_exitcode(status),
        stopped=stopped,
        log=str(log_file),
        started_at=started_at,
        samples=samples if keep_samples else None,
    )


def _process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc/<pid>/task/<tid>/children."""
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone meanwhile
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
            except OSError:
                continue
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # exited between listing and reading
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may hold spaces: the fields that follow it start after ')'.
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _kill(session: int, tree: list[int]) -> None:
    """SIGKILL the child's session and any descendant that left it."""
    with contextlib.suppress(OSError):
        os.killpg(session, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _step_command(args: argparse.Namespace, step: str, scale: float, result: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--step",
        step,
        "--step-scale",
        repr(scale),
        "--work",
        str(args.work),
        "--repeat",
        str(args.repeat),
        "--result",
        str(result),
    ]


# --- the stages, as a user runs them ---------------------------------------------------------


def graph_environment(work: Path, scale: float, run: str, start: dt.date) -> dict[str, str]:
    """An instance (DAGSTER_HOME), storage and settings of the bench's own, emptied first."""
    folder = scale_folder(work, scale) / run
    shutil.rmtree(folder, ignore_errors=True)
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (folder / "golden").mkdir()  # empty: fidelity_report says NO_GOLDEN_SAMPLE
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    # As on a user's machine, the package's bytecode is cached (`compile_package`); some
    # environments (this one, CI) turn the cache off.
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_LAKE_URL=str(lake_root(work, scale)),
        RLX_STORAGE_URL=str(folder / "storage"),
        RLX_METRICS_DIR=str(folder / "metrics"),
        RLX_GOLDEN_DIR=str(folder / "golden"),
        RLX_START_DATE=str(start - dt.timedelta(days=7)),
        RLX_SYMBOLS=SYMBOL,
        RLX_EXCHANGE=EXCHANGE,
    )
    return environment


def run_stages(args: argparse.Namespace, scale: float) -> dict[str, Any]:
    """The middle day's whole graph in one `dagster asset materialize --select '*'`, from empty
    storage on, as a user runs it. Cold start: the previous day's book_state is not there.

    Per step: its window (Dagster's STEP_START to STEP_SUCCESS), the process tree's CPU seconds
    and peak RSS within it. The default executor runs independent steps at the same time, so
    a step's CPU and peak are the process's while it ran, the steps beside it included; memory
    a step leaves to the allocator counts against the steps after it. Per stage: the seconds
    covered by its steps' windows (their union), the tree's CPU seconds within them and the
    peak. What is covered by no step's window (Python and Dagster start-up, run setup, the
    event log between steps) is reported as `outside steps`."""
    environment = graph_environment(args.work, scale, "stages", MIDDLE_DAY)
    compile_package()
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "rlx_assets", "--select", args.select]
    command += ["--partition", f"{MIDDLE_DAY}|{SYMBOL}"]
    print(f"  dagster asset materialize --select '{args.select}' ...", end="", flush=True)
    log = scale_folder(args.work, scale) / "stages" / "graph.log"
    measured = run_measured(command, environment, log, args.min_free_gb, keep_samples=True)
    print(f" {_figures(asdict(measured))}", flush=True)
    home = Path(environment["DAGSTER_HOME"])
    steps = step_windows(home)
    samples = measured.samples or []
    stage_of = {step: name for name, keys in STAGES for step in keys}
    stages: dict[str, Any] = {}
    windows: dict[str, list[tuple[float, float]]] = {}
    for step, (start, end, succeeded) in sorted(steps.items(), key=lambda item: item[1][0]):
        name = stage_of.get(step, "other")
        stage = stages.setdefault(name, {"steps": {}, "tree_peak_bytes": 0, "succeeded": True})
        stage["steps"][step] = {
            "seconds": end - start,
            "cpu_seconds": _cpu_within(samples, [(start, end)]),
            "tree_peak_bytes": _peak_within(samples, [(start, end)]),
        }
        stage["succeeded"] &= succeeded
        windows.setdefault(name, []).append((start, end))
    for name, stage in stages.items():
        covered = _union(windows[name])
        stage["wall_seconds"] = sum(end - start for start, end in covered)
        stage["cpu_seconds"] = _cpu_within(samples, covered)
        stage["tree_peak_bytes"] = _peak_within(samples, covered)
    # A part of the graph (--select) is complete when the stages it reached are.
    expected = [
        (name, keys) for name, keys in STAGES if args.select == "*" or any(k in steps for k in keys)
    ]
    missing = [name for name, keys in expected if not all(k in steps for k in keys)]
    if measured.stopped or measured.returncode != 0 or missing:
        reason = "stopped for memory" if measured.stopped else f"exit {measured.returncode}"
        print(f"    {reason}; stages not complete: {missing}; log {log}")
        if not measured.stopped:
            print("    " + "\n    ".join(log.read_text().splitlines()[-5:]))
    first_start = min((start for start, _, _ in steps.values()), default=measured.started_at)
    in_steps = sum(end - start for start, end in _union([(s, e) for s, e, _ in steps.values()]))
    return {
        "select": args.select,
        "graph": {k: v for k, v in asdict(measured).items() if k != "samples"},
        "stages": stages,
        "stages_missing": missing,
        "startup_seconds": first_start - measured.started_at,
        "outside_steps_seconds": measured.wall_seconds - in_steps,
        "bytes_read": raw_bytes_read(home, MIDDLE_DAY),
        "day_files_bytes": sum(
            lake_file(args.work, scale, table, MIDDLE_DAY).stat().st_size for table in TABLES
        ),
    }


def _union(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping (start, end) windows merged: the time they cover, once."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _peak_within(samples: list[tuple[float, int, float]], windows: list[tuple[float, float]]):
    return max((b for t, b, _ in samples if any(s <= t <= e for s, e in windows)), default=0)


def _cpu_within(samples: list[tuple[float, int, float]], windows: list[tuple[float, float]]):
    """The tree's CPU seconds spent within the windows (sampled at their edges)."""
    total = 0.0
    for start, end in windows:
        inside = [cpu for t, _, cpu in samples if start <= t <= end]
        if len(inside) > 1:
            total += inside[-1] - inside[0]
    return total


def compile_package() -> None:
    """The package's bytecode written, as a user's first run leaves it."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "rlx_assets")],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )


def step_windows(home: Path) -> dict[str, tuple[float, float, bool]]:
    """Per step of the instance's one run: (start, end) in epoch seconds, and success."""
    from dagster import DagsterEventType, DagsterInstance

    ends = {DagsterEventType.STEP_SUCCESS: True, DagsterEventType.STEP_FAILURE: False}
    windows: dict[str, tuple[float, float, bool]] = {}
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return windows
        starts: dict[str, float] = {}
        records = instance.all_logs(runs[0].run_id, of_type={DagsterEventType.STEP_START, *ends})
        for record in records:
            kind = record.dagster_event.event_type
            if kind == DagsterEventType.STEP_START:
                starts[record.step_key] = record.timestamp
            elif record.step_key in starts:
                windows[record.step_key] = (starts[record.step_key], record.timestamp, ends[kind])
    return windows


def raw_bytes_read(home: Path, day: dt.date) -> dict[str, Any]:
    """The raw assets' `bytes_read` and `bytes_read_by_dt` metadata, None where not reported."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    reported: dict[str, Any] = {}
    with DagsterInstance.from_config(str(home)) as instance:
        for asset in RAW_ASSETS:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[f"{day}|{SYMBOL}"]),
                limit=1,
            ).records
            materialization = records[0].asset_materialization if records else None
            metadata = materialization.metadata if materialization else {}
            total, by_dt = metadata.get("bytes_read"), metadata.get("bytes_read_by_dt")
            reported[asset] = {
                "bytes_read": None if total is None else int(total.value),
                "bytes_read_by_dt": None if by_dt is None else by_dt.value,
            }
    return reported


def run_lakeapi(args: argparse.Namespace, scale: float) -> dict[str, Any]:
    result_file = scale_folder(args.work, scale) / "lakeapi.result.json"
    result_file.unlink(missing_ok=True)
    print("  lakeapi load + replay of the day's dt= deltas ...", end="", flush=True)
    measured = run_measured(
        _step_command(args, "lakeapi", scale, result_file),
        os.environ.copy(),
        scale_folder(args.work, scale) / "lakeapi.log",
        args.min_free_gb,
    )
    print(f" {_figures(asdict(measured))}", flush=True)
    if measured.stopped or measured.returncode != 0 or not result_file.exists():
        return {"error": f"the lakeapi step did not finish; log {measured.log}", **asdict(measured)}
    return {**json.loads(result_file.read_text()), **asdict(measured)}


def step_lakeapi(work: Path, scale: float, repeat: int) -> dict[str, Any]:
    from bench_reconstruct import step_lakeapi as load_and_replay

    deltas = lake_file(work, scale, DELTAS_TABLE, MIDDLE_DAY)
    return {**load_and_replay(work, scale, repeat, deltas_path=deltas), "repeat": repeat}


# --- seven days in one process ---------------------------------------------------------------


def run_days7(args: argparse.Namespace) -> dict[str, Any]:
    first, last = multi_days(args.days7_count)
    scale = args.days7_scale
    environment = graph_environment(args.work, scale, "days7", first)
    command = [sys.executable, "scripts/run_pipeline.py", "--start-date", str(first)]
    # --verbose: a line per partition with its seconds and peak RSS (PARTITION_LINE).
    command += ["--end-date", str(last), "--symbols", SYMBOL, "--verbose"]
    print(f"  run_pipeline.py {first}..{last} at scale {scale:g} ...", end="", flush=True)
    log = scale_folder(args.work, scale) / "days7" / "run_pipeline.log"
    measured = run_measured(command, environment, log, args.min_free_gb)
    print(f" {_figures(asdict(measured))}", flush=True)
    days = [
        {"day": m[1], "seconds": float(m[3]), "peak_bytes": float(m[4]) * GIB, "peak_how": m[5]}
        for m in PARTITION_LINE.finditer(log.read_text())
    ]
    for day in days:
        print(
            f"    {day['day']}: {day['seconds']:.1f} s, peak RSS {_gib(day['peak_bytes'])}"
            f" ({day['peak_how']})"
        )
    trend = peak_trend_mb_per_day(days)
    if trend is not None:
        print(f"    daily peak trend from the second day: {trend:+.1f} MB a day (least squares)")
    if measured.stopped or measured.returncode != 0:
        reason = "stopped for memory" if measured.stopped else f"exit {measured.returncode}"
        print(f"    {reason} after {len(days)} day(s); log {log}")
    return {
        "scale": scale,
        "count": args.days7_count,
        "days": days,
        "peak_trend_mb_per_day": trend,
        **asdict(measured),
    }


# --- report ----------------------------------------------------------------------------------


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f} GiB"


def _figures(measured: dict[str, Any]) -> str:
    text = (
        f"{measured['wall_seconds']:.1f} s ({measured.get('cpu_seconds', 0):.1f} CPU-s), tree peak"
        f" RSS {_gib(measured['tree_peak_bytes'])}"
        f" (own ru_maxrss {_gib(measured['own_maxrss_bytes'])})"
    )
    return text + (" STOPPED: low memory" if measured["stopped"] else "")


def _verdict(passed: bool | None, text: str) -> str:
    label = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
    return f"{label}  {text}"


def scale_verdicts(scale: float, figures: dict[str, Any]) -> list[str]:
    stages, graph = figures["stages"], figures["graph"]
    complete = (
        not figures["stages_missing"]
        and graph["returncode"] == 0
        and not graph["stopped"]
        and all(stage["succeeded"] for stage in stages.values())
    )
    verdicts = []
    for name, stage in stages.items():
        verdicts.append(
            _verdict(
                stage["tree_peak_bytes"] <= MAX_STAGE_PEAK_BYTES and not graph["stopped"],
                f"scale {scale:g}: stage {name} peak RSS <= {_gib(MAX_STAGE_PEAK_BYTES)}"
                f" ({_gib(stage['tree_peak_bytes'])}{', stopped' if graph['stopped'] else ''})",
            )
        )
    verdicts.append(_verdict(complete, f"scale {scale:g}: every stage completed"))
    lakeapi, total = figures["lakeapi"], figures["graph_seconds"]
    ratio = total / figures["lakeapi_seconds"] if complete and figures["lakeapi_seconds"] else None
    whole = figures.get("select", "*") == "*"
    verdicts.append(
        _verdict(
            None if ratio is None or not whole else ratio <= MAX_STAGES_OVER_LAKEAPI,
            f"scale {scale:g}: "
            + (
                "the whole graph's"
                if whole
                else f"--select '{figures['select']}' (not the whole graph):"
            )
            + " seconds (start-up included) <= "
            f"{MAX_STAGES_OVER_LAKEAPI:g}x lakeapi load + replay"
            + (
                ""
                if ratio is None
                else f" ({total:.1f} s / {figures['lakeapi_seconds']:.1f} s = {ratio:.2f}x)"
            )
            + (f" [{lakeapi['error']}]" if "error" in lakeapi else ""),
        )
    )
    read, day_bytes = figures["bytes_read_total"], figures["day_files_bytes"]
    if read is None:
        verdicts.append(f"SKIP  scale {scale:g}: bytes read not reported")
    else:
        verdicts.append(
            _verdict(
                read <= MAX_BYTES_READ_OVER_DAY_FILES * day_bytes,
                f"scale {scale:g}: raw bytes read <= {MAX_BYTES_READ_OVER_DAY_FILES:g}x the day's"
                f" dt= files ({read:,} / {day_bytes:,} = {read / day_bytes:.2f}x)",
            )
        )
    return verdicts


def summarize_scale(figures: dict[str, Any]) -> dict[str, Any]:
    stages = figures["stages"]
    reported = [r["bytes_read"] for r in figures["bytes_read"].values()]
    lakeapi = figures["lakeapi"]
    figures["graph_seconds"] = figures["graph"]["wall_seconds"]
    figures["stages_seconds"] = sum(s["wall_seconds"] for s in stages.values())
    figures["stages_peak_bytes"] = max(
        [s["tree_peak_bytes"] for s in stages.values()] + [figures["graph"]["tree_peak_bytes"]]
    )
    figures["lakeapi_seconds"] = (
        None if "error" in lakeapi else lakeapi["load_seconds"] + lakeapi["replay_seconds"]
    )
    figures["bytes_read_total"] = None if None in reported else sum(reported)
    return figures


def cpu_floor_line(graph: dict[str, Any], lakeapi_seconds: float) -> str:
    """What the graph's CPU seconds allow on this machine's cores, at best (every core busy
    from the first second to the last), against 3x lakeapi: whether the speed criterion is a
    matter of scheduling or of CPU seconds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    floor = graph["cpu_seconds"] / cores
    budget = 3 * lakeapi_seconds * cores
    return (
        f"{graph['cpu_seconds']:.1f} CPU-s on {cores} cores: at best {floor:.1f} s"
        f" = {floor / lakeapi_seconds:.2f}x lakeapi; 3x allows {budget:.1f} CPU-s at full use"
    )


def print_scale(scale: float, figures: dict[str, Any]) -> None:
    part = "" if figures["select"] == "*" else f", --select '{figures['select']}'"
    print(f"\nfigures at scale {scale:g} ({MIDDLE_DAY}|{SYMBOL}{part}, cold start, one process):")
    for name, stage in figures["stages"].items():
        steps = ", ".join(
            f"{step} {figures_['seconds']:.1f} s" for step, figures_ in stage["steps"].items()
        )
        cores = stage["cpu_seconds"] / max(stage["wall_seconds"], 1e-9)
        print(
            f"  stage {name:<8} {stage['wall_seconds']:6.1f} s ({stage['cpu_seconds']:.1f} CPU-s,"
            f" {cores:.2f} cores), tree peak RSS {_gib(stage['tree_peak_bytes'])}  ({steps})"
        )
    print(
        f"  outside steps    {figures['outside_steps_seconds']:6.1f} s (start-up before the"
        f" first step {figures['startup_seconds']:.1f} s)"
    )
    label = "whole graph" if figures["select"] == "*" else "selection"
    print(f"  {label:<16} {_figures(figures['graph'])}")
    lakeapi = figures["lakeapi"]
    if "error" in lakeapi:
        print(f"  lakeapi          {lakeapi['error']}")
    else:
        print(
            f"  lakeapi          load {lakeapi['load_seconds']:.1f} s + replay "
            f"{lakeapi['replay_seconds']:.1f} s = {figures['lakeapi_seconds']:.1f} s "
            f"(best of {lakeapi['repeat']}; {lakeapi['rows']:,} rows; child peak RSS "
            f"{_gib(lakeapi['tree_peak_bytes'])})"
        )
        print(f"  CPU floor        {cpu_floor_line(figures['graph'], figures['lakeapi_seconds'])}")
    for asset, reported in figures["bytes_read"].items():
        total = reported["bytes_read"]
        print(
            f"  {asset:<18} bytes read "
            + (
                "not reported"
                if total is None
                else f"{total:,} by dt {reported['bytes_read_by_dt']}"
            )
        )
    print(f"  day's dt= files  {figures['day_files_bytes']:,} bytes")


def days7_verdicts(figures: dict[str, Any]) -> list[str]:
    days, expected = figures["days"], figures["count"]
    scale = f"{expected} days, scale {figures['scale']:g}"
    complete = len(days) == expected and figures["returncode"] == 0 and not figures["stopped"]
    verdicts = [_verdict(complete, f"{scale}: all {expected} days ran ({len(days)})")]
    if days:
        peak = max(day["peak_bytes"] for day in days)
        verdicts.append(
            _verdict(
                peak <= MAX_STAGE_PEAK_BYTES and not figures["stopped"],
                f"{scale}: every day's peak RSS <= {_gib(MAX_STAGE_PEAK_BYTES)} (max {_gib(peak)})",
            )
        )
    if complete:
        change = days[-1]["seconds"] / days[0]["seconds"] - 1
        verdicts.append(
            _verdict(
                abs(change) <= MAX_LAST_DAY_TIME_CHANGE,
                f"{scale}: last day's seconds within {MAX_LAST_DAY_TIME_CHANGE:.0%} of"
                f" the first's ({days[-1]['seconds']:.1f} s vs {days[0]['seconds']:.1f} s,"
                f" {change:+.1%})",
            )
        )
    return verdicts


def volume_verdicts(scales: dict[str, Any]) -> list[str]:
    """Every scale whose double is also measured: the peak at 2x volume against the 1x one."""
    verdicts = []
    for key, single in scales.items():
        double = scales.get(str(2 * float(key)))
        if double is None:
            continue
        ratio = double["stages_peak_bytes"] / single["stages_peak_bytes"]
        stopped = double["graph"]["stopped"]
        verdicts.append(
            _verdict(
                ratio <= MAX_DOUBLE_VOLUME_PEAK_RATIO and not stopped,
                f"scale {2 * float(key):g} vs {float(key):g}: peak RSS <= "
                f"{MAX_DOUBLE_VOLUME_PEAK_RATIO:g}x ({_gib(double['stages_peak_bytes'])} / "
                f"{_gib(single['stages_peak_bytes'])} = {'>= ' if stopped else ''}{ratio:.2f}x)",
            )
        )
    return verdicts


def run(args: argparse.Namespace) -> int:
    print(f"work folder {args.work}; {EXCHANGE} {SYMBOL}")
    results: dict[str, Any] = {"scales": {}}
    for scale in args.scales:
        print(f"\nscale {scale:g}:")
        lake = build_lake(args, scale, dt_folders(MIDDLE_DAY, MIDDLE_DAY))
        figures = {"lake": lake, **run_stages(args, scale)}
        figures["lakeapi"] = run_lakeapi(args, scale)
        results["scales"][str(scale)] = summarize_scale(figures)
    if args.days7:
        print(f"\n{args.days7_count} days at scale {args.days7_scale:g}:")
        lake = build_lake(args, args.days7_scale, dt_folders(*multi_days(args.days7_count)))
        results["days7"] = {"lake": lake, **run_days7(args)}

    verdicts = []
    for scale in args.scales:
        print_scale(scale, results["scales"][str(scale)])
        verdicts += scale_verdicts(scale, results["scales"][str(scale)])
    verdicts += volume_verdicts(results["scales"])
    if args.days7:
        verdicts += days7_verdicts(results["days7"])
    print("\nverdicts (the criteria are defined at scales 1 and 2; other scales show the trend):")
    for line in verdicts:
        print(f"  {line}")
    results["verdicts"] = verdicts
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"\nall figures: {args.output}")
    return 0


def _scales(text: str) -> list[float]:
    if text.strip().lower() == "none":
        return []
    scales = [float(part) for part in text.split(",") if part.strip()]
    if not all(s > 0 and math.isfinite(s) for s in scales):
        raise argparse.ArgumentTypeError(f"{text!r}: scales must be positive numbers")
    return scales


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales",
        type=_scales,
        default=[1.0, 2.0],
        help="comma-separated day volumes (1.0 = a busy day; default 1,2); 'none' skips the stages",
    )
    parser.add_argument(
        "--days7", action="store_true", help="also run_pipeline.py over 7 days in one process"
    )
    parser.add_argument(
        "--days7-scale", type=float, default=1.0, help="volume of the 7-day run (default 1)"
    )
    parser.add_argument(
        "--days7-count",
        type=int,
        default=7,
        help="days of that run (default 7, the criteria's; more to watch the memory's trend)",
    )
    parser.add_argument(
        "--select",
        default="*",
        help="the assets to materialize (dagster's --select; default '*', the criteria's)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlx-bench-graph"))
    parser.add_argument(
        "--output", type=Path, help="JSON of every figure (default <work>/results-graph.json)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="lakeapi's timed runs (its best counts)"
    )
    parser.add_argument("--rebuild", action="store_true", help="rewrite the lakes of these scales")
    parser.add_argument(
        "--min-free-gb",
        type=float,
        default=1.5,
        help="stop a child when the machine has less memory available than this",
    )
    parser.add_argument("--step", choices=("build", "lakeapi"), help=argparse.SUPPRESS)
    parser.add_argument("--step-scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--days", nargs="*", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.output = args.output or args.work / "results-graph.json"

    if args.step == "build":
        result = step_build(args.work, args.step_scale, args.days)
    elif args.step == "lakeapi":
        result = step_lakeapi(args.work, args.step_scale, args.repeat)
    if args.step:
        args.result.write_text(json.dumps(result, indent=2))
        return 0

    if not (args.days7_scale > 0 and math.isfinite(args.days7_scale)):
        parser.error("--days7-scale must be a positive number")
    if not args.scales and not args.days7:
        parser.error("nothing to run: --scales none without --days7")
    if args.rebuild:
        for scale in {*args.scales, *([args.days7_scale] if args.days7 else [])}:
            shutil.rmtree(lake_root(args.work, scale), ignore_errors=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
