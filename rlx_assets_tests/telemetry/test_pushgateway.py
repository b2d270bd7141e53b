import logging
import time

import pytest
from prometheus_client import CollectorRegistry, Gauge

from rlx_assets.telemetry.pushgateway import Pushgateway
from rlx_assets_tests import telemetry_servers as servers

pushgateway, black_hole = servers.pushgateway, servers.black_hole
GROUP = {"partition": "2024-08-08|BTC-USDT", "step": "raw_trades"}


def _registry(value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("rlx_test_value", "a test figure", registry=registry).set(value)
    return registry


def _gateway(url: str, budget_s: float) -> Pushgateway:
    return Pushgateway(url, "rlx_test", budget_s, logging.getLogger("rlx-test"))


def test_pushes_replace_the_group_on_a_real_gateway(pushgateway: str, caplog) -> None:
    gateway = _gateway(pushgateway.replace("http://", "http://user:pw-123@"), 2.0)
    assert gateway.push(_registry(1.0), GROUP) and gateway.push(_registry(2.5), GROUP)
    lines = [line for line in servers.scrape(pushgateway).splitlines() if "rlx_test_value{" in line]
    assert len(lines) == 1 and lines[0].endswith(" 2.5")
    assert 'partition="2024-08-08|BTC-USDT"' in lines[0] and 'job="rlx_test"' in lines[0]
    assert gateway.failures == 0 and gateway.seconds_spent < 2.0


@pytest.mark.parametrize("down", ["refused", "hung"])
def test_a_gateway_down_costs_at_most_the_budget_and_is_logged_once(
    down: str, black_hole: str, caplog
) -> None:
    url = black_hole if down == "hung" else f"http://127.0.0.1:{servers.free_port()}"
    gateway = _gateway(url.replace("http://", "http://user:pw-123@"), 0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "rlx-test"):
        results = [gateway.push(_registry(n), GROUP) for n in range(5)]
    took = time.monotonic() - started
    assert results == [False] * 5 and gateway.failures == 5
    assert took <= 0.5 + 0.3
    if down == "hung":
        assert took >= 0.45  # it waited, but only once
    (warning,) = caplog.records
    assert "pushgateway http://127.0.0.1:" in warning.message
    assert "pw-123" not in warning.message and "user" not in warning.message
