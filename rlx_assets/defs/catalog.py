"""What the Dagster UI's catalog shows of each asset: owners, kinds, tags and a code version.

Applied to the built assets in one place (`catalog_attributes`), so the asset modules keep to
what they compute. Kinds follow the settings: `s3` appears where the lake or the storage is on S3.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetsDefinition, AssetSpec

from rlx_assets.defs.code_version import code_version
from rlx_assets.settings import RlxSettings

# The team that answers for the data (shown as the owner of every asset).
OWNER = "team:quant-data"

# The libraries each asset's bytes go through, besides Parquet (every asset is stored as Parquet).
KINDS_BY_ASSET = {
    "raw_trades": {"polars", "pyarrow"},
    "raw_book_snapshots": {"polars", "pyarrow"},
    "raw_book_deltas": {"polars", "pyarrow"},
    "reconstructed_book": {"numba", "pyarrow"},
    "book_state": {"pyarrow"},
    "unified_events": {"pyarrow"},
    "validation_report": {"pyarrow"},
    "fidelity_report": {"scipy", "pyarrow"},
    "microstructure_metrics": {"pyarrow"},
}
READS_THE_LAKE = {"raw_trades", "raw_book_snapshots", "raw_book_deltas"}


def lake_kind(url: str) -> str:
    """`synthetic`, `s3` or `local`: where a lake URL points (a tag value the UI can filter)."""
    if url.startswith("synthetic://"):
        return "synthetic"
    return "s3" if url.startswith("s3://") else "local"


def _spec_attributes(spec: AssetSpec, module: str, settings: RlxSettings) -> AssetSpec:
    name = spec.key.to_user_string()
    kinds = {"parquet", *KINDS_BY_ASSET.get(name, set())}
    if settings.storage_url.startswith("s3://") or (
        name in READS_THE_LAKE and lake_kind(settings.lake_url) == "s3"
    ):
        kinds.add("s3")
    return spec.replace_attributes(
        owners=[OWNER],
        kinds=kinds,
        tags={
            **{k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
            "layer": spec.group_name or "default",
            "exchange": settings.exchange,
            "lake": lake_kind(settings.lake_url),
        },
        code_version=code_version(module),
    )


def catalog_attributes(
    assets: Sequence[AssetsDefinition], settings: RlxSettings
) -> list[AssetsDefinition]:
    """The assets with owners, kinds, tags and a code version of their own source."""
    described = []
    for asset in assets:
        module = asset.op.compute_fn.decorated_fn.__module__
        described.append(
            asset.map_asset_specs(lambda spec, m=module: _spec_attributes(spec, m, settings))
        )
    return described
