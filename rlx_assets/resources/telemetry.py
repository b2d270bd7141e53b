"""The `telemetry` resource and the `@observed` decorator every asset wears.

`@observed` (under `@asset`/`@multi_asset`) hands the step's figures to the run's telemetry: the
metadata of each output and the result of each check as the asset yields them, plus its wall
time and peak memory. At the end of the step the telemetry

- records them as OpenTelemetry metrics (one meter provider per step) and appends one
  OTLP-JSON line to `<RLX_METRICS_DIR>/rlx-metrics-<UTC day>.jsonl`;
- with `RLX_PUSHGATEWAY_URL`, pushes the same metrics to the Pushgateway (group: job,
  partition, step);
- with `RLX_ALERT_WEBHOOK_URL`, posts one JSON alert per failed check.

Telemetry never fails a run: an export that goes wrong is logged and the step's result stands.
Its resource carries no config (the URLs may hold credentials, and resource config is shown in
the UI): it is built from the settings, once per run.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    InitResourceContext,
    MaterializeResult,
    MetadataValue,
    Output,
    ResourceDefinition,
    ResourceParam,
    resource,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from rlx_assets.partitions import day_and_symbol
from rlx_assets.settings import RlxSettings
from rlx_assets.telemetry.alerts import AlertWebhook, alert_payload
from rlx_assets.telemetry.memory import PeakMemory
from rlx_assets.telemetry.metrics import Instruments, histogram_metrics, record_step
from rlx_assets.telemetry.otlp_json import MetricsFile, otlp_json, with_metrics
from rlx_assets.telemetry.pushgateway import Pushgateway, PushReader
from rlx_assets.telemetry.steps import CheckRecord, OutputRecord, StepRecord

TELEMETRY = "telemetry"  # the resource key, and the parameter `@observed` adds
SCOPE = "rlx_assets"

try:
    _VERSION: str | None = version("rlx-assets")
except PackageNotFoundError:  # run from a source tree that was never installed
    _VERSION = None


@dataclass(frozen=True)
class TelemetryConfig:
    enabled: bool
    exchange: str
    metrics_dir: str
    pushgateway_url: SecretStr | None
    pushgateway_job: str
    pushgateway_timeout_s: float
    alert_webhook_url: SecretStr | None
    alert_webhook_timeout_s: float
    ui_base_url: str

    @classmethod
    def from_settings(cls, settings: RlxSettings) -> TelemetryConfig:
        if "://" in settings.metrics_dir:
            raise ValueError(
                f"RLX_METRICS_DIR={settings.metrics_dir!r}: metrics are appended to local "
                "files; give a local folder (a Collector or an agent can ship them on)"
            )
        return cls(
            enabled=settings.telemetry_enabled,
            exchange=settings.exchange,
            metrics_dir=settings.metrics_dir,
            pushgateway_url=settings.pushgateway_url,
            pushgateway_job=settings.pushgateway_job,
            pushgateway_timeout_s=settings.pushgateway_timeout_s,
            alert_webhook_url=settings.alert_webhook_url,
            alert_webhook_timeout_s=settings.alert_webhook_timeout_s,
            ui_base_url=settings.ui_base_url,
        )

    def describe(self) -> str:
        if not self.enabled:
            return "Telemetry is off (RLX_TELEMETRY_ENABLED=false)."
        parts = [
            f"OpenTelemetry metrics of every asset step as OTLP-JSON lines in {self.metrics_dir}"
        ]
        if self.pushgateway_url is not None:
            parts.append("pushed to a Prometheus Pushgateway (RLX_PUSHGATEWAY_URL)")
        if self.alert_webhook_url is not None:
            parts.append("failed checks alerted to a webhook (RLX_ALERT_WEBHOOK_URL)")
        return "; ".join(parts) + "."


def _plain(metadata: Mapping[str, object] | None) -> dict[str, object]:
    return {
        key: value.value if isinstance(value, MetadataValue) else value
        for key, value in (metadata or {}).items()
    }


class StepObserver:
    """Collects what one step yields or returns."""

    def __init__(self, context: AssetExecutionContext, record: StepRecord) -> None:
        self._context = context
        self.record = record

    def see(self, event: object) -> None:
        if isinstance(event, Output):
            asset = self._context.asset_key_for_output(event.output_name)
            self.record.outputs.append(
                OutputRecord(asset.to_user_string(), _plain(event.metadata), event.value)
            )
        elif isinstance(event, MaterializeResult):
            asset = event.asset_key or self._context.asset_key
            self.record.outputs.append(
                OutputRecord(
                    AssetKey.from_coercible(asset).to_user_string(), _plain(event.metadata)
                )
            )
            for check in event.check_results or []:
                self.see(check)
        elif isinstance(event, AssetCheckResult):
            asset = event.asset_key or self._context.asset_key
            self.record.checks.append(
                CheckRecord(
                    asset=AssetKey.from_coercible(asset).to_user_string(),
                    check=event.check_name or "",
                    passed=event.passed,
                    severity=event.severity.value,
                    metadata=_plain(event.metadata),
                )
            )
        elif isinstance(event, (tuple, list)):
            for item in event:
                self.see(item)


@contextlib.contextmanager
def _no_full_collection() -> Iterator[None]:
    """A collection of the run's whole heap (Dagster's objects: hundreds of ms) would fall on
    telemetry's few milliseconds by chance; it waits for the next allocations instead."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class _Ignored:
    def see(self, event: object) -> None:
        pass


