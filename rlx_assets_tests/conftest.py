import datetime as dt
from pathlib import Path

import pytest
from dagster import materialize

from rlx_assets.definitions import build_definitions
from rlx_assets.partitions import partition_key
from rlx_assets.settings import RlxSettings, get_settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SLICE = TESTS / "fixtures" / "binance-spot-btcusdt-slice"
SHARED_FIXTURE = REPO.parent / "shared" / "fixtures" / "binance-spot-btcusdt"
FIXTURE_DAYS = (dt.date(2024, 8, 8), dt.date(2024, 8, 9))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For pytest-xdist (`-n 4 --dist loadscope --no-loadscope-reorder`, pyproject.toml): each
    module runs on one worker (its module-scoped fixtures built once, its tests in order), and
    the modules holding a `slow` test are handed out first, so that the deployment tests' waits
    overlap the others' work; the rest keep their usual order (a stable sort)."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """No RLX_ variable of the developer's shell leaks into a test; a remote lake's local cache
    is the test's own."""
    import os

    for name in list(os.environ):
        if name.startswith("RLX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RLX_LAKE_CACHE_DIR", str(tmp_path_factory.mktemp("lake-cache")))
    get_settings.cache_clear()


def make_settings(storage: Path, lake: Path | str = SLICE, **overrides) -> RlxSettings:
    """Settings for a test: no .env file, storage in a temporary folder."""
    values = {
        "lake_url": str(lake),
        # A local lake keeps its golden samples beside the tables (as the fixtures do).
        "golden_dir": str(lake / "golden") if isinstance(lake, Path) else str(storage / "golden"),
        "storage_url": str(storage),
        "metrics_dir": str(storage / "metrics"),
        "start_date": dt.date(2024, 8, 1),
    }
    values.update(overrides)
    return RlxSettings(_env_file=None, **values)


def materialize_day(settings: RlxSettings, day: dt.date, symbol: str = "BTC-USDT", **kwargs):
    definitions = build_definitions(settings)
    return materialize(
        list(definitions.assets),
        resources=definitions.resources,
        partition_key=partition_key(day, symbol),
        raise_on_error=kwargs.pop("raise_on_error", False),
        **kwargs,
    )


def materializations(result) -> dict[str, dict]:
    """Asset name -> its materialization metadata (plain values)."""
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        found[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()
        }
    return found


def checks(result) -> dict[str, object]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }
