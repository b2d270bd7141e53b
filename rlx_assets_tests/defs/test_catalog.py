"""Owners, kinds, tags and code versions: what the UI's catalog shows of every asset."""

import shutil
from pathlib import Path

from dagster import AssetKey

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.catalog import OWNER
from rlx_assets.defs.code_version import PACKAGE_ROOT, code_version, versioned_sources
from rlx_assets_tests.conftest import make_settings
from rlx_assets_tests.test_definitions import EXPECTED_GROUPS

RAW_MODULE = "rlx_assets.defs.raw.assets"


def test_every_asset_has_owners_kinds_tags_and_a_code_version_of_its_source(tmp_path) -> None:
    graph = build_definitions(make_settings(tmp_path)).resolve_asset_graph()
    for name, group in EXPECTED_GROUPS.items():
        node = graph.get(AssetKey(name))
        assert node.owners == [OWNER], name
        assert "parquet" in node.kinds and "s3" not in node.kinds, name
        assert node.tags["layer"] == group and node.tags["exchange"] == "BINANCE", name
        assert len(node.code_version) == 12 and node.code_version != "1", name
    raw = graph.get(AssetKey("raw_trades"))
    assert {"polars", "parquet"} <= raw.kinds
    assert raw.code_version == code_version(RAW_MODULE)


def test_s3_storage_adds_the_s3_kind(tmp_path) -> None:
    settings = make_settings(tmp_path).model_copy(update={"storage_url": "s3://bucket/assets"})
    graph = build_definitions(settings).resolve_asset_graph()
    assert "s3" in graph.get(AssetKey("unified_events")).kinds


def test_the_version_covers_the_asset_module_and_the_engine_it_imports() -> None:
    names = {path.relative_to(PACKAGE_ROOT).as_posix() for path in versioned_sources(RAW_MODULE)}
    assert "defs/raw/assets.py" in names
    assert any(name.startswith("engine/raw") for name in names)
    # Imported by engine/raw.py, not by the asset module itself: reached transitively.
    assert "engine/decimals.py" in names
    # Shared glue does not decide what the asset holds.
    assert not any(name.startswith(("resources/", "telemetry/", "capture/")) for name in names)


def test_editing_an_engine_file_changes_the_version_and_an_unrelated_file_does_not(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "rlx_assets"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_version(RAW_MODULE, copy)
    assert before == code_version(RAW_MODULE, PACKAGE_ROOT)  # paths count relative to the package

    capture = copy / "capture" / "session.py"
    capture.write_text(capture.read_text() + "\n# unrelated to raw assets\n")
    assert code_version.__wrapped__(RAW_MODULE, copy) == before

    decimals = copy / "engine" / "decimals.py"
    decimals.write_text(decimals.read_text() + "\n# a change in the engine\n")
    assert code_version.__wrapped__(RAW_MODULE, copy) != before
