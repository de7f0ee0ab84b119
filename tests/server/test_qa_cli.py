"""The headless QA client, run from the command line against a real server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np

from tests.conftest import dominant_frequency, rms, write_tone
from tests.server.test_cli import ROOT, cli_env, free_port, user_add


def test_qa_pair_hears_the_customer_and_prints_events(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert user_add(env, "qa-agent", "--role", "agent", password="qa-password").returncode == 0
        wav = write_tone(tmp_path / "tone.wav", 523.0, 4.0)
        out = tmp_path / "heard.wav"
        result = subprocess.run(
            [sys.executable, "-m", "server.qa", "--server", f"http://127.0.0.1:{port}", "--pair",
             "--agent-user", "qa-agent", "--wav", str(wav), "--seconds", "4", "--out", str(out), "--end"],
            env={**env, "CALLASSIST_AGENT_PASSWORD": "qa-password"},
            cwd=ROOT, capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        states = [(e["peer"], e["state"]) for e in lines if e["type"] == "call_state"]
        assert ("customer", "waiting") in states and ("agent", "ended") in states
        stats = {e["peer"]: e for e in lines if e["type"] == "qa_stats"}
        assert stats["agent"]["packets_received"] > 100
        with wave.open(str(out)) as heard:
            pcm = np.frombuffer(heard.readframes(heard.getnframes()), dtype=np.int16)
        assert rms(pcm[48000:]) > 2000
        assert abs(dominant_frequency(pcm[48000 : 48000 * 3]) - 523) < 10

        # A wrong password is a clear error, not a traceback.
        bad = subprocess.run(
            [sys.executable, "-m", "server.qa", "--server", f"http://127.0.0.1:{port}",
             "--role", "agent", "--agent-user", "qa-agent", "--seconds", "1"],
            env={**env, "CALLASSIST_AGENT_PASSWORD": "wrong-password"},
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert bad.returncode == 1 and "login failed: 401" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