class TelemetryResource:
    """The run's telemetry (built when the run starts, closed when it ends)."""

    def __init__(self, config: TelemetryConfig, run_id: str, log: logging.Logger) -> None:
        self.config = config
        self.run_id = run_id
        self._log = log
        self._file = MetricsFile(config.metrics_dir)
        self._otel_resource = Resource.create(
            {
                "service.name": SCOPE,
                **({"service.version": _VERSION} if _VERSION else {}),
                "service.instance.id": run_id,
            }
        )
        self.pushgateway = (
            Pushgateway(
                config.pushgateway_url.get_secret_value(),
                config.pushgateway_job,
                config.pushgateway_timeout_s,
                log,
            )
            if config.pushgateway_url is not None
            else None
        )
        self.webhook = (
            AlertWebhook(
                config.alert_webhook_url.get_secret_value(), config.alert_webhook_timeout_s, log
            )
            if config.alert_webhook_url is not None
            else None
        )
        self.lines_written = 0
        self.seconds_spent = 0.0  # telemetry's own time, all steps of the run
        # Steps may end at the same time (rlx_threads): one exports at a time, so the lines of
        # the metrics file and the counters above stay whole.
        self._export_lock = threading.Lock()

    @contextlib.contextmanager
    def step(self, context: AssetExecutionContext) -> Iterator[StepObserver | _Ignored]:
        """Observe one step: yields what `see`s its events; exports when the step ends well."""
        if not self.config.enabled:
            yield _Ignored()
            return
        partition = context.partition_key if context.has_partition_key else ""
        day, symbol = day_and_symbol(partition) if partition else (None, "")
        record = StepRecord(
            step=context.op_def.name,
            partition=partition,
            exchange=self.config.exchange,
            symbol=symbol,
            date=day.isoformat() if day else "",
            run_id=context.run.run_id,
            start_time_ns=time.time_ns(),
        )
        with PeakMemory() as memory:
            started = time.perf_counter()
            yield StepObserver(context, record)
            record.seconds = time.perf_counter() - started
        record.peak_memory_bytes = memory.peak
        self.export(record, context.log)

    def export(self, record: StepRecord, log: logging.Logger) -> None:
        with self._export_lock:
            self._export(record, log)

    def _export(self, record: StepRecord, log: logging.Logger) -> None:
        started = time.perf_counter()
        try:
            alert_failures = self._alert(record)
            with _no_full_collection():
                self._export_metrics(record, alert_failures, started)
        except Exception as error:  # telemetry must not fail a step that succeeded
            log.warning(f"telemetry of step {record.step} not exported: {error!r}")
        finally:
            self.seconds_spent += time.perf_counter() - started

    def _alert(self, record: StepRecord) -> int:
        if self.webhook is None:
            return 0
        failed = 0
        for check in record.checks:
            if not check.passed:
                payload = alert_payload(record, check, self.config.ui_base_url)
                failed += not self.webhook.post(payload)
        return failed

    def _export_metrics(self, record: StepRecord, alert_failures: int, started: float) -> None:
        memory = InMemoryMetricReader()
        readers = [memory]
        registry = None
        extra = histogram_metrics(record, time.time_ns())
        if self.pushgateway is not None:
            registry = CollectorRegistry(auto_describe=False)
            readers.append(PushReader(registry, extra))
        provider = MeterProvider(
            resource=self._otel_resource, metric_readers=readers, shutdown_on_exit=False
        )
        try:
            instruments = Instruments(provider.get_meter(SCOPE, _VERSION))
            record_step(instruments, record)
            own = record.attributes(
                record.outputs[0].asset if record.outputs else "", component=record.step
            )
            if registry is not None:
                grouping = {"partition": record.partition, "step": record.step}
                if not self.pushgateway.push(registry, grouping):
                    instruments.push_failures.add(1, own)
            if alert_failures:
                instruments.alert_failures.add(alert_failures, own)
            instruments.telemetry_duration.set(time.perf_counter() - started, own)
            data = memory.get_metrics_data()
            if data is not None:
                self._file.append(otlp_json(with_metrics(data, extra)))
                self.lines_written += 1
        finally:
            provider.shutdown()

    def close(self) -> None:
        if self.config.enabled and self.lines_written:
            self._log.debug(
                f"telemetry: {self.lines_written} lines in {self.config.metrics_dir}, "
                f"{self.seconds_spent:.3f} s spent"
            )


