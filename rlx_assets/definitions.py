"""The code location: `rlx_definitions`, built from the settings when Dagster loads it
(workspace.yaml, `-m rlx_assets` and `-m rlx_assets.definitions` all reach it), not at import."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, definitions

from rlx_assets.allocator import limit_malloc_arenas
from rlx_assets.console import run_console_logger
from rlx_assets.defs.book.assets import build_book_assets
from rlx_assets.defs.catalog import catalog_attributes
from rlx_assets.defs.quality.assets import (
    build_fidelity_assets,
    build_microstructure_assets,
    build_quality_assets,
)
from rlx_assets.defs.raw.assets import build_raw_assets
from rlx_assets.executors import executor_for
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
    # Before any step's threads: every process that runs steps builds the definitions first.
    limit_malloc_arenas()
    partitions = market_partitions(settings.start_date, settings.symbols)
    # Every resource that reaches S3 gets the same endpoint and access (credentials stay in
    # the environment, never in a resource's config, which the UI shows).
    s3 = {
        "s3_endpoint_url": settings.s3_endpoint_url,
        "s3_anon": settings.s3_anon,
        "s3_region": settings.s3_region,
    }
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
                **s3,
                compression=settings.parquet_compression,
            ),
            "lake": LakeResource(
                url=settings.lake_url,
                exchange=settings.exchange,
                synthetic_scale=settings.synthetic_scale,
                **s3,
                instrument_grids={s: list(g) for s, g in settings.instrument_grids.items()},
            ),
            "quality": QualityResource.from_settings(settings),
            "replay": ReplayResource(chunk_rows=settings.replay_chunk_rows),
            "golden": GoldenResource(
                directory=settings.golden_dir,
                **s3,
            ),
            TELEMETRY: telemetry_resource(settings),
        },
        # Short console output; the instance's event log (the UI) keeps every event.
        loggers={"console": run_console_logger},
        # One machine (default): steps run in the run's process (a multiprocess step costs ~5 s
        # of startup); RLX_EXECUTOR=celery: on the celery workers (deploy/shared).
        executor=executor_for(settings),
    )


@definitions
def rlx_definitions() -> Definitions:
    return build_definitions(get_settings())
