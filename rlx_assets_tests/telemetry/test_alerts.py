import logging
import time

import pytest

from rlx_assets import check_names
from rlx_assets.telemetry.alerts import OBSERVED, AlertWebhook, alert_payload
from rlx_assets.telemetry.steps import CheckRecord, StepRecord
from rlx_assets_tests import telemetry_servers as servers

webhook, black_hole = servers.webhook, servers.black_hole
TOKEN = "hook-token-8c2f"
STEP = StepRecord(
    step="reconstruct",
    partition="2024-08-08|BTC-USDT",
    exchange="BINANCE",
    symbol="BTC-USDT",
    date="2024-08-08",
    run_id="run-1",
    start_time_ns=0,
)
CHECK_METADATA = {  # as the assets write them
    check_names.ORIGIN_TIME_COMPLETE: {"origin_time_invalid_share": 0.02, "threshold": 0.001},
    check_names.CLOCK_SKEW_WITHIN_LIMIT: {"clock_skew_excess_ms": 7e3, "threshold_ms": 5e3},
    check_names.NO_PRECISION_LOSS: {"precision_loss_share": 0.01, "threshold": 1e-4},
    check_names.BOOK_NEVER_CROSSED: {"crossed_books_published": 2, "threshold": 0},
    check_names.GAPS_FILLED: {"gaps_detected": 5, "unfilled": 1, "threshold_unfilled": 0},
    check_names.MID_DEVIATION_WITHIN_LIMIT: {"mid_deviation_max_bps": 3.0, "threshold_bps": 1.0},
    check_names.TOP20_MATCHES_VENDOR: {"top20_match_share": 0.9, "threshold": 0.999},
    check_names.EVENTS_CHRONOLOGICAL: {"out_of_order_pairs": 1, "outside_day": 2, "threshold": 0},
    check_names.TOP_OF_BOOK_MATCHES_GOLDEN: {"top_of_book_agreement": 0.9, "threshold": 0.999},
    check_names.DISTRIBUTIONS_MATCH_GOLDEN: {
        "ks_spread_p": 0.2,
        "ad_trade_size_p": 0.001,
        "alpha": 0.01,
    },
}
EXPECTED = {
    check_names.ORIGIN_TIME_COMPLETE: (0.02, 0.001),
    check_names.CLOCK_SKEW_WITHIN_LIMIT: (7e3, 5e3),
    check_names.NO_PRECISION_LOSS: (0.01, 1e-4),
    check_names.BOOK_NEVER_CROSSED: (2, 0),
    check_names.GAPS_FILLED: (1, 0),
    check_names.MID_DEVIATION_WITHIN_LIMIT: (3.0, 1.0),
    check_names.TOP20_MATCHES_VENDOR: (0.9, 0.999),
    check_names.EVENTS_CHRONOLOGICAL: (3, 0),
    check_names.TOP_OF_BOOK_MATCHES_GOLDEN: (0.9, 0.999),
    check_names.DISTRIBUTIONS_MATCH_GOLDEN: (0.001, 0.01),
}


def _check(name: str = check_names.GAPS_FILLED) -> CheckRecord:
    return CheckRecord("reconstructed_book", name, False, "ERROR", CHECK_METADATA[name])


@pytest.mark.parametrize("name", sorted(CHECK_METADATA))
def test_every_check_has_its_observed_value_and_threshold(name: str) -> None:
    assert set(OBSERVED) == set(CHECK_METADATA)
    payload = alert_payload(STEP, _check(name), "http://ui.example:3000/")
    assert (payload["observed"], payload["threshold"]) == EXPECTED[name]
    assert payload["run_url"] == "http://ui.example:3000/runs/run-1"
    assert payload["metadata"] == CHECK_METADATA[name]


def test_metadata_without_the_figure_gives_none_not_a_crash() -> None:
    record = CheckRecord("unified_events", check_names.EVENTS_CHRONOLOGICAL, False, "ERROR", {})
    payload = alert_payload(STEP, record, "http://ui")
    assert payload["observed"] is None and payload["threshold"] is None


def _sender(url: str, budget_s: float = 5.0) -> AlertWebhook:
    return AlertWebhook(url, budget_s, logging.getLogger("rlx-test"))


def test_5xx_is_retried_with_backoff_until_accepted(webhook: servers.Webhook) -> None:
    webhook.reset(503, 500, 200)
    sender = _sender(f"{webhook.url}/hooks/{TOKEN}")
    started = time.monotonic()
    assert sender.post(alert_payload(STEP, _check(), "http://ui"))
    assert [r["status"] for r in webhook.requests] == [503, 500, 200]
    assert time.monotonic() - started >= 0.25 + 0.5  # backed off between the tries
    assert webhook.requests[-1]["path"] == f"/hooks/{TOKEN}"
    assert sender.sent == 1 and sender.failures == 0


def test_4xx_is_not_retried(webhook: servers.Webhook, caplog) -> None:
    webhook.reset(404)
    sender = _sender(f"{webhook.url}/hooks/{TOKEN}")
    with caplog.at_level(logging.WARNING, "rlx-test"):
        assert not sender.post(alert_payload(STEP, _check(), "http://ui"))
    assert len(webhook.requests) == 1 and sender.failures == 1
    (warning,) = caplog.records
    assert "HTTP 404" in warning.message and TOKEN not in warning.message


@pytest.mark.parametrize("down", ["refused", "hung"])
def test_alerts_never_wait_past_the_runs_budget(down: str, black_hole: str, caplog) -> None:
    url = black_hole if down == "hung" else f"http://127.0.0.1:{servers.free_port()}"
    sender = _sender(f"{url}/hooks/{TOKEN}", budget_s=1.0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "rlx-test"):
        delivered = [sender.post(alert_payload(STEP, _check(), "http://ui")) for _ in range(3)]
    assert delivered == [False] * 3 and sender.failures == 3
    assert time.monotonic() - started <= 1.0 + 0.3
    assert all(TOKEN not in record.message for record in caplog.records)
