"""The allocator cap: a process that runs days one after another must not spread its heap over
a new glibc arena per thread (the cause of the daily peak rising in the 7-day run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's arenas",
)

# Threads alive at once, each allocating: glibc gives each its own arena unless capped.
_ARENAS_IN_USE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from rlx_assets.allocator import limit_malloc_arenas
    capped = limit_malloc_arenas() if sys.argv[1] == "cap" else None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    ready, done = threading.Barrier(7), threading.Event()
    def allocate():
        libc.malloc(4096)
        ready.wait()
        done.wait()
    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    ready.wait()
    print(capped, flush=True)
    libc.malloc_stats()  # to stderr, one "Arena N:" per arena
    done.set()
    """
)


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    completed = subprocess.run(
        [sys.executable, "-c", _ARENAS_IN_USE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    return completed.stdout.strip(), completed.stderr.count("Arena ")


def test_the_cap_holds_threads_to_two_arenas() -> None:
    capped, arenas = _arenas("cap")
    assert capped == "True"
    assert arenas == 2


def test_without_the_cap_each_thread_gets_an_arena() -> None:
    # The control: the measurement above can fail.
    _, arenas = _arenas("plain")
    assert arenas > 2


def test_a_users_own_setting_wins() -> None:
    capped, arenas = _arenas("cap", {"MALLOC_ARENA_MAX": "3"})
    assert capped == "False"
    assert arenas == 3
