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
# Fixtures built once per module, expensive (a deployment, a `dagster dev`, a materialized day):
# xdist runs all of a module's tests that use one on the same worker.
_SHARED_SCOPES = ("module", "package", "class")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For pytest-xdist (`-n 4 --dist loadgroup`, pyproject.toml): a module-scoped fixture is
    built once, for the group of its module's tests that use it; and the `slow` tests go first,
    a group's before single tests (xdist hands tests out in this order: --no-loadscope-reorder),
    so that the deployment tests' waits overlap the others' work."""
    for item in items:
        definitions = item._fixtureinfo.name2fixturedefs.values()
        if any(found[-1].scope in _SHARED_SCOPES for found in definitions if found):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(  # stable: the rest in their usual order
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            item.get_closest_marker("xdist_group") is None,
        )
    )


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
