"""The rlx_threads executor: ready steps at the same time, Dagster's step semantics kept."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    RetryPolicy,
    asset,
    define_asset_job,
    execute_job,
    reconstructable,
)

from rlx_assets.threaded_executor import step_priority, threaded_executor

# Steps of one run share this process: they meet here (the jobs are rebuilt by name, so the
# state lives at module level, reset by each test).
BARRIER: threading.Barrier | None = None
LOG = Path("/nonexistent")  # set by the `run` fixture


def _note(name: str) -> None:
    with LOG.open("a") as log:
        log.write(json.dumps({"step": name, "at": time.monotonic()}) + "\n")


def _windows() -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    for line in LOG.read_text().splitlines():
        record = json.loads(line)
        seen.setdefault(record["step"], []).append(record["at"])
    return seen


@asset
def left() -> None:
    _note("left")
    if BARRIER is not None:
        BARRIER.wait()  # passes only when `right` runs at the same time
    time.sleep(0.2)
    _note("left")


@asset
def right() -> None:
    _note("right")
    if BARRIER is not None:
        BARRIER.wait()
    time.sleep(0.2)
    _note("right")


@asset(deps=[left, right])
def joined() -> None:
    _note("joined")


@asset(op_tags=step_priority(5))
def urgent() -> None:
    _note("urgent")


@asset
def broken() -> None:
    raise ValueError("broken on purpose")


@asset(deps=[broken])
def after_broken() -> None:
    _note("after_broken")


@asset(retry_policy=RetryPolicy(max_retries=1))
def flaky(context: AssetExecutionContext) -> None:
    _note("flaky")
    if context.retry_number == 0:
        raise RuntimeError("first attempt fails")


@asset
def interrupter() -> None:
    _note("interrupter")
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the run's loop receives it
    time.sleep(1.0)
    _note("interrupter")


@asset(deps=[interrupter])
def after_interrupt() -> None:
    _note("after_interrupt")


def _job(assets, max_concurrent: int):
    executor = threaded_executor.configured({"max_concurrent": max_concurrent}, name="threads")
    defs = Definitions(
        assets=assets, jobs=[define_asset_job("all", selection="*")], executor=executor
    )
    return defs.resolve_job_def("all")


# Jobs are built by functions of this module (Dagster rebuilds them by name, and caches them).
def pair_job():
    return _job([left, right, joined], 2)


def pair_job_one_at_a_time():
    return _job([left, right, joined], 1)


def priority_job():
    return _job([left, right, urgent], 1)


def interrupted_job():
    return _job([interrupter, after_interrupt], 2)


def failing_job():
    return _job([broken, after_broken, left, flaky], 2)


@pytest.fixture
def run(tmp_path: Path):
    global LOG
    LOG = tmp_path / "steps.jsonl"
    LOG.touch()

    def run_job(job_fn):
        home = tmp_path / f"home-{job_fn.__name__}"
        home.mkdir()
        instance = DagsterInstance.local_temp(str(home))
        with execute_job(reconstructable(job_fn), instance=instance) as result:
            events = [
                (event.event_type, event.step_key) for event in result.all_events if event.step_key
            ]
            return result.success, events

    return run_job


def test_ready_steps_run_at_the_same_time(run) -> None:
    global BARRIER
    BARRIER = threading.Barrier(2, timeout=20)
    try:
        success, events = run(pair_job)
    finally:
        BARRIER = None
    assert success
    windows = _windows()
    # Each passed the barrier, so each started before the other ended; `joined` came after both.
    assert windows["left"][0] < windows["right"][1] and windows["right"][0] < windows["left"][1]
    assert windows["joined"][0] > max(windows["left"][1], windows["right"][1])
    succeeded = {key for kind, key in events if kind == DagsterEventType.STEP_SUCCESS}
    assert succeeded == {"left", "right", "joined"}


def test_one_at_a_time_when_asked(run) -> None:
    success, _ = run(pair_job_one_at_a_time)
    assert success
    windows = _windows()
    first, second = sorted((windows["left"], windows["right"]))
    assert first[1] <= second[0]


def test_priority_starts_first(run) -> None:
    success, _ = run(priority_job)
    assert success
    windows = _windows()
    assert windows["urgent"][0] < min(windows["left"][0], windows["right"][0])


def test_failure_stops_downstream_and_others_finish(run) -> None:
    success, events = run(failing_job)
    assert not success
    by_step: dict[str, set] = {}
    for kind, key in events:
        by_step.setdefault(key, set()).add(kind)
    assert DagsterEventType.STEP_FAILURE in by_step["broken"]
    assert "after_broken" not in by_step  # abandoned, as the in-process executor does
    assert DagsterEventType.STEP_SUCCESS in by_step["left"]
    # A retry policy is honoured: the second attempt succeeds.
    assert DagsterEventType.STEP_UP_FOR_RETRY in by_step["flaky"]
    assert DagsterEventType.STEP_SUCCESS in by_step["flaky"]
    assert len(_windows()["flaky"]) == 2
    assert "after_broken" not in _windows()


def test_max_concurrent_must_be_positive() -> None:
    from dagster._core.execution.retries import RetryMode

    from rlx_assets.threaded_executor import ThreadedExecutor

    with pytest.raises(ValueError, match="at least 1"):
        ThreadedExecutor(RetryMode.ENABLED, max_concurrent=0)


def test_an_interrupt_lets_the_running_step_end_and_starts_no_other(run) -> None:
    success, _ = run(interrupted_job)
    assert not success
    windows = _windows()
    assert len(windows["interrupter"]) == 2  # it was not cut off
    assert "after_interrupt" not in windows


def test_each_step_hands_its_freed_memory_back_when_it_ends(
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlx_assets.threaded_executor as executor_module

    released: list[int] = []

    def release() -> None:  # how many notes the steps had taken when memory was released
        released.append(sum(len(times) for times in _windows().values()))

    monkeypatch.setattr(executor_module, "release_free_memory", release)
    success, _ = run(pair_job_one_at_a_time)
    assert success
    # Once a step, as it ends (one at a time: left and right note their start and end).
    assert released == [2, 4, 5]
