"""What a user types: the Dagster CLI and the scripts, as subprocesses."""

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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


def test_run_pipeline_rejects_a_backwards_range(tmp_path: Path) -> None:
    script = [sys.executable, "scripts/run_pipeline.py"]
    arguments = ["--start-date", "2024-08-09", "--end-date", "2024-08-08"]
    completed = _run([*script, *arguments], _environment(tmp_path))
    assert completed.returncode == 2 and "before --start-date" in completed.stderr


def _quick_start_pipeline_command() -> list[str]:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^poetry run (python scripts/run_pipeline\.py .*)$", readme, re.MULTILINE)
    assert match, "the README's quick start has no run_pipeline command"
    return shlex.split(match.group(1))


def test_the_readme_quick_start_runs_the_pipeline_on_the_embedded_default(tmp_path: Path) -> None:
    command = _quick_start_pipeline_command()
    environment = _environment(tmp_path)  # no lake given: synthetic://
    completed = _run([sys.executable, *command[1:]], environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "partition(s) materialized" in completed.stdout
    days = re.findall(r"--(?:start|end)-date (\S+)", " ".join(command))
    for day in days:
        path = partition_path(
            str(tmp_path / "assets"), "unified_events", "BINANCE", "BTC-USDT", day
        )
        assert Path(path).is_file(), path


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
