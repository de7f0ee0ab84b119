"""A real PostgreSQL for the tests: initdb into a temporary directory, serve it on loopback.

Nothing is shared with Debian's own `postgresql` service (which may be stopped): the
cluster lives in a fresh directory, listens on a free port of 127.0.0.1 and on a socket
in that directory, trusts local connections, and is removed at the end of the session.
initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 30.0


NEEDED = ("initdb", "postgres", "pg_isready", "createdb")


def find_bin_dir() -> Path | None:
    """A directory with every binary we need: Debian's newest version, else initdb's on PATH."""

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    candidates = [Path(p).parent for p in debian]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / name).exists() for name in NEEDED):
            return directory
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throwaway cluster; `create_database()` gives each test its own database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, and there is no 'postgres' user to run PostgreSQL as"
                ) from None
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            self._owner = (account.pw_uid, account.pw_gid)
        # Not under pytest's tmp_path: as root that is mode 0700 and `postgres` can't enter it.
        self.base = Path(tempfile.mkdtemp(prefix="callassist-pg-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            args, capture_output=True, text=True, cwd=self.base, timeout=60, **self._as
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self._as:
            for path in (self.base, self.socket_dir):
                os.chown(path, *self._owner)
        self._run(
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data_dir), "-U", "postgres"),
            *("--auth=trust", "--encoding=UTF8", "--no-sync"),
        )
        log = open(self.log_path, "wb")  # noqa: SIM115 - the server writes to it until stop()
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                *("-D", str(self.data_dir), "-k", str(self.socket_dir)),
                *("-p", str(self.port), "-h", "127.0.0.1"),
                # A test cluster: durability traded for speed.
                *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
                *("-c", "max_connections=200"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.base,
            **self._as,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-U", "postgres"]
                + ["-h", "127.0.0.1", "-p", str(self.port)],
                timeout=10,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its `postgresql+asyncpg://` URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        self._run(
            str(self.bin_dir / "createdb"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name),
        )
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        process = self.process
        self.process = None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, stop
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            f"PostgreSQL is not installed: need {', '.join(NEEDED)} (apt-get install postgresql)"
        )
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database for one test."""
    return postgres_server.create_database()
