"""The step's metrics pushed to a Prometheus Pushgateway, within a time budget per run.

OpenTelemetry's Prometheus exporter does the translation (names with units as suffixes,
`_total` on counters, attributes as labels) into a registry of the step's own, and
prometheus-client pushes it. A gateway that is down or slow costs a run at most the budget:
the first failure is logged once and later pushes of the run are skipped (and counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import Metric, MetricsData
from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from rlx_assets.telemetry.otlp_json import with_metrics
from rlx_assets.telemetry.urls import redacted, without_credentials


class PushReader(PrometheusMetricReader):
    """The Prometheus exporter's reader, on a registry of its own (not the process-wide one),
    with the step's pre-aggregated metrics added to what it collects."""

    def __init__(self, registry: CollectorRegistry, extra: Sequence[Metric]) -> None:
        # target_info and scope labels would repeat the same values on every series.
        super().__init__(disable_target_info=True, scope_info_enabled=False, registry=registry)
        self._extra = list(extra)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs
    ) -> None:
        if metrics_data is not None:
            metrics_data = with_metrics(metrics_data, self._extra)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)


class Pushgateway:
    """Pushes registries to one gateway; all pushes of a run together take at most
    `budget_s` seconds."""

    def __init__(self, url: str, job: str, budget_s: float, log: logging.Logger) -> None:
        self._url, user, password = without_credentials(url)
        self._secret_parts = [part for part in (url, self._url, password) if part]
        self.shown = redacted(url)
        self._job = job
        self._budget_s = budget_s
        self.seconds_spent = 0.0
        self._stopped: str | None = None  # why pushes stopped for this run
        self._log = log
        if user is None:
            self._handler = default_handler
        else:

            def handler(url, method, timeout, headers, data):
                return basic_auth_handler(url, method, timeout, headers, data, user, password)

            self._handler = handler
        self.pushed = 0
        self.failures = 0

    def push(self, registry: CollectorRegistry, grouping_key: Mapping[str, str]) -> bool:
        """PUT the registry's metrics as the group's (replacing what the group held)."""
        remaining = self._budget_s - self.seconds_spent
        if self._stopped is None and remaining <= 0:
            self._stop(f"the run's {self._budget_s:g} s budget for pushes is spent")
        if self._stopped is not None:
            self.failures += 1
            return False
        started = time.monotonic()
        try:
            push_to_gateway(
                self._url,
                job=self._job,
                registry=registry,
                grouping_key=dict(grouping_key),
                timeout=remaining,
                handler=self._handler,
            )
        except (OSError, ValueError) as error:  # refused, timed out, HTTP error, a bad URL
            self.failures += 1
            self._stop(self._describe(error))
            return False
        finally:
            self.seconds_spent += time.monotonic() - started
        self.pushed += 1
        return True

    def _describe(self, error: Exception) -> str:
        message = f"{type(error).__name__}: {error}"
        for secret in self._secret_parts:
            message = message.replace(secret, self.shown)
        return message

    def _stop(self, reason: str) -> None:
        self._stopped = reason
        self._log.warning(
            f"pushgateway {self.shown}: {reason}; the rest of this run's metrics are not "
            "pushed (counted in rlx.telemetry.push_failures; the JSON lines have them all)"
        )
