import datetime as dt
import inspect
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

import rlx_assets
from rlx_assets.definitions import ALL_ASSETS_JOB, build_definitions, rlx_definitions
from rlx_assets.partitions import day_and_symbol, partition_key
from rlx_assets_tests.conftest import make_settings

EXPECTED_GROUPS = {
    "raw_trades": "raw",
    "raw_book_snapshots": "raw",
    "raw_book_deltas": "raw",
    "reconstructed_book": "book",
    "book_state": "book",
    "unified_events": "book",
    "validation_report": "quality",
    "fidelity_report": "quality",
    "microstructure_metrics": "quality",
}
RAW_CHECKS = (
    "origin_time_complete",
    "clock_skew_within_limit",
    "no_precision_loss",
    "rows_quarantined_within_limit",
    "grid_stable",
    "day_has_rows",
)
EXPECTED_CHECKS = {
    *((raw, check) for raw in list(EXPECTED_GROUPS)[:3] for check in RAW_CHECKS),
    ("reconstructed_book", "gaps_filled"),
    ("reconstructed_book", "book_never_crossed"),
    ("reconstructed_book", "mid_deviation_within_limit"),
    ("reconstructed_book", "top20_matches_vendor"),
    ("reconstructed_book", "book_replayed_from_deltas"),
    ("unified_events", "events_chronological"),
    ("fidelity_report", "top_of_book_matches_golden"),
    ("fidelity_report", "distributions_match_golden"),
}


def test_the_module_level_definitions_load() -> None:
    graph = rlx_assets.rlx_definitions().resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == set(EXPECTED_GROUPS)


def test_every_asset_has_its_group_a_description_and_the_partitions(tmp_path) -> None:
    settings = make_settings(tmp_path, symbols=["BTC-USDT", "ETH-USDT"])
    graph = build_definitions(settings).resolve_asset_graph()
    for name, group in EXPECTED_GROUPS.items():
        node = graph.get(AssetKey(name))
        assert node.group_name == group, name
        assert node.description and len(node.description) > 20, name
        keys = node.partitions_def.get_partition_keys(current_time=dt.datetime(2024, 8, 10))
        assert "2024-08-08|BTC-USDT" in keys and "2024-08-09|ETH-USDT" in keys


def test_the_checks_are_declared_with_their_assets(tmp_path) -> None:
    graph = build_definitions(make_settings(tmp_path)).resolve_asset_graph()
    declared = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert declared == EXPECTED_CHECKS
    blocking = {key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    assert blocking == {"book_never_crossed", "gaps_filled"}


def test_book_state_continues_from_the_previous_day(tmp_path) -> None:
    graph = build_definitions(make_settings(tmp_path)).resolve_asset_graph()
    assert AssetKey("book_state") in graph.get(AssetKey("book_state")).parent_keys
    assert AssetKey("reconstructed_book") in graph.get(AssetKey("unified_events")).parent_keys


def test_the_all_assets_job_exists(tmp_path) -> None:
    definitions = build_definitions(make_settings(tmp_path))
    assert definitions.resolve_job_def(ALL_ASSETS_JOB) is not None


def test_partition_keys_read_and_write_the_same_string() -> None:
    key = partition_key(dt.date(2024, 8, 8), "BTC-USDT")
    assert key == "2024-08-08|BTC-USDT"
    assert day_and_symbol(key) == (dt.date(2024, 8, 8), "BTC-USDT")


def test_importing_the_engine_loads_neither_dagster_nor_settings() -> None:
    """The engine is usable on its own (a notebook, a benchmark): the package builds the
    Definitions only when Dagster asks for them."""
    engine_modules = sorted(
        f"rlx_assets.engine.{path.stem}"
        for path in (Path(rlx_assets.__file__).parent / "engine").glob("*.py")
        if path.stem != "__init__"
    )
    probe = (
        f"import sys\nimport {', '.join(engine_modules)}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'"
        " or m in ('rlx_assets.settings', 'rlx_assets.definitions', 'fsspec', 's3fs')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_dagster_finds_the_lazy_definitions_under_the_package_name() -> None:
    found = [name for name, value in inspect.getmembers(rlx_assets) if name == "rlx_definitions"]
    assert found == ["rlx_definitions"]
    assert rlx_assets.rlx_definitions is rlx_definitions
