"""Issue 13 on the shared variant (deploy/shared/dagster.yaml), every server real on 127.0.0.1:
PostgreSQL (instance storage), Redis (celery broker and results), moto (S3 asset storage and
checkpoints), `dagster dev` (webserver + daemon + run queue) and two celery workers, each a
process group of its own in its own working folder, as two machines would be.

1. A GraphQL backfill of 3 days x 2 symbols: steps ran on both workers, each symbol's days in
   order, every output file byte-identical to the local variant's (in-process, local disk).
2. A worker SIGKILLed in the middle of a book step: the step is handed to the other worker,
   resumes from its checkpoint on S3 (`resumed_from_chunk` > 0) and the output is identical.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import boto3
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, RunsFilter

from rlx_assets.partitions import partition_key
from rlx_assets_tests import deployment
from rlx_assets_tests import s3_server as s3
from rlx_assets_tests.test_deploy_local import (
    assert_days_in_order,
    book_seeds,
    seconds_per_partition,
)

s3_server = s3.s3_server
pytestmark = pytest.mark.slow

DATES = [dt.date(2024, 8, 1) + dt.timedelta(days=n) for n in range(4)]
KILLED_DAY = DATES[3]  # backfilled by the second test, BTC-USDT only
# Small replay chunks: a book step writes dozens of checkpoints, long enough to be killed midway.
CHUNK_ROWS = "250"
# A step whose worker died is handed on after this long (longer than any step here, on a busy
# machine too: a step still running past it would be handed on as well).
VISIBILITY_TIMEOUT_S = "60"


@dataclass
class SharedDeployment:
    url: str
    home: Path
    bucket: str
    environment: dict[str, str]
    workers: dict[str, deployment.Process]
    s3: object


@pytest.fixture(scope="module")
def shared(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDeployment]:
    tmp = tmp_path_factory.mktemp("shared")
    work = tmp / "head"
    home = deployment.instance_home("shared", tmp / "home", work)
    bucket = s3.unique_bucket()
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=s3.REGION,
        aws_access_key_id=s3.ACCESS_KEY_ID,
        aws_secret_access_key=s3.SECRET_ACCESS_KEY,
    )
    client.create_bucket(Bucket=bucket)
    with deployment.postgres() as pg, deployment.redis(tmp / "redis") as broker:
        environment = deployment.base_environment(tmp, home)
        environment.update(pg)
        environment.update(
            RLX_MAX_CONCURRENT_RUNS="4",
            RLX_EXECUTOR="celery",
            RLX_CELERY_BROKER_URL=broker,
            RLX_CELERY_VISIBILITY_TIMEOUT_S=VISIBILITY_TIMEOUT_S,
            RLX_STORAGE_URL=f"s3://{bucket}/assets",
            RLX_S3_ENDPOINT_URL=s3_server,
            RLX_REPLAY_CHUNK_ROWS=CHUNK_ROWS,
            AWS_ACCESS_KEY_ID=s3.ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=s3.SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=s3.REGION,
            AWS_EC2_METADATA_DISABLED="true",
        )
        workers = {
            name: deployment.celery_worker(name, environment, tmp / name)
            for name in ("worker1", "worker2")
        }
        try:
            # The workers boot while dagster dev does.
            with deployment.dagster_dev(environment, work) as url:
                for worker in workers.values():
                    deployment.wait_until(
                        lambda worker=worker: "ready." in worker.log.read_text(),
                        f"{worker.name} ready",
                        worker,
                        timeout=120,
                    )
                yield SharedDeployment(url, home, bucket, environment, workers, client)
        finally:
            for worker in workers.values():
                worker.stop()


@pytest.fixture(scope="module")
def local_variant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[deployment.LocalVariant]:
    """The local variant's output of the same days (in-process, local disk), made in a child
    process while the deployment starts and runs its backfill."""
    variant = deployment.LocalVariant(
        tmp_path_factory.mktemp("local-variant"),
        (str(DATES[0]), str(DATES[-1])),
        {"RLX_REPLAY_CHUNK_ROWS": CHUNK_ROWS},
    )
    try:
        yield variant
    finally:
        variant.process.stop()


@contextlib.contextmanager
def shared_instance(shared: SharedDeployment) -> Iterator[DagsterInstance]:
    """The deployment's instance (Postgres), opened by the test with the same settings."""
    names = [
        n for n in shared.environment if n.startswith("RLX_PG_") or n == "RLX_MAX_CONCURRENT_RUNS"
    ]
    with (
        mock.patch.dict(os.environ, {name: shared.environment[name] for name in names}),
        DagsterInstance.from_config(str(shared.home)) as instance,
    ):
        yield instance


def s3_files(shared: SharedDeployment, dates: list[dt.date]) -> dict[str, bytes]:
    found = {}
    paginator = shared.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=shared.bucket, Prefix="assets/"):
        for item in page.get("Contents", []):
            relative = item["Key"].removeprefix("assets/")
            if relative.startswith(".") or not relative.endswith(".parquet"):
                continue
            if any(f"dt={day}" in relative for day in dates):
                body = shared.s3.get_object(Bucket=shared.bucket, Key=item["Key"])["Body"]
                found[relative] = body.read()
    return found


