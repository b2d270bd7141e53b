"""Telemetry of asset steps: OpenTelemetry metrics (OTLP-JSON lines, a Prometheus Pushgateway)
and alert webhooks for failed checks. The Dagster side is `rlx_assets.resources.telemetry`: it
hands each step's figures over as plain records (`steps.py`)."""
