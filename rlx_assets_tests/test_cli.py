"""What a user types: the Dagster CLI and the scripts, as subprocesses (one in-process, to
raise an interrupt at a chosen point)."""

import csv
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

import rlx_assets.pipeline
from rlx_assets.resources.io_manager import partition_path
from rlx_assets_tests.conftest import FIXTURE_DAYS, REPO, SLICE


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_STORAGE_URL=str(tmp_path / "assets"),
        RLX_METRICS_DIR=str(tmp_path / "metrics"),
        RLX_START_DATE="2024-08-01",
        **{f"RLX_{name.upper()}": value for name, value in settings.items()},
    )
    return environment


def _run(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        arguments, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )


def test_dagster_asset_materialize_runs_both_fixture_days(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(SLICE))
    dagster = str(Path(sys.executable).with_name("dagster"))
    for day in FIXTURE_DAYS:
        command = [dagster, "asset", "materialize", "-m", "rlx_assets", "--select", "*"]
        completed = _run([*command, "--partition", f"{day}|BTC-USDT"], environment)
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert "RUN_SUCCESS" in completed.stderr
    last = partition_path(str(tmp_path / "assets"), "unified_events", "BINANCE", "BTC-USDT", day)
    assert Path(last).is_file()
    # The run is recorded in the instance the UI reads.
    assert any((tmp_path / "dagster_home").rglob("*.db"))
    # Each asset step of each run appended its metrics (one OTLP-JSON line) to the day's file.
    (metrics,) = (tmp_path / "metrics").glob("rlx-metrics-*.jsonl")
    assert len(metrics.read_text().splitlines()) == 2 * 8


def test_run_pipeline_says_in_one_line_why_a_partition_failed(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(tmp_path / "no-such-lake"))
    script = [sys.executable, "scripts/run_pipeline.py"]
    completed = _run(
        [*script, "--start-date", "2024-08-08", "--end-date", "2024-08-08"], environment
    )
    assert completed.returncode == 1
    reasons = [line for line in completed.stderr.splitlines() if line.startswith("run_pipeline:")]
    assert len(reasons) == 1
    assert "2024-08-08|BTC-USDT failed" in reasons[0]
    assert "nothing is stored at the lake root" in reasons[0]


def _started_steps(home: Path) -> set[str]:
    if not any(home.rglob("*.db")):
        return set()
    with DagsterInstance.from_config(str(home)) as instance:
        return {
            record.event_log_entry.step_key
            for run in instance.get_runs()
            for record in instance.get_records_for_run(
                run.run_id, of_type=DagsterEventType.STEP_START
            ).records
        }


def test_run_pipeline_interrupted_lets_running_steps_end_and_says_so(tmp_path: Path) -> None:
    environment = _environment(tmp_path, synthetic_scale="0.05")
    script = [sys.executable, "scripts/run_pipeline.py", "--start-date", "2024-08-08"]
    process = subprocess.Popen(
        [*script, "--end-date", "2024-08-09"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _started_steps(tmp_path / "dagster_home"):
            assert process.poll() is None and time.monotonic() < deadline, "no step started"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 1, stderr[-3000:]
    reasons = [line for line in stderr.splitlines() if line.startswith("run_pipeline:")]
    assert len(reasons) == 1 and reasons[0].startswith(
        "run_pipeline: 2024-08-08|BTC-USDT failed: interrupted (Ctrl-C or the run's termination): "
        "the steps running finished, the rest did not start (run "
    ), reasons
    # The raw steps running went to their end; the steps after them never started, and the
    # second day was not begun.
    started = _started_steps(tmp_path / "dagster_home")
    assert started and all(step.startswith("raw_") for step in started), started


def test_run_pipeline_interrupted_between_partitions_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Ctrl-C outside a run (Dagster handles those inside one) reaches the script as
    # KeyboardInterrupt: here, as the second partition's run is about to start.
    for name, value in _environment(tmp_path, lake_url=str(SLICE)).items():
        monkeypatch.setenv(name, value)
    # The script as a module (its folder on the path for its `_common`), not an installed one.
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("run_pipeline", REPO / "scripts/run_pipeline.py")
    run_pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_pipeline)

    started = []

    def interrupted_after_one(settings, instance, day, symbol, console_level):
        if started:
            raise KeyboardInterrupt
        started.append(day)
        return real_run_partition(settings, instance, day, symbol, console_level)

    real_run_partition = rlx_assets.pipeline.run_partition
    monkeypatch.setattr(rlx_assets.pipeline, "run_partition", interrupted_after_one)
    arguments = ["--start-date", "2024-08-08", "--end-date", "2024-08-09", "--no-progress"]
    try:
        code = run_pipeline.main(arguments)
    except KeyboardInterrupt:  # not raised on: it would stop the whole test session
        pytest.fail("run_pipeline let a KeyboardInterrupt out")
    assert code == 130
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("run_pipeline:")] == [
        "run_pipeline: interrupted between two partitions; the partitions finished so far are"
        " kept (see the Dagster UI)"
    ]
    assert started == [FIXTURE_DAYS[0]]