def celery_hosts(instance: DagsterInstance, backfill_id: str) -> dict[str, str]:
    """step run id:step key -> the celery worker that executed it (dagster-celery's event)."""
    hosts = {}
    for record in instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id})):
        for entry in instance.all_logs(record.dagster_run.run_id, DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            metadata = event.event_specific_data.metadata if event.event_specific_data else {}
            if "Celery worker" in metadata:
                key = f"{record.dagster_run.run_id}:{event.step_key}"
                hosts[key] = metadata["Celery worker"].value
    return hosts


def launch(shared: SharedDeployment, dates: tuple[str, str], symbols: tuple[str, ...]) -> str:
    from rlx_assets.distributed.backfill import BackfillClient

    client = BackfillClient(shared.url)
    try:
        assets, _ = client.partitioned_assets()
        days = [dt.date.fromisoformat(d) for d in dates]
        return client.launch(days, list(symbols), assets, "test")
    finally:
        client.close()


def test_backfill_on_two_celery_workers_equals_the_local_variant(
    local_variant: deployment.LocalVariant, shared: SharedDeployment
) -> None:
    started = time.monotonic()
    launched = deployment.run_backfill(
        shared.url, shared.environment, (str(DATES[0]), str(DATES[2])), timeout=900
    )
    seconds = time.monotonic() - started
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    backfill_id = launched.stdout.split()[1].rstrip(":")
    with shared_instance(shared) as instance:
        assert_days_in_order(instance, backfill_id)
        seeds = book_seeds(instance, DATES[:3])
        hosts = celery_hosts(instance, backfill_id)
        per_partition = seconds_per_partition(instance, backfill_id)
    assert {host.split("@")[0] for host in hosts.values()} == {"worker1", "worker2"}, hosts
    for symbol in deployment.SYMBOLS:
        assert seeds[partition_key(DATES[1], symbol)] == "previous_book_state"
    remote = s3_files(shared, DATES[:3])
    local_files = local_variant.files()
    local = {k: v for k, v in local_files.items() if any(f"dt={d}" in k for d in DATES[:3])}
    assert sorted(remote) == sorted(local)
    assert len(remote) >= 8 * 2 * 3  # every asset of every partition
    different = [name for name in local if remote[name] != local[name]]
    assert not different
    steps = {name: sum(h.startswith(name) for h in hosts.values()) for name in shared.workers}
    print(
        f"\nshared variant: backfill of 3 days x 2 symbols in {seconds:.1f} s, runs of a"
        f" partition {per_partition:.1f} s; steps per worker {steps}"
    )


def test_worker_killed_mid_book_step_resumes_from_s3_checkpoint(
    local_variant: deployment.LocalVariant, shared: SharedDeployment
) -> None:
    record_key = (
        "assets/.checkpoints/reconstructed_book/exchange=BINANCE/symbol=BTC-USDT/"
        f"dt={KILLED_DAY}/checkpoint.json"
    )
    backfill_id = launch(shared, (str(KILLED_DAY), str(KILLED_DAY)), ("BTC-USDT",))
    with shared_instance(shared) as instance:

        def book_worker() -> list[str]:
            hosts = celery_hosts(instance, backfill_id)
            return [host for key, host in hosts.items() if key.endswith(":reconstruct")]

        # The worker that took the book step (dagster-celery records it as the step starts).
        running = deployment.wait_until(book_worker, "the book step on a worker", timeout=300)
        assert len(running) == 1, running
        victim = shared.workers[running[0].split("@")[0]]
        deadline = time.monotonic() + 120
        while True:  # a tight loop: the step writes a checkpoint every few tens of ms
            with contextlib.suppress(shared.s3.exceptions.NoSuchKey):
                body = shared.s3.get_object(Bucket=shared.bucket, Key=record_key)["Body"].read()
                if json.loads(body)["chunks"] >= 2:  # midway: chunks done, more to come
                    break
            assert time.monotonic() < deadline, "no book checkpoint on S3"
            time.sleep(0.01)
        victim.kill()  # SIGKILL to the worker's process group, mid-step

        def finished():
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            backfill = instance.get_backfill(backfill_id)
            return backfill.status.value.startswith("COMPLETED") and all(
                r.dagster_run.is_finished for r in records
            )

        deployment.wait_until(finished, "the backfill after the kill", timeout=600)
        records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert all(r.dagster_run.status.value == "SUCCESS" for r in records)
        records = instance.fetch_materializations(
            AssetRecordsFilter(
                AssetKey("reconstructed_book"),
                asset_partitions=[partition_key(KILLED_DAY, "BTC-USDT")],
            ),
            limit=1,
        ).records
        metadata = records[0].asset_materialization.metadata
        after = celery_hosts(instance, backfill_id)
    assert metadata["resumed_from_chunk"].value >= 2
    book_hosts = [host for key, host in after.items() if key.endswith(":reconstruct")]
    assert book_hosts and book_hosts[-1] != running[0], after  # the other worker finished it
    remote = s3_files(shared, [KILLED_DAY])
    local = {
        k: v
        for k, v in local_variant.files().items()
        if f"dt={KILLED_DAY}" in k and "symbol=BTC-USDT" in k
    }
    assert sorted(remote) == sorted(local)
    assert not [name for name in local if remote[name] != local[name]]
    print(
        f"resumed from chunk {metadata['resumed_from_chunk'].value} on another worker,"
        f" {metadata['recovery_seconds'].value:.2f} s to recover"
    )
