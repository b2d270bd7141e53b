"""OTLP-JSON lines: each export is one ExportMetricsServiceRequest in the OTLP/HTTP JSON
encoding, on one line, in a file per UTC day under the metrics folder.

The request is built by OpenTelemetry's own protobuf encoder and printed by protobuf's JSON
printer with OTLP's rules (camelCase names, 64-bit integers as strings, enums as integers,
trace and span ids as hex), which is what an OpenTelemetry Collector's `otlpjsonfile`
receiver reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import Metric, MetricsData

from rlx_assets.paths import PRIVATE_FILE_MODE, make_private_dirs

FILE_PREFIX = "rlx-metrics-"
_HEX_ID_FIELDS = ("traceId", "spanId")


def with_metrics(data: MetricsData, extra: Sequence[Metric]) -> MetricsData:
    """`data` with `extra` added to its first scope (the step's one meter)."""
    if not extra or not data.resource_metrics:
        return data
    resource = data.resource_metrics[0]
    scope = resource.scope_metrics[0]
    scope = replace(scope, metrics=[*scope.metrics, *extra])
    resource = replace(resource, scope_metrics=[scope, *resource.scope_metrics[1:]])
    return replace(data, resource_metrics=[resource, *data.resource_metrics[1:]])


def otlp_json(data: MetricsData) -> str:
    """One compact JSON line (no newline)."""
    message = json_format.MessageToDict(encode_metrics(data), use_integers_for_enums=True)
    _hex_ids(message)
    return json.dumps(message, separators=(",", ":"))


def _hex_ids(message: dict) -> None:
    """protobuf's JSON prints bytes as base64; OTLP/JSON wants trace and span ids in hex. In
    metrics they appear only in exemplars."""
    for resource in message.get("resourceMetrics", []):
        for scope in resource.get("scopeMetrics", []):
            for metric in scope.get("metrics", []):
                for data in metric.values():
                    if not isinstance(data, dict):
                        continue
                    for point in data.get("dataPoints", []):
                        for exemplar in point.get("exemplars", []):
                            for key in _HEX_ID_FIELDS:
                                if key in exemplar:
                                    exemplar[key] = base64.b64decode(exemplar[key]).hex()


class MetricsFile:
    """Appends lines to `<folder>/rlx-metrics-<UTC day>.jsonl`: a new file each day."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, now: dt.datetime) -> Path:
        return self.folder / f"{FILE_PREFIX}{now.astimezone(dt.timezone.utc).date()}.jsonl"

    def append(self, line: str, now: dt.datetime | None = None) -> Path:
        path = self.path(now or dt.datetime.now(dt.timezone.utc))
        make_private_dirs(self.folder)
        data = (line + "\n").encode()
        # One write to a file opened for appending: lines of runs writing at the same time
        # never interleave.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            written = os.write(descriptor, data)
            while written < len(data):  # only a full disk or a signal stops a write short
                written += os.write(descriptor, data[written:])
        finally:
            os.close(descriptor)
        return path
