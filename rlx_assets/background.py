"""Work on a background thread while the caller goes on: reading ahead and writing behind.

Arrow and Parquet release the GIL while they decode, encode and do I/O, so on two cores a
read or a write overlaps the compute of the next batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
AHEAD = 2  # items a stage may run ahead of the next one
_END = object()


def read_ahead(items: Iterable[T], depth: int = AHEAD) -> Iterator[T]:
    """The items of `items`, produced on a background thread at most `depth` ahead."""
    iterator = iter(items)
    pool = ThreadPoolExecutor(1, thread_name_prefix="rlx-read")
    try:
        # One worker: the `next` calls run one after another, never concurrently.
        pending = deque(pool.submit(next, iterator, _END) for _ in range(depth))
        while True:
            item = pending.popleft().result()
            if item is _END:
                return
            pending.append(pool.submit(next, iterator, _END))
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class WriteBehind:
    """Runs write jobs in order on a background thread, at most `depth` queued; a job's error
    is raised in the caller at the next `submit` or at `close`."""

    def __init__(self, depth: int = AHEAD) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rlx-write")
        self._pending: deque[Future] = deque()
        self._depth = depth

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(job, *args))

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(raise_errors=kind is None)

    def drain(self) -> None:
        """Wait for the queued jobs, raising the first error."""
        while self._pending:
            self._pending.popleft().result()

    def close(self, raise_errors: bool = True) -> None:
        """Wait for the queued jobs; `raise_errors=False` when the caller is failing already."""
        try:
            while self._pending:
                job = self._pending.popleft()
                if raise_errors:
                    job.result()
                else:
                    job.exception()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
