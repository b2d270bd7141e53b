"""The whole graph with the lake, the golden samples and the asset storage all on S3 (a real
moto server on loopback): what a team sharing storage runs."""

from pathlib import Path

import polars as pl
import pytest

from rlx_assets_tests import s3_server as s3
from rlx_assets_tests.conftest import FIXTURE_DAYS, make_settings, materialize_day

aws_env, s3_server = s3.aws_env, s3.s3_server


@pytest.fixture
def bucket(s3_server: str, aws_env: None) -> str:
    return s3.bucket_with_slice(s3_server)


def test_both_days_from_and_to_s3(s3_server: str, bucket: str, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        lake=f"s3://{bucket}/lake",
        storage_url=f"s3://{bucket}/assets",
        golden_dir=f"s3://{bucket}/lake/golden",
        s3_endpoint_url=s3_server,
    )
    for day in FIXTURE_DAYS:
        result = materialize_day(settings, day)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
    book = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["reconstructed_book"]
    assert book["seed"].value == "previous_book_state"  # day 2 read day 1's state from S3
    assert book["path"].value.startswith(f"s3://{bucket}/assets/reconstructed_book/")
    raw = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["raw_trades"]
    assert all(f["etag"] for f in raw["source_files"].value)  # S3 provenance
    options = {"aws_endpoint_url": s3_server, "aws_region": s3.REGION}
    events = pl.scan_parquet(
        f"s3://{bucket}/assets/unified_events/**/*.parquet",
        hive_partitioning=True,
        storage_options=options,
    ).collect()
    assert events["dt"].n_unique() == 2
    assert events.filter(pl.col("event_type") == "TRADE")["trade_id"].is_duplicated().sum() == 0
