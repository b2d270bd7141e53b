"""The one Definitions object (workspace.yaml and `-m rlx_assets` load it)."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from rlx_assets.console import run_console_logger
from rlx_assets.defs.book.assets import build_book_assets
from rlx_assets.defs.catalog import catalog_attributes
from rlx_assets.defs.quality.assets import (
    build_fidelity_assets,
    build_microstructure_assets,
    build_quality_assets,
)
from rlx_assets.defs.raw.assets import build_raw_assets
from rlx_assets.partitions import market_partitions
from rlx_assets.resources.golden import GoldenResource
from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets.resources.lake import LakeResource
from rlx_assets.resources.quality import QualityResource
from rlx_assets.resources.replay import ReplayResource
from rlx_assets.resources.telemetry import TELEMETRY, telemetry_resource
from rlx_assets.settings import RlxSettings, get_settings

ALL_ASSETS_JOB = "all_assets"


def build_definitions(settings: RlxSettings) -> Definitions:
    partitions = market_partitions(settings.start_date, settings.symbols)
    return Definitions(
        assets=catalog_attributes(
            [
                *build_raw_assets(partitions),
                *build_book_assets(partitions),
                *build_quality_assets(partitions),
                *build_fidelity_assets(partitions),
                *build_microstructure_assets(partitions),
            ],
            settings,
        ),
        jobs=[
            define_asset_job(
                ALL_ASSETS_JOB,
                selection=AssetSelection.all(),
                description="Every asset of one date|symbol partition, raw to events.",
            )
        ],
        resources={
            "io_manager": ParquetIOManager(
                base_url=settings.storage_url,
                exchange=settings.exchange,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_anon=settings.s3_anon,
                s3_region=settings.s3_region,
                compression=settings.parquet_compression,
            ),
            "lake": LakeResource(
                url=settings.lake_url,
                exchange=settings.exchange,
                synthetic_scale=settings.synthetic_scale,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_anon=settings.s3_anon,
                instrument_grids={s: list(g) for s, g in settings.instrument_grids.items()},
            ),
            "quality": QualityResource.from_settings(settings),
            "replay": ReplayResource(chunk_rows=settings.replay_chunk_rows),
            "golden": GoldenResource(
                directory=settings.golden_dir,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_anon=settings.s3_anon,
                s3_region=settings.s3_region,
            ),
            TELEMETRY: telemetry_resource(settings),
        },
        # Short console output; the instance's event log (the UI) keeps every event.
        loggers={"console": run_console_logger},
        # One machine: steps run in the run's process (a multiprocess step costs ~5 s of startup).
        executor=in_process_executor,
    )


defs = build_definitions(get_settings())