def telemetry_resource(settings: RlxSettings) -> ResourceDefinition:
    """The `telemetry` resource of the Definitions: one TelemetryResource per run."""
    config = TelemetryConfig.from_settings(settings)

    @resource(description=config.describe())
    def telemetry(init_context: InitResourceContext) -> Iterator[TelemetryResource]:
        run_id = init_context.run.run_id if init_context.run else ""
        run = TelemetryResource(config, run_id, init_context.log)
        try:
            yield run
        finally:
            run.close()

    return telemetry


def observed(compute_fn: Callable) -> Callable:
    """Hands an asset's figures to the `telemetry` resource (see the module docstring).

    Put it right under `@asset(...)` or `@multi_asset(...)`. It adds a `telemetry` resource
    parameter to the function's signature, so the asset itself does not name it.
    """
    signature = inspect.signature(compute_fn)
    parameter = inspect.Parameter(
        TELEMETRY, inspect.Parameter.KEYWORD_ONLY, annotation=ResourceParam[TelemetryResource]
    )
    if inspect.isgeneratorfunction(compute_fn):

        @functools.wraps(compute_fn)
        def wrapper(context, *args, **kwargs):
            telemetry: TelemetryResource = kwargs.pop(TELEMETRY)
            with telemetry.step(context) as step:
                for event in compute_fn(context, *args, **kwargs):
                    step.see(event)
                    yield event

    else:

        @functools.wraps(compute_fn)
        def wrapper(context, *args, **kwargs):
            telemetry: TelemetryResource = kwargs.pop(TELEMETRY)
            with telemetry.step(context) as step:
                result = compute_fn(context, *args, **kwargs)
                step.see(result)
            return result

    wrapper.__signature__ = signature.replace(
        parameters=[*signature.parameters.values(), parameter]
    )
    return wrapper
