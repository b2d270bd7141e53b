"""Running the whole graph for one partition against an instance (scripts and tests share it)."""

from __future__ import annotations

import datetime as dt

from dagster import AssetCheckSeverity, DagsterInstance, ExecuteInProcessResult
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags

from rlx_assets.allocator import release_free_memory
from rlx_assets.definitions import ALL_ASSETS_JOB, build_definitions
from rlx_assets.executors import executor_for, threads_executor
from rlx_assets.partitions import partition_key
from rlx_assets.settings import RlxSettings


def run_partition(
    settings: RlxSettings,
    instance: DagsterInstance,
    day: dt.date,
    symbol: str,
    console_log_level: str = "WARNING",
) -> ExecuteInProcessResult:
    """One run of every asset for `day|symbol` in this process, with the Definitions' executor
    (`RLX_EXECUTOR`: ready steps side by side on threads by default, as `dagster asset
    materialize` runs them); the full event log still goes to the instance.

    Not `JobDefinition.execute_in_process`: it swaps the job's executor for Dagster's in-process
    one, which runs one step at a time (a full-scale day took 42 s that way, against 33 s with
    the raw tables, and then the event stream and the quality assets, side by side). With
    `RLX_EXECUTOR=celery` the steps run on threads here too: a script's run stays on its
    machine (celery runs are launched from the UI or `dagster asset materialize`)."""
    executor = (
        threads_executor(settings) if settings.executor == "celery" else executor_for(settings)
    )
    job = build_definitions(settings).resolve_job_def(ALL_ASSETS_JOB).with_executor_def(executor)
    key = partition_key(day, symbol)
    run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}
    try:
        return core_execute_in_process(
            job=InMemoryJob(job),
            run_config=run_config,
            instance=instance,
            output_capturing_enabled=True,
            raise_on_error=False,
            run_tags=merge_run_tags(
                job_def=job,
                partition_key=key,
                tags=None,
                asset_selection=None,
                instance=instance,
                run_config=run_config,
            ),
        )
    finally:
        release_free_memory()


def failure_reason(result: ExecuteInProcessResult) -> str:
    """The first failed step and its error message, or that the run was interrupted, on one
    line."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            failure = event.step_failure_data.user_failure_data
            if failure is not None and failure.description:
                # A project error raised as dagster.Failure: its description is the message.
                return f"step {event.step_key}: {failure.description.strip().splitlines()[0]}"
            error = event.step_failure_data.error
            # Dagster wraps the user's exception; its own message is the useful one.
            while error is not None and error.cause is not None:
                error = error.cause
            message = error.message.strip().splitlines()[0] if error else "unknown error"
            return f"step {event.step_key}: {message}"
    for event in result.all_events:
        if not event.is_engine_event:
            continue
        data = event.engine_event_data
        if data is not None and "steps_interrupted" in data.metadata:
            # The threaded executor's: the steps running went on to their end, none started.
            return (
                "interrupted (Ctrl-C or the run's termination): the steps running finished, "
                "the rest did not start"
            )
    return "the run did not succeed (no step failure recorded)"


def failed_checks(result: ExecuteInProcessResult) -> list[str]:
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            severity = "ERROR" if evaluation.severity == AssetCheckSeverity.ERROR else "WARN"
            lines.append(
                f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name} ({severity})"
            )
    return lines
