#!/usr/bin/env python3
"""Telemetry end to end on this machine, in one command:

    poetry run python scripts/telemetry_demo.py

It starts a Prometheus Pushgateway (the `prometheus-pushgateway` binary, when installed) and a
small webhook receiver, both on 127.0.0.1, materializes one synthetic partition whose feed has
injected faults (so a WARN check fails), then shows what an operator gets: the OTLP-JSON lines,
the series on the gateway, the alerts the webhook received. Everything is
stopped at the end; the files stay in the work folder it prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dagster import DagsterInstance

from rlx_assets.pipeline import failed_checks, run_partition
from rlx_assets.settings import RlxSettings

DAY = dt.date(2024, 8, 8)
FAULTS = "synthetic://?faults=clock_skew=0.02,off_grid=0.002"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_pushgateway(work: Path) -> tuple[subprocess.Popen | None, str | None]:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        print("prometheus-pushgateway not installed: no gateway in this demo")
        return None, None
    port = _free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={work}/pg"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("the pushgateway did not start")


def start_webhook() -> tuple[ThreadingHTTPServer, list[dict]]:
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for assets and metrics (default: new)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="rlx-telemetry-demo-"))
    gateway, gateway_url = start_pushgateway(work)
    webhook, alerts = start_webhook()
    try:
        settings = RlxSettings(
            _env_file=None,
            lake_url=FAULTS,
            storage_url=str(work / "assets"),
            metrics_dir=str(work / "metrics"),
            golden_dir=str(work / "golden"),
            start_date=dt.date(2024, 8, 1),
            pushgateway_url=gateway_url,
            alert_webhook_url=f"http://127.0.0.1:{webhook.server_port}/alerts",
        )
        print(f"materializing {DAY}|BTC-USDT from {FAULTS} into {work} ...", flush=True)
        result = run_partition(settings, DagsterInstance.ephemeral(), DAY, "BTC-USDT")
        print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
        print(f"failed checks: {', '.join(failed_checks(result)) or 'none'}\n")

        (lines_file,) = (work / "metrics").glob("rlx-metrics-*.jsonl")
        lines = lines_file.read_text().splitlines()
        names: Counter[str] = Counter()
        for line in lines:
            for resource in json.loads(line)["resourceMetrics"]:
                for scope in resource["scopeMetrics"]:
                    names.update(metric["name"] for metric in scope["metrics"])
        print(f"OTLP-JSON lines: {lines_file} ({len(lines)} lines, one per asset step)")
        for name, steps in sorted(names.items()):
            print(f"  {name}  (in {steps} lines)")

        if gateway_url:
            with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=5) as response:
                series = [
                    line
                    for line in response.read().decode().splitlines()
                    if line.startswith("rlx_")
                ]
            print(f"\nPushgateway {gateway_url}/metrics: {len(series)} rlx_ series, e.g.")
            for line in series:
                if "rlx_check_result{" in line and line.endswith(" 0"):
                    print(f"  {line}")

        print(f"\nwebhook received {len(alerts)} alerts; the first:")
        print(json.dumps(alerts[0], indent=2) if alerts else "  (none)")
        return 0 if result.success else 1
    finally:
        webhook.shutdown()
        if gateway is not None:
            gateway.terminate()
            gateway.wait(10)


if __name__ == "__main__":
    sys.exit(main())
