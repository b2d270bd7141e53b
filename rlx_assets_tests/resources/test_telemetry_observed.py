"""`@observed` on small assets: what it hands to telemetry, and what it never does (fail a
run, keep the asset from being defined, write anything when telemetry is off)."""

import datetime as dt
import json
from pathlib import Path

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    MaterializeResult,
    Output,
    asset,
    materialize,
)

from rlx_assets.partitions import market_partitions
from rlx_assets.resources.telemetry import TELEMETRY, observed, telemetry_resource
from rlx_assets.settings import RlxSettings
from rlx_assets.telemetry import metrics as m

PARTITIONS = market_partitions(dt.date(2024, 8, 1), ["BTC-USDT"])
KEY = "2024-08-08|BTC-USDT"


@asset(
    partitions_def=PARTITIONS,
    check_specs=[AssetCheckSpec("rows_positive", asset="yielded")],
)
@observed
def yielded(context):
    yield Output(None, metadata={"rows_read": 10})
    yield AssetCheckResult(check_name="rows_positive", passed=False, metadata={"threshold": 1})


@asset(partitions_def=PARTITIONS)
@observed
def returned(context) -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 3})


@asset(partitions_def=PARTITIONS)
@observed
def broken(context):
    raise RuntimeError("the asset's own failure")


def _settings(tmp_path: Path, **overrides) -> RlxSettings:
    values = {"metrics_dir": str(tmp_path / "metrics"), "start_date": dt.date(2024, 8, 1)}
    return RlxSettings(_env_file=None, **{**values, **overrides})


def _lines(tmp_path: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((tmp_path / "metrics").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _metric_names(line: dict) -> set[str]:
    return {
        metric["name"]
        for resource in line["resourceMetrics"]
        for scope in resource["scopeMetrics"]
        for metric in scope["metrics"]
    }


def test_the_decorated_asset_asks_for_the_telemetry_resource() -> None:
    assert TELEMETRY in yielded.required_resource_keys
    assert TELEMETRY in returned.required_resource_keys


def test_yielded_and_returned_results_each_make_one_line(tmp_path: Path) -> None:
    resources = {TELEMETRY: telemetry_resource(_settings(tmp_path))}
    result = materialize([yielded, returned], resources=resources, partition_key=KEY)
    assert result.success
    lines = _lines(tmp_path)
    assert len(lines) == 2
    assert all({m.MEMORY_PEAK, m.TELEMETRY_DURATION} <= _metric_names(line) for line in lines)
    assert sum(m.CHECK_RESULT in _metric_names(line) for line in lines) == 1


def test_a_failing_asset_fails_as_before_and_exports_nothing(tmp_path: Path) -> None:
    resources = {TELEMETRY: telemetry_resource(_settings(tmp_path))}
    result = materialize([broken], resources=resources, partition_key=KEY, raise_on_error=False)
    assert not result.success
    assert "the asset's own failure" in str(result.get_step_failure_events()[0].event_specific_data)
    assert _lines(tmp_path) == []


def test_telemetry_off_writes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, telemetry_enabled=False)
    resources = {TELEMETRY: telemetry_resource(settings)}
    assert materialize([yielded, returned], resources=resources, partition_key=KEY).success
    assert not (tmp_path / "metrics").exists()


def test_metrics_are_local_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"RLX_METRICS_DIR='s3://bucket/metrics'.*local folder"):
        telemetry_resource(_settings(tmp_path, metrics_dir="s3://bucket/metrics"))


@asset
@observed
def unpartitioned(context) -> Output:
    return Output(None, metadata={"rows": 1})


def test_an_unpartitioned_asset_is_observed_too(tmp_path: Path) -> None:
    resources = {TELEMETRY: telemetry_resource(_settings(tmp_path))}
    assert materialize([unpartitioned], resources=resources).success
    (line,) = _lines(tmp_path)
    metric = line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    attributes = {
        a["key"]: a["value"]["stringValue"] for a in metric["gauge"]["dataPoints"][0]["attributes"]
    }
    assert attributes["asset"] == "unpartitioned" and attributes["date"] == ""
