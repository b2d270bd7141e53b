"""Each error a user can make in the shell: one line naming what to fix, a non-zero exit status,
a traceback only with --verbose. The scripts and the Dagster CLI run as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlx_assets_tests.conftest import REPO, SLICE

NOT_A_PARTITION = 2


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "AWS_", "PYTHONWARN"))
    }
    missing = str(tmp_path / "no-aws-config")
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_STORAGE_URL=str(tmp_path / "assets"),
        RLX_METRICS_DIR=str(tmp_path / "metrics"),
        RLX_START_DATE="2024-08-01",
        RLX_SYMBOLS="BTC-USDT",
        # No credentials anywhere: not in the environment, files or an instance role.
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        AWS_EC2_METADATA_DISABLED="true",
        **{f"RLX_{name.upper()}": value for name, value in settings.items()},
    )
    return environment


def _script(name: str, arguments: list[str], environment: dict[str, str]):
    # Run as a user runs it: the script itself (shebang, executable bit), with the project's
    # Python first on PATH as `poetry run` puts it.
    environment = {
        **environment,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
    }
    return subprocess.run(
        [str(REPO / "scripts" / name), *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_the_scripts_are_executable_with_a_shebang() -> None:
    for script in ("run_pipeline.py", "run_analysis.py", "capture_golden.py"):
        path = REPO / "scripts" / script
        assert os.access(path, os.X_OK), script
        assert path.read_text().startswith("#!/usr/bin/env python3\n"), script


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--start-date", "2019-01-01", "--end-date", "2019-01-02"],
            ["2019-01-01 is not a partition", "from 2024-08-01 (RLX_START_DATE)"],
        ),
        (
            ["--start-date", "2024-08-08", "--end-date", "2024-08-08", "--symbols", "ETH-USDT"],
            ["ETH-USDT not in RLX_SYMBOLS (BTC-USDT)"],
        ),
        (
            ["--start-date", "2024-08-08", "--end-date", "2999-01-01"],
            ["2999-01-01 is not a partition", "(yesterday, UTC)"],
        ),
    ],
)
def test_run_pipeline_refuses_keys_that_are_not_partitions(
    tmp_path: Path, arguments: list[str], expected: list[str]
) -> None:
    completed = _script("run_pipeline.py", arguments, _environment(tmp_path))
    assert completed.returncode == NOT_A_PARTITION
    (line,) = _lines(completed.stderr)
    assert line.startswith("run_pipeline: ")
    for text in expected:
        assert text in line
    assert not (tmp_path / "assets").exists()  # nothing written
    assert not any((tmp_path / "dagster_home").rglob("*.db"))  # no run recorded


def test_run_pipeline_shows_the_traceback_only_with_verbose(tmp_path: Path) -> None:
    arguments = ["--start-date", "2019-01-01", "--end-date", "2019-01-01", "--verbose"]
    completed = _script("run_pipeline.py", arguments, _environment(tmp_path))
    assert completed.returncode != 0
    assert "Traceback" in completed.stderr and "UserError" in completed.stderr


def test_run_pipeline_names_an_invalid_setting(tmp_path: Path) -> None:
    environment = _environment(tmp_path, synthetic_scale="-1")
    completed = _script(
        "run_pipeline.py", ["--start-date", "2024-08-08", "--end-date", "2024-08-08"], environment
    )
    assert completed.returncode == NOT_A_PARTITION
    (line,) = _lines(completed.stderr)
    assert line.startswith("run_pipeline: invalid setting RLX_SYNTHETIC_SCALE")


@pytest.mark.parametrize(
    ("lake", "expected"),
    [
        ("{tmp}/no-such-lake", "nothing is stored at the lake root (check RLX_LAKE_URL)"),
        ("s3://rlx-no-bucket/lake", "no AWS credentials found (set AWS_ACCESS_KEY_ID"),
    ],
)
def test_run_pipeline_says_what_is_wrong_with_the_lake_in_one_line(
    tmp_path: Path, lake: str, expected: str
) -> None:
    # The endpoint is a closed port on loopback: nothing leaves the machine.
    environment = _environment(
        tmp_path, lake_url=lake.format(tmp=tmp_path), s3_endpoint_url="http://127.0.0.1:9"
    )
    arguments = ["--start-date", "2024-08-08", "--end-date", "2024-08-08", "--no-progress"]
    completed = _script("run_pipeline.py", arguments, environment)
    assert completed.returncode == 1
    (line,) = _lines(completed.stderr)
    assert line.startswith("run_pipeline: 2024-08-08|BTC-USDT failed: ")
    assert expected in line
    assert "Traceback" not in completed.stdout + completed.stderr
    # The summary table still says which partition failed.
    assert "2024-08-08|BTC-USDT" in completed.stdout and "FAILED" in completed.stdout


def test_run_pipeline_quiet_console_summary_and_a_failed_check(tmp_path: Path) -> None:
    """A day whose origin times are 5% null: the ERROR check fails, the run goes on."""
    environment = _environment(tmp_path, lake_url="synthetic://?faults=origin_time_nulls=0.05")
    arguments = ["--start-date", "2024-08-08", "--end-date", "2024-08-08", "--no-progress"]
    completed = _script("run_pipeline.py", arguments, environment)
    assert completed.returncode == 1, completed.stderr[-3000:]
    header, row = _lines(completed.stdout)[:2]
    assert header.split() == [
        "partition",
        "events",
        "checks",
        "ok",
        "failed",
        "seconds",
        "peak",
        "GiB",
        "status",
    ]
    assert row.startswith("2024-08-08|BTC-USDT") and row.endswith("ok")
    failed = int(row.split()[3])
    assert failed >= 1
    errors = _lines(completed.stderr)
    assert len(errors) == failed  # one line per failed check, nothing else on the console
    assert all(
        line.startswith("run_pipeline: check failed: 2024-08-08|BTC-USDT ") for line in errors
    )
    assert any("origin_time_complete (ERROR): origin_time_invalid_share = " in e for e in errors)
    assert not any(word in completed.stderr for word in ("DEBUG", "Warning", "Traceback"))


def test_run_analysis_offers_json_csv_and_a_table_within_100_columns(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(SLICE))
    arguments = ["--start-date", "2024-08-08", "--end-date", "2024-08-09"]
    table = _script("run_analysis.py", arguments, environment)
    assert table.returncode == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 100
    assert "2024-08-09 BTC-USDT: strategy full_replay, 912 delta messages" in table.stdout
    as_json = _script("run_analysis.py", [*arguments, "--format", "json"], environment)
    rows = json.loads(as_json.stdout)
    assert len(rows) == 6 and rows[0]["table"] == "trades"
    as_csv = _script("run_analysis.py", [*arguments, "--format", "csv"], environment)
    assert as_csv.stdout.splitlines()[0].startswith("date,symbol,table,")
    assert len(as_csv.stdout.splitlines()) == 7


def test_run_analysis_says_what_is_wrong_with_the_lake_in_one_line(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(tmp_path / "no-such-lake"))
    arguments = ["--start-date", "2024-08-08", "--end-date", "2024-08-08"]
    completed = _script("run_analysis.py", arguments, environment)
    assert completed.returncode == 1
    (line,) = _lines(completed.stderr)
    assert line.startswith("run_analysis: ") and "RLX_LAKE_URL" in line


def _dagster_materialize(environment: dict[str, str], *extra: str):
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "rlx_assets", "--select", "*"]
    return subprocess.run(
        [*command, "--partition", "2024-08-08|BTC-USDT", *extra],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_dagster_cli_tells_a_project_error_once_and_short(tmp_path: Path) -> None:
    environment = _environment(tmp_path, lake_url=str(tmp_path / "no-such-lake"))
    reason = "nothing is stored at the lake root (check RLX_LAKE_URL)"
    # The project's console logger (Definitions' "console"), chosen by run config.
    short = _dagster_materialize(
        environment, "--config-json", '{"loggers": {"console": {"config": {}}}}'
    )
    assert short.returncode != 0
    assert short.stderr.count(reason) == 1
    assert "Traceback" not in short.stderr and "Stack Trace" not in short.stderr
    assert " DEBUG " not in short.stderr.replace("RUN_START", "")
    # Dagster's default console: the error as a Failure of each raw step, its cause named
    # without the frames of the libraries that met it.
    default = _dagster_materialize(environment)
    assert default.returncode != 0
    assert reason in default.stderr
    assert "LakeAccessError: " in default.stderr
    assert not any(name in default.stderr for name in ("fsspec/", "pyarrow/", "rlx_assets/lake/"))
