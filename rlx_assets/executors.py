"""The executor of the Definitions, chosen by `RLX_EXECUTOR`.

`in_process` (default): a run's steps execute in the run's own process (one machine; a
multiprocess step costs ~5 s of startup). `celery`: dagster-celery's executor, each step a task
on a Redis broker, taken by whichever worker is free (`celery -A rlx_assets.distributed.celery_app
worker`). The broker settings are read from `RLX_` settings (environment or `.env`) when a run
starts, on the run's machine; they are not Dagster config, so no URL (nor its password) is shown
in the UI's launchpad or stored with the run.
"""

from __future__ import annotations

from typing import Any

from dagster import (
    ExecutorDefinition,
    executor,
    in_process_executor,
    multiple_process_executor_requirements,
)
from dagster._core.execution.retries import RetryMode

from rlx_assets.settings import RlxSettings, get_settings
from rlx_assets.threaded_executor import threaded_executor

CELERY_QUEUE = "dagster"  # dagster-celery's own queue name (its task routes use it)


def celery_app_args(settings: RlxSettings) -> dict[str, Any]:
    """What `dagster_celery.make_app` builds the app from, the same for the run (which submits
    steps) and the workers (which take them)."""
    if settings.celery_broker_url is None:
        raise ValueError(
            "RLX_EXECUTOR=celery needs RLX_CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    broker = settings.celery_broker_url.get_secret_value()
    backend = (
        settings.celery_backend_url.get_secret_value() if settings.celery_backend_url else broker
    )
    visibility = settings.celery_visibility_timeout_s
    return {
        "broker": broker,
        "backend": backend,
        "include": [],
        "config_source": {
            # A step's message is acknowledged when the step ends, not when a worker takes it: a
            # worker that dies mid-step leaves it unacknowledged, and after the visibility timeout
            # Redis hands it to another worker, which resumes from the checkpoint on s3://.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,  # a worker holds one step, not a queue of them
            "task_default_queue": CELERY_QUEUE,
            "broker_transport_options": {
                "visibility_timeout": visibility,
                # Look for tasks of dead workers every tenth of the timeout (1-10 s).
                "unacked_restore_interval": min(10, max(1, visibility // 10)),
                "unacked_restore_throttle": 1,
                # dagster-celery's own connection retry defaults.
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
            "result_expires": 7 * 24 * 3600,
        },
    }


@executor(
    name="rlx_celery",
    config_schema={},
    requirements=multiple_process_executor_requirements(),
)
def rlx_celery_executor(_init_context) -> Any:
    """dagster-celery's executor with the broker and app settings of `RLX_` settings."""
    from dagster_celery.executor import CeleryExecutor

    arguments = celery_app_args(get_settings())
    # Dagster's step retries (RetryPolicy) stay on, as with the in-process executor.
    return CeleryExecutor(retries=RetryMode.ENABLED, **arguments)


def executor_for(settings: RlxSettings) -> ExecutorDefinition:
    if settings.executor == "celery":
        return rlx_celery_executor
    if settings.executor == "threads":
        return threads_executor(settings)
    return in_process_executor


def threads_executor(settings: RlxSettings) -> ExecutorDefinition:
    return threaded_executor.configured(
        {"max_concurrent": settings.max_concurrent_steps}, name="rlx_threads"
    )
