"""A failed check posts one JSON alert to a webhook, retried with backoff on 5xx answers and
connection errors, and never past the run's time budget for alerts."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping

import urllib3
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from rlx_assets import check_names
from rlx_assets.telemetry.steps import CheckRecord, StepRecord
from rlx_assets.telemetry.urls import redacted

ATTEMPT_TIMEOUT_S = 5.0  # one POST, connect and answer
FIRST_BACKOFF_S = 0.25  # then 0.5, 1, 2, 2 ...
MAX_BACKOFF_S = 2.0
MAX_ATTEMPTS = 6


def _sum(*keys: str) -> Callable[[Mapping[str, object]], object]:
    return lambda metadata: sum(metadata[key] for key in keys)


def _min_p_value(metadata: Mapping[str, object]) -> object:
    return min(value for key, value in metadata.items() if key.endswith("_p"))


# Each check's observed value in its metadata (a key, or how to compute it from the metadata).
OBSERVED: dict[str, str | Callable[[Mapping[str, object]], object]] = {
    check_names.ORIGIN_TIME_COMPLETE: "origin_time_invalid_share",
    check_names.CLOCK_SKEW_WITHIN_LIMIT: "clock_skew_excess_ms",
    check_names.NO_PRECISION_LOSS: "precision_loss_share",
    check_names.BOOK_NEVER_CROSSED: "crossed_books_published",
    check_names.GAPS_FILLED: "unfilled",
    check_names.MID_DEVIATION_WITHIN_LIMIT: "mid_deviation_max_bps",
    check_names.TOP20_MATCHES_VENDOR: "top20_match_share",
    check_names.EVENTS_CHRONOLOGICAL: _sum("out_of_order_pairs", "outside_day"),
    check_names.TOP_OF_BOOK_MATCHES_GOLDEN: "top_of_book_agreement",
    check_names.DISTRIBUTIONS_MATCH_GOLDEN: _min_p_value,
}


def observed_and_threshold(check: CheckRecord) -> tuple[object, object]:
    """(observed value, threshold) from the check's metadata; None where it has none."""
    metadata = check.metadata
    rule = OBSERVED.get(check.check)
    try:
        observed = rule(metadata) if callable(rule) else metadata.get(rule) if rule else None
    except (KeyError, TypeError, ValueError):  # metadata without the figures: say so, no crash
        observed = None
    threshold = next(
        (value for key, value in metadata.items() if key.startswith("threshold")),
        metadata.get("alpha"),
    )
    return observed, threshold


def alert_payload(step: StepRecord, check: CheckRecord, ui_base_url: str) -> dict[str, object]:
    observed, threshold = observed_and_threshold(check)
    return {
        "title": f"rlx_assets: {check.asset}.{check.check} failed for {step.partition}",
        "asset": check.asset,
        "partition": step.partition,
        "exchange": step.exchange,
        "symbol": step.symbol,
        "date": step.date,
        "check": check.check,
        "severity": check.severity,
        "observed": observed,
        "threshold": threshold,
        "metadata": dict(check.metadata),
        "run_id": step.run_id,
        "run_url": f"{ui_base_url.rstrip('/')}/runs/{step.run_id}",
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


class _Retryable(Exception):
    """A 5xx answer or a connection error: worth another try."""


class _Rejected(Exception):
    """Any other answer that is not a success (4xx: trying again would not help)."""


class AlertWebhook:
    """POSTs alerts to one URL; all alerts of a run, retries and waits included, take at most
    `budget_s` seconds. The URL may hold a token: only its scheme and host are ever shown."""

    def __init__(self, url: str, budget_s: float, log: logging.Logger) -> None:
        self._url = url
        self.shown = redacted(url)
        self._budget_s = budget_s
        self.seconds_spent = 0.0
        self._log = log
        self._http = urllib3.PoolManager(retries=False)
        self.sent = 0
        self.failures = 0

    def post(self, payload: Mapping[str, object]) -> bool:
        remaining = self._budget_s - self.seconds_spent
        if remaining <= 0:
            return self._failed(payload, f"the run's {self._budget_s:g} s budget is spent")
        started = time.monotonic()
        deadline = started + remaining
        body = json.dumps(payload, default=str).encode()
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=wait_exponential(multiplier=FIRST_BACKOFF_S, max=MAX_BACKOFF_S),
            stop=stop_before_delay(remaining) | stop_after_attempt(MAX_ATTEMPTS),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._attempt(body, deadline)
        except (_Retryable, _Rejected) as error:
            return self._failed(payload, str(error))
        finally:
            self.seconds_spent += time.monotonic() - started
        self.sent += 1
        return True

    def _attempt(self, body: bytes, deadline: float) -> None:
        timeout = min(ATTEMPT_TIMEOUT_S, deadline - time.monotonic())
        if timeout <= 0:
            raise _Retryable("no time left")
        try:
            response = self._http.request(
                "POST",
                self._url,
                body=body,
                headers={"Content-Type": "application/json"},
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as error:
            # The class only: urllib3's messages repeat the URL (and so its token).
            raise _Retryable(type(error).__name__) from None
        if response.status >= 500:
            raise _Retryable(f"HTTP {response.status}")
        if response.status >= 300:
            raise _Rejected(f"HTTP {response.status}")

    def _failed(self, payload: Mapping[str, object], reason: str) -> bool:
        self.failures += 1
        self._log.warning(
            f"alert webhook {self.shown}: {payload['asset']}.{payload['check']} alert not "
            f"delivered ({reason}; counted in rlx.telemetry.alert_failures)"
        )
        return False
