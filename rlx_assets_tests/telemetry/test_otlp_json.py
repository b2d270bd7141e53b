import base64
import datetime as dt
import json

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import Exemplar, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)

from rlx_assets.telemetry.otlp_json import MetricsFile, otlp_json, with_metrics
from rlx_assets.telemetry.urls import redacted, without_credentials


def _collected():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("test")
    meter.create_counter("rlx.test.count", "{row}").add(3, {"asset": "a"})
    meter.create_gauge("rlx.test.level", "By").set(2**40, {"asset": "a"})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def test_a_line_is_otlp_json_that_the_otlp_decoder_reads_back() -> None:
    line = otlp_json(_collected())
    assert "\n" not in line
    raw = json.loads(line)
    metric = raw["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    assert metric["name"] == "rlx.test.count" and metric["sum"]["isMonotonic"] is True
    point = metric["sum"]["dataPoints"][0]
    # OTLP/JSON: camelCase names, 64-bit integers as strings, enums as integers.
    assert point["asInt"] == "3" and isinstance(point["timeUnixNano"], str)
    assert metric["sum"]["aggregationTemporality"] == AggregationTemporality.CUMULATIVE.value
    request = json_format.Parse(line, ExportMetricsServiceRequest())
    gauge = request.resource_metrics[0].scope_metrics[0].metrics[1]
    assert gauge.unit == "By" and gauge.gauge.data_points[0].as_int == 2**40


def test_trace_and_span_ids_are_hex() -> None:
    exemplar = Exemplar(
        filtered_attributes={}, value=1.5, time_unix_nano=1, span_id=0xABC, trace_id=0x1F
    )
    point = NumberDataPoint(
        attributes={}, start_time_unix_nano=0, time_unix_nano=1, value=1.5, exemplars=[exemplar]
    )
    extra = Metric("rlx.test.exemplar", None, "1", Gauge(data_points=[point]))
    line = otlp_json(with_metrics(_collected(), [extra]))
    metrics = json.loads(line)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    (stored,) = metrics[-1]["gauge"]["dataPoints"][0]["exemplars"]
    assert stored["spanId"] == f"{0xABC:016x}" and stored["traceId"] == f"{0x1F:032x}"
    assert base64.b64encode(bytes.fromhex(stored["spanId"])).decode() not in line


def test_files_rotate_by_utc_day(tmp_path) -> None:
    file = MetricsFile(tmp_path / "metrics")
    late = dt.datetime(2024, 8, 8, 23, 59, 59, tzinfo=dt.timezone.utc)
    # 01:30 in UTC+2 is still 23:30 the day before in UTC.
    early_local = dt.datetime(2024, 8, 9, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    first = file.append('{"a":1}', late)
    assert file.append('{"a":2}', early_local) == first
    second = file.append('{"a":3}', late + dt.timedelta(seconds=1))
    assert first.name == "rlx-metrics-2024-08-08.jsonl"
    assert second.name == "rlx-metrics-2024-08-09.jsonl"
    assert first.read_text().splitlines() == ['{"a":1}', '{"a":2}']
    assert second.read_text() == '{"a":3}\n'


def test_urls_show_no_credentials() -> None:
    url = "http://rlx:p%40ss@gateway.example:9091/prefix?token=abc"
    assert redacted(url) == "http://gateway.example:9091/…"
    assert redacted("https://hooks.example/services/T0/B0/secret") == "https://hooks.example/…"
    assert redacted("http://[::1]:9091") == "http://[::1]:9091"
    bare, user, password = without_credentials(url)
    assert (bare, user, password) == (
        "http://gateway.example:9091/prefix?token=abc",
        "rlx",
        "p@ss",
    )
    assert without_credentials("http://127.0.0.1:9091") == ("http://127.0.0.1:9091", None, None)