def test_run_pipeline_rejects_a_backwards_range(tmp_path: Path) -> None:
    script = [sys.executable, "scripts/run_pipeline.py"]
    arguments = ["--start-date", "2024-08-09", "--end-date", "2024-08-08"]
    completed = _run([*script, *arguments], _environment(tmp_path))
    assert completed.returncode == 2 and "before --start-date" in completed.stderr


def _quick_start_commands() -> list[str]:
    """The shell lines of the README's quick start, as written."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quick start") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's quick start has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _quick_start_pipeline_command() -> str:
    (line,) = [line for line in _quick_start_commands() if "scripts/run_pipeline.py" in line]
    return line


def _fresh_clone(folder: Path) -> Path:
    """The repository's tracked files (what a clone holds) copied into `folder`, with the
    environment the tests run in as its in-project `.venv` (poetry.toml: in-project)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tracked files cannot be listed")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: {listed.stderr.decode().strip()}")
    clone = folder / "rlx_assets"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    # numba's kernel cache comes along, still valid (it is keyed by the sources' times, which
    # copy2 keeps): the kernels are compiled once per test run (scripts/warm_kernels.py), not
    # again in each clone. A user's first run on a fresh clone compiles them: about a minute.
    for kernel in (REPO / "rlx_assets").rglob("__pycache__/*.nb[ci]"):
        target = clone / kernel.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel, target)
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return clone


def _user_shell(clone: Path) -> dict[str, str]:
    """A shell as a user has it after `poetry install`: no RLX_ setting, no DAGSTER_HOME, no
    activated environment. Poetry runs the command in the clone's `.venv`; without Poetry on
    PATH the `.venv`'s bin folder stands in for it. The clone's own package comes first on the
    import path (the environment's editable install points at this checkout)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RLX_") and name not in ("DAGSTER_HOME", "VIRTUAL_ENV")
    }
    if shutil.which("poetry") is None:
        environment["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{environment['PATH']}"
    environment["PYTHONPATH"] = str(clone)
    return environment


@pytest.mark.slow
def test_the_readme_quick_start_runs_the_pipeline_on_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start's pipeline command, word for word in a shell, in a fresh copy of the
    repository: the project's own instance (dagster.yaml) and data/assets, as a user meets them."""
    clone = _fresh_clone(tmp_path)
    command = _quick_start_pipeline_command()
    assert command.startswith("poetry run "), command
    if shutil.which("poetry") is None:
        command = command.removeprefix("poetry run ")
    completed = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=_user_shell(clone),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "partition(s) materialized" in completed.stdout
    days = re.findall(r"--(?:start|end)-date (\S+)", command)
    assert len(days) == 2
    for day in days:
        path = partition_path("data/assets", "unified_events", "BINANCE", "BTC-USDT", day)
        assert (clone / path).is_file(), path
    # The runs are in the project's instance (dagster.yaml at the root: data/dagster), where
    # `dagster dev` started in the clone finds them (its paths are relative to the clone).
    monkeypatch.chdir(clone)
    with DagsterInstance.from_config(str(clone)) as instance:
        runs = instance.get_runs()
        assert {run.tags.get("dagster/partition") for run in runs} == {
            f"{day}|BTC-USDT" for day in days
        }
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
    assert (clone / "data" / "dagster").is_dir()
    assert list((clone / "data" / "metrics").glob("rlx-metrics-*.jsonl"))


def test_the_readme_names_the_test_command() -> None:
    assert "poetry run pytest" in (REPO / "README.md").read_text()


def test_run_analysis_reports_completeness_and_strategy_per_day(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(SLICE))
    output = tmp_path / "analysis.csv"
    arguments = ["--start-date", "2024-08-07", "--end-date", "2024-08-09", "--csv", str(output)]
    completed = _run([sys.executable, "scripts/run_analysis.py", *arguments], environment)
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = list(csv.DictReader(output.open()))
    by_day = {(row["date"], row["table"]): row for row in rows}
    assert by_day["2024-08-07", "trades"]["strategy"] == "no_data"
    assert by_day["2024-08-08", "book_delta_v2"]["strategy"] == "full_replay"
    # The last ~1.3 s filed under 2024-08-08 carry 2024-08-09 exchange stamps.
    assert float(by_day["2024-08-08", "trades"]["origin_out_of_day_share"]) > 0
    assert by_day["2024-08-09", "book_delta_v2"]["delta_messages"] == "912"
    assert "full_replay" in completed.stdout
