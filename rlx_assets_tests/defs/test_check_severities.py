"""Every check's severity and blocking, as the README's checks table promises them: in the
definitions (the check specs) and in what a materialization records (the evaluations)."""

import re

import pytest
from dagster import AssetCheckSeverity

from rlx_assets.definitions import build_definitions
from rlx_assets_tests.conftest import FIXTURE_DAYS, REPO, make_settings, materialize_day

RAW_ASSETS = ("raw_trades", "raw_book_snapshots", "raw_book_deltas")
ERROR, WARN = AssetCheckSeverity.ERROR, AssetCheckSeverity.WARN

# (asset, check) -> (severity, blocking), from the README's checks table.
EXPECTED = {
    **{(raw, "origin_time_complete"): (ERROR, False) for raw in RAW_ASSETS},
    **{(raw, "clock_skew_within_limit"): (WARN, False) for raw in RAW_ASSETS},
    **{(raw, "no_precision_loss"): (WARN, False) for raw in RAW_ASSETS},
    **{(raw, "grid_stable"): (WARN, False) for raw in RAW_ASSETS},
    **{(raw, "rows_quarantined_within_limit"): (ERROR, False) for raw in RAW_ASSETS},
    ("raw_trades", "day_has_rows"): (ERROR, False),
    ("raw_book_snapshots", "day_has_rows"): (ERROR, False),
    # A day without deltas still gets a (degraded) book.
    ("raw_book_deltas", "day_has_rows"): (WARN, False),
    ("reconstructed_book", "gaps_filled"): (ERROR, True),
    ("reconstructed_book", "book_never_crossed"): (ERROR, True),
    ("reconstructed_book", "mid_deviation_within_limit"): (WARN, False),
    ("reconstructed_book", "book_replayed_from_deltas"): (WARN, False),
    ("reconstructed_book", "top20_matches_vendor"): (WARN, False),
    ("unified_events", "events_chronological"): (ERROR, False),
    ("fidelity_report", "top_of_book_matches_golden"): (ERROR, False),
    ("fidelity_report", "distributions_match_golden"): (WARN, False),
}


# "ERROR", "WARN", "ERROR, blocking" or "ERROR (WARN for deltas)".
SEVERITY_CELL = r"(ERROR|WARN)(, blocking)?(?: \((ERROR|WARN) for deltas\))?"


def _readme_checks_table() -> dict[tuple[str, str], tuple[AssetCheckSeverity, bool]]:
    """The README's checks table read as (asset, check) -> (severity, blocking)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("| check | asset | severity | what must hold |")
    table = {}
    for line in readme[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        check, assets, severity, _ = (cell.strip() for cell in line.strip("|").split("|", 3))
        check = check.strip("`")
        assets = RAW_ASSETS if assets == "each raw asset" else (assets.strip("`"),)
        match = re.fullmatch(SEVERITY_CELL, severity)
        assert match, f"unreadable severity {severity!r} for {check}"
        for asset in assets:
            name = match[3] if match[3] and asset == "raw_book_deltas" else match[1]
            table[asset, check] = (AssetCheckSeverity[name], bool(match[2]))
    return table


def test_the_readme_table_states_the_expected_severities() -> None:
    assert _readme_checks_table() == EXPECTED


def test_only_the_book_checks_block_in_the_definitions(tmp_path) -> None:
    graph = build_definitions(make_settings(tmp_path)).resolve_asset_graph()
    declared = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
    }
    assert declared == {key: blocking for key, (_, blocking) in EXPECTED.items()}


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory):
    result = materialize_day(make_settings(tmp_path_factory.mktemp("assets")), FIXTURE_DAYS[0])
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def test_every_check_is_evaluated_on_the_fixture_day(evaluations) -> None:
    assert set(evaluations) == set(EXPECTED)


@pytest.mark.parametrize(("asset", "check"), sorted(EXPECTED))
def test_a_materialization_records_the_checks_severity(evaluations, asset, check) -> None:
    severity, blocking = EXPECTED[asset, check]
    evaluation = evaluations[asset, check]
    assert evaluation.severity == severity
    assert bool(evaluation.blocking) == blocking
