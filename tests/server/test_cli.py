"""`python -m server serve` and `user add` as an admin runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLASSIST_")}
    env.update(
        CALLASSIST_DATA_DIR=str(data_dir),
        CALLASSIST_ICE_HOSTS="127.0.0.1",
        CALLASSIST_STT_ENGINE="off",
        CALLASSIST_ASSIST_ENGINE="off",
    )
    return env


def user_add(env: dict[str, str], *args: str, password: str = "s3cret-pass") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", "user", "add", *args, "--password-stdin"],
        input=password,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_user_add_while_serving(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        ok = user_add(env, "carol", "--role", "agent")
        assert ok.returncode == 0, ok.stderr
        dup = user_add(env, "carol", "--role", "admin")
        assert dup.returncode != 0 and "already exists" in dup.stderr
        short = user_add(env, "dave", "--role", "agent", password="short")
        assert short.returncode != 0 and "at least 8" in short.stderr
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/auth/login",
            data=b'{"username": "carol", "password": "s3cret-pass"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200
        # The signing key was generated once and kept, never a constant.
        key = (tmp_path / "data" / "secret_key").read_text()
        assert len(key) >= 32
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    env["CALLASSIST_PORT"] = "eighty"
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "CALLASSIST_PORT must be an integer" in result.stderr
