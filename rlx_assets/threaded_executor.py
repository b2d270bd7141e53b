"""Dagster executor that runs a run's ready steps at the same time, on threads of the run's
own process.

Why: a partition's steps are independent in groups (the three raw tables; then the event
stream beside the quality assets), and each uses about one core: its compute holds the
interpreter while its Parquet reading and writing run beside it. Dagster's multiprocess
executor would overlap them too, but starts a process per step (imports and code location,
about 5 s each) with its own copy of the libraries; threads share one process, its imports
and its memory. The engine's compiled kernels and Arrow release the interpreter lock, so two
steps overlap well on two cores.

It is the in-process executor with one change: as Dagster's own step loop
(`inner_plan_execution_iterator`), one execution context (resources, loggers, the capture of
stdout/stderr) serves the run, and `ActiveExecution` says which steps are ready, skipped or
retried; but up to `max_concurrent` ready steps run at once, each on a thread, their events
handed back to this loop. Steps start in Dagster's priority order (the `dagster/priority` op
tag), so the longest chain starts first. Resources are shared by the steps running at once.
An interrupt (Ctrl-C, a run's termination) starts no more steps; a thread cannot be stopped, so
the steps running end first, then the run ends as interrupted.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from dagster import Field, Int, executor
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._core.storage.tags import PRIORITY_TAG
from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info

from rlx_assets.allocator import release_free_memory

DEFAULT_MAX_CONCURRENT = 2
_POLL_S = 0.5  # how often the loop looks for interrupts and retries while steps run


def step_priority(priority: int) -> dict[str, str]:
    """Op tags that start a step before ready steps of lower priority (default 0)."""
    return {PRIORITY_TAG: str(priority)}


@dataclass(frozen=True)
class _Finished:
    """A step's thread has ended; `error` when it ended by an exception outside Dagster's own
    step handling (which reports a step's failure as events)."""

    step_key: str
    error: SerializableErrorInfo | None = None


class ThreadedExecutor(Executor):
    def __init__(
        self,
        retries: RetryMode,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        step_dependency_config: StepDependencyConfig | None = None,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self._retries = retries
        self.max_concurrent = max_concurrent
        self._step_dependency_config = step_dependency_config or StepDependencyConfig.default()

    @property
    def retries(self) -> RetryMode:
        return self._retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}), up to {self.max_concurrent} at"
            " a time on threads",
            event_specific_data=EngineEventData.in_process(
                os.getpid(), execution_plan.step_keys_to_execute
            ),
        )
        # As the in-process executor: one execution context (resources, loggers) for the run.
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=self._steps,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        )

    def _steps(
        self, job_context: PlanExecutionContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        """`inner_plan_execution_iterator`, with the ready steps run on threads."""
        compute_logs = job_context.instance.compute_log_manager
        events: queue.Queue[tuple[str, DagsterEvent] | _Finished] = queue.Queue()
        running: dict[str, tuple[threading.Thread, StepExecutionContext, list[DagsterEvent]]]
        running = {}
        with (
            InstanceConcurrencyContext(job_context.instance, job_context.dagster_run) as claims,
            execution_plan.start(
                retry_mode=job_context.retry_mode,
                max_concurrent=self.max_concurrent,
                instance_concurrency_context=claims,
                step_dependency_config=job_context.step_dependency_config,
            ) as active,
            ExitStack() as capture,
        ):
            step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
            # Stdout and stderr are the process's: captured once for all its steps.
            log_key = compute_logs.build_log_key_for_run(
                job_context.run_id, create_compute_log_file_key()
            )
            log_context = capture.enter_context(compute_logs.capture_logs(log_key))
            yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
            stopping = False
            while (not stopping and not active.is_complete) or running:
                if not stopping and active.check_for_interrupts():
                    # Threads cannot be interrupted: the steps running end, none starts.
                    yield DagsterEvent.engine_event(
                        job_context,
                        f"Interrupted: no step starts; waiting for {sorted(running)} to end",
                        EngineEventData.interrupted(sorted(running)),
                    )
                    stopping = True
                    active.mark_interrupted()
                ready = (
                    []
                    if stopping
                    else active.get_steps_to_execute(self.max_concurrent - len(running))
                )
                for step in ready:
                    step_context = job_context.for_step(step, active.get_known_state())
                    thread = threading.Thread(
                        target=_run_step,
                        args=(step_context, events),
                        name=f"rlx-step-{step.key}",
                        daemon=True,
                    )
                    running[step.key] = (thread, step_context, [])
                    thread.start()
                yield from active.concurrency_event_iterator(job_context)
                for item in _drain(events, wait=bool(running)):
                    if isinstance(item, _Finished):
                        thread, step_context, step_events = running.pop(item.step_key)
                        thread.join()
                        if item.error is not None:
                            failure = self.log_failure_or_retry_event_after_error(
                                step_context, item.error, active.get_known_state()
                            )
                            step_events.append(failure)
                            yield failure
                            active.handle_event(failure)
                        active.verify_complete(job_context, item.step_key)
                        for event in active.plan_events_iterator(job_context):
                            step_events.append(event)
                            yield event
                        yield from _trigger_hook(step_context, step_events)
                    else:
                        key, event = item
                        running[key][2].append(event)
                        yield event
                        active.handle_event(event)
                if not running:
                    yield from active.plan_events_iterator(job_context)
                    active.sleep_til_ready()


def _drain(events: queue.Queue, wait: bool) -> Iterator[tuple[str, DagsterEvent] | _Finished]:
    """What the steps have reported: waits up to _POLL_S for the first item when `wait`."""
    try:
        yield events.get(timeout=_POLL_S) if wait else events.get_nowait()
    except queue.Empty:
        return
    while True:
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


def _run_step(step_context: StepExecutionContext, events: queue.Queue) -> None:
    key = step_context.step.key
    error = None
    try:
        for event in dagster_event_sequence_for_step(step_context):
            events.put((key, event))
    except BaseException:  # reported as the step's failure by the run's loop
        error = serializable_error_info_from_exc_info(sys.exc_info())
    # What the step freed goes back to the OS before the next steps allocate theirs: a step's
    # threads leave freed pages in glibc's arenas and Arrow's pool, on top of which the next
    # stage's peak would otherwise stand.
    release_free_memory()
    events.put(_Finished(key, error))


@executor(
    name="rlx_threads",
    config_schema={
        "retries": get_retries_config(),
        "max_concurrent": Field(
            Int,
            default_value=DEFAULT_MAX_CONCURRENT,
            description="Steps that run at the same time (threads of the run's process).",
        ),
    },
)
def threaded_executor(init_context) -> ThreadedExecutor:
    config = init_context.executor_config
    return ThreadedExecutor(
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config["max_concurrent"],
    )
