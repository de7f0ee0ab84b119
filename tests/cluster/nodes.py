"""Server processes of a cluster on loopback (tests/cluster and bench/cluster.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE_TTL_S = 3
"""Short, so that a takeover happens within seconds of a kill; refresh every second."""
READY_TIMEOUT_S = 90.0


class Node:
    """One `python -m server serve` process of the cluster."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], cpus: str | None = None) -> None:
        self.name = name
        self.cpus = cpus
        """`taskset -c` CPU list to pin the process to (benchmarks)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {**env, "CALLASSIST_NODE_URL": self.url}
        self.log_path = data_dir.parent / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            pin = ["taskset", "-c", self.cpus] if self.cpus else []
            self.process = subprocess.Popen(
                pin
                + [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1"]
                + ["--port", str(self.port), "--data-dir", str(self.data_dir)],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while True:
            assert self.process is not None and self.process.poll() is None, (
                f"node {self.name} exited:\n{self.log_tail()}"
            )
            try:
                async with http.get(self.url + "/health") as r:
                    if r.status == 200:
                        return dict(await r.json())
            except aiohttp.ClientError:
                pass
            assert loop.time() < deadline, f"node {self.name} never got ready:\n{self.log_tail()}"
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """kill -9: no goodbye to Redis, no lease released."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
