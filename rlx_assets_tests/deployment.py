"""Real servers and processes of a deployment, on 127.0.0.1, started and stopped by the tests:
`dagster dev` (webserver + daemon), PostgreSQL (Debian's / the machine's binaries), Redis
(Debian's redis-server) and celery workers, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rlx_assets_tests.conftest import REPO

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
SYMBOLS = ("BTC-USDT", "ETH-USDT")
START_DATE = "2024-08-01"
# Small days: a partition's whole graph in about a second, still several replay chunks.
SYNTHETIC_SCALE = "0.0005"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_environment(tmp: Path, home: Path) -> dict[str, str]:
    """No RLX_ variable of the caller; the graph's settings for a small synthetic backfill."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_LAKE_URL="synthetic://",
        RLX_SYMBOLS=",".join(SYMBOLS),
        RLX_START_DATE=START_DATE,
        RLX_SYNTHETIC_SCALE=SYNTHETIC_SCALE,
        RLX_GOLDEN_DIR=str(tmp / "golden"),
        RLX_METRICS_DIR=str(tmp / "metrics"),
        RLX_LAKE_CACHE_DIR=str(tmp / "lake-cache"),
        PYTHONUNBUFFERED="1",
    )
    return environment


def instance_home(variant: str, home: Path, work: Path) -> Path:
    """deploy/<variant>/dagster.yaml copied into `home`, its relative folders made absolute
    under `work` (the test reads the instance from its own working folder)."""
    home.mkdir(parents=True, exist_ok=True)
    text = (DEPLOY / variant / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(text.replace("base_dir: data/", f"base_dir: {work}/data/"))
    return home


class Process:
    """A child in its own process group, output to a log file; stopped with SIGTERM, then
    SIGKILL of the group."""

    def __init__(self, name: str, command: list[str], log: Path, **popen) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as output:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # dagster dev maps SIGTERM to SIGINT's handler: an ignored SIGINT (a background
                # job of a shell) would make it ignore SIGTERM too.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                **popen,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        assert self.popen.poll() is None, f"{self.name} exited:\n{self.tail()}"

    def kill(self) -> None:
        """SIGKILL to the whole group: the machine is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill()


def wait_until(probe, what: str, process: Process | None = None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.assert_alive()
        with contextlib.suppress(Exception):
            found = probe()
            if found:
                return found
        time.sleep(0.25)
    detail = f":\n{process.tail()}" if process is not None else ""
    raise AssertionError(f"{what}: not within {timeout} s{detail}")


@contextlib.contextmanager
def dagster_dev(environment: dict[str, str], work: Path) -> Iterator[str]:
    """`dagster dev` (webserver, daemon, code server) on 127.0.0.1; yields its URL."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "dagster"), "dev", "-m", "rlx_assets.definitions"]
    server = Process(
        "dagster dev",
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        work / "dagster-dev.log",
        cwd=work,
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/server_info", timeout=5).status_code == 200,
            "dagster dev answering",
            server,
            timeout=180,
        )
        yield url
    finally:
        server.stop()


class LocalVariant:
    """The local variant's output of some days, as `scripts/run_pipeline.py` makes it (in-process,
    local disk), computed in a child process while the test starts and drives its deployment."""

    def __init__(
        self, tmp: Path, dates: tuple[str, str], environment: dict[str, str] | None = None
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.storage = tmp / "assets"
        home = tmp / "home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        child = base_environment(tmp, home)
        child.update(environment or {}, RLX_STORAGE_URL=str(self.storage))
        self.process = Process(
            "run_pipeline (local variant)",
            [
                sys.executable,
                str(REPO / "scripts" / "run_pipeline.py"),
                "--start-date",
                dates[0],
                "--end-date",
                dates[1],
                "--no-progress",
            ],
            tmp / "run_pipeline.log",
            cwd=REPO,
            env=child,
        )

    def files(self, timeout: float = 600) -> dict[str, bytes]:
        """Every asset file (relative path -> bytes) once the run ends; fails if it failed."""
        try:
            code = self.process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.process.name}: not done within {timeout} s") from None
        assert code == 0, f"{self.process.name} exited {code}:\n{self.process.tail()}"
        return {
            path.relative_to(self.storage).as_posix(): path.read_bytes()
            for path in self.storage.rglob("*.parquet")
            if not path.relative_to(self.storage).as_posix().startswith(".")
        }


def run_backfill(url: str, environment: dict[str, str], dates: tuple[str, str], timeout: int):
    """scripts/backfill.py as a user runs it."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "backfill.py"),
            "--url",
            url,
            "--start-date",
            dates[0],
            "--end-date",
            dates[1],
            "--symbols",
            *SYMBOLS,
            "--poll",
            "1",
            "--timeout",
            str(timeout),
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )


# --- PostgreSQL and Redis ---------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    # Debian and Ubuntu keep the server outside PATH, one folder per major version.
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates = sorted(
        versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    candidates.reverse()
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


@contextlib.contextmanager
def postgres() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL cluster on 127.0.0.1 (a free port); yields the RLX_PG_* settings of
    deploy/shared/dagster.yaml. Skips when no server binaries are installed. Its folder is its
    own under the system's temporary folder: as root the server runs as 'postgres', which
    cannot enter pytest's owner-only folders."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="rlx-pg-"))
    data, port = folder / "pgdata", free_port()
    user_args: dict = {}
    if os.geteuid() == 0:  # postgres refuses to run as root: a user of its own
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
        user_args = {"user": account.pw_uid, "group": account.pw_gid}
        os.chown(folder, account.pw_uid, account.pw_gid)
    password_file = folder / "pw"
    password_file.write_text("rlx-test-pg\n")
    if user_args:
        os.chown(password_file, user_args["user"], user_args["group"])
    subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "rlx",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        **user_args,
    )
    server = Process(
        "postgres",
        [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
        ],
        folder / "postgres.log",
        **user_args,
    )
    settings = {
        "RLX_PG_HOST": "127.0.0.1",
        "RLX_PG_PORT": str(port),
        "RLX_PG_USER": "rlx",
        "RLX_PG_PASSWORD": "rlx-test-pg",
        "RLX_PG_DB": "postgres",
    }
    try:
        wait_until(lambda: _accepts(port), "postgres accepting connections", server, timeout=60)
        yield settings
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextlib.contextmanager
def redis(folder: Path) -> Iterator[str]:
    """Debian's redis-server on 127.0.0.1 (a free port, no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian: apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Process(
        "redis",
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        folder / "redis.log",
        cwd=folder,
    )
    try:
        wait_until(lambda: _accepts(port), "redis accepting connections", server, timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


def celery_worker(name: str, environment: dict[str, str], work: Path) -> Process:
    """One worker "machine": its own working folder, one step at a time (solo pool: the step
    runs in the worker's process, so SIGKILL of it is the machine going away)."""
    work.mkdir(parents=True, exist_ok=True)
    return Process(
        name,
        [
            str(BIN / "celery"),
            "-A",
            "rlx_assets.distributed.celery_app",
            "worker",
            "-Q",
            "dagster",
            "-n",
            f"{name}@%h",
            "-P",
            "solo",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        work / f"{name}.log",
        cwd=work,
        env=environment,
    )
