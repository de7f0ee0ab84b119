"""Issue 9, items 4-12: stale peers, recordings across restarts, demo passwords, private data
files, the signing key, customer-safe errors, security headers, revoking staff tokens."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
import wave
from pathlib import Path

import aiohttp
from aiortc import RTCPeerConnection

from server.keys import HUB
from server.qa import encode_wav_to_opus
from signaling.ice import rtc_configuration
from tests.conftest import BASE_ENV, FIXTURES, PASSWORD, Running, make_settings, serving
from tests.server.test_auth import assert_error

ROOT = Path(__file__).resolve().parents[2]


def _socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


# -- 4: server peers whose ICE never connects ---------------------------------------------


async def test_a_peer_that_never_connects_is_closed_and_its_sockets_released(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", CALLASSIST_ICE_CONNECT_TIMEOUT_S="1")
    async with serving(settings) as run:
        session = await run.customer("Ann")
        call_id = await run.new_call(session["token"])
        # A client that sends its offer and vanishes before it applies the answer.
        pc = RTCPeerConnection(rtc_configuration([], "all"))
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        status, answer = await run.api.call(
            "POST", f"/api/calls/{call_id}/offer", session["token"],
            json={"sdp": pc.localDescription.sdp, "type": "offer"},
        )  # fmt: skip
        assert status == 200 and answer["type"] == "answer"
        await pc.close()
        live = run.server.app[HUB].get_live(call_id)
        assert live is not None and set(live.participants) == {"customer"}
        peer = live.participants["customer"]
        with_peer = _socket_fds()

        deadline = time.monotonic() + 10
        while live.participants:
            assert time.monotonic() < deadline, peer.connection_state
            await asyncio.sleep(0.1)
        assert peer.connection_state == "closed"
        await asyncio.sleep(0.2)
        assert _socket_fds() < with_peer
        # The call itself goes on: the caller may connect again.
        status, body = await run.api.call("GET", f"/api/calls/{call_id}", session["token"])
        assert status == 200 and body["state"] == "waiting"


# -- 5 and 8: recordings across a restart; private data files -------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _record(run: Running, token: str, call_id: str, seconds: float) -> None:
    packets = encode_wav_to_opus(FIXTURES / "speech" / "customer_refund.wav")
    caller = run.participant(token, "customer", packets=packets)
    await caller.connect(call_id)
    await asyncio.sleep(seconds)
    await caller.close()
    await asyncio.sleep(0.5)


async def _duration(run: Running, token: str, call_id: str) -> float:
    async with run.http.get(
        f"{run.url}/api/calls/{call_id}/recordings/customer",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 200
        body = await r.read()
    with wave.open(io.BytesIO(body)) as wav:
        return wav.getnframes() / wav.getframerate()


async def test_recordings_survive_a_restart_and_data_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = make_settings(
        data,
        CALLASSIST_STT_ENGINE="local",
        CALLASSIST_RECORD_AUDIO="true",
        CALLASSIST_SECRET_KEY="",  # generated into the data dir
    )
    async with serving(settings) as run:
        agent = await run.agent()
        session = await run.customer("Ann")
        call_id = await run.new_call(session["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", agent)
        await _record(run, session["token"], call_id, 3.0)
        before = await _duration(run, agent, call_id)
    assert before > 2.0

    async with serving(settings) as run:  # the same data dir: a restart
        await _record(run, session["token"], call_id, 2.0)
        after = await _duration(run, agent, call_id)
        await run.api.call("POST", f"/api/calls/{call_id}/end", agent)
        assert _mode(data) == 0o700
        for name in ("callassist.db", "callassist.db-wal", "callassist.db-shm", "secret_key"):
            assert _mode(data / name) == 0o600, name
    assert after > before + 1.0, (before, after)
    call_dir = data / "recordings" / call_id
    assert _mode(data / "recordings") == 0o700 and _mode(call_dir) == 0o700
    parts = sorted(call_dir.iterdir())
    assert [p.name for p in parts] == ["customer.1.wav", "customer.wav"]
    assert all(_mode(p) == 0o600 for p in parts)


async def test_an_existing_world_readable_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "callassist.db").touch(mode=0o644)
    (data / "callassist.db").chmod(0o644)
    async with serving(make_settings(data)) as run:
        await run.customer("Ann")
    assert _mode(data) == 0o700 and _mode(data / "callassist.db") == 0o600


# -- 6: demo passwords ----------------------------------------------------------------------


async def test_config_never_carries_the_demo_passwords(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with serving(make_settings(data, CALLASSIST_DEMO="true")) as run:
        status, body = await run.api.call("GET", "/api/config")
        assert status == 200
        assert body == {"demo": {"agent": {"username": "agent"}, "admin": {"username": "admin"}}}
        stored = json.loads((data / "demo_credentials.json").read_text())
        assert _mode(data / "demo_credentials.json") == 0o600
        assert stored["agent"]["password"] not in json.dumps(body)
        token = (await run.api.call("POST", "/api/auth/login", json=stored["agent"]))[1]["token"]
        assert token


# -- 9: the token signing key ---------------------------------------------------------------


def _serve(data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CALLASSIST_")}
    return subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", str(data)],
        env={**base, **BASE_ENV, "CALLASSIST_SECRET_KEY": "", **env},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_empty_secret_key_file_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret_key").write_text("")
    result = _serve(data, {})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "secret_key holds no token signing key" in result.stderr
    assert "delete the file" in result.stderr


def test_a_short_secret_key_from_the_environment_is_refused(tmp_path: Path) -> None:
    result = _serve(tmp_path / "data", {"CALLASSIST_SECRET_KEY": "short-key"})
    assert result.returncode == 2
    assert "CALLASSIST_SECRET_KEY must be at least 32 bytes" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# -- 10: customers get a plain sentence, agents the detail ----------------------------------


async def test_customers_get_no_internal_error_text(tmp_path: Path) -> None:
    with socket.socket() as s:  # a speech-to-text server that is not there
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    settings = make_settings(
        tmp_path / "data",
        CALLASSIST_STT_ENGINE="openai",
        CALLASSIST_STT_BASE_URL=f"http://127.0.0.1:{dead}/v1",
        CALLASSIST_STT_API_KEY="test-key",
        CALLASSIST_STT_TIMEOUT="2",
        CALLASSIST_INTERIM_INTERVAL_MS="0",
    )
    async with serving(settings) as run:
        agent_token = await run.agent()
        session = await run.customer("Ann")
        call_id = await run.new_call(session["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
        packets = encode_wav_to_opus(FIXTURES / "speech" / "customer_refund.wav", 1.0)
        customer = run.participant(session["token"], "customer", packets=packets)
        agent = run.participant(agent_token, "agent")
        await customer.connect(call_id)
        await agent.connect(call_id)

        is_status = lambda e: e["type"] == "status"  # noqa: E731
        to_agent = await agent.wait_for(is_status, timeout=60)
        to_customer = await customer.wait_for(is_status, timeout=30)
        assert to_agent["code"] == to_customer["code"] == "stt_segment_skipped"
        assert "request failed" in to_agent["message"]
        assert to_customer["message"] == "Some live features are slow right now; your call continues."

        # A broken SDP offer: the customer is told it is invalid, the agent also why.
        sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 zz\r\na=ice-ufrag:x\r\nbroken\r\n"
        offer = {"type": "offer", "sdp": sdp}
        _, body = await run.api.call("POST", f"/api/calls/{call_id}/offer", session["token"], json=offer)
        assert body["error"] == {"code": "invalid_sdp", "message": "the offer is not a valid SDP offer"}
        _, body = await run.api.call("POST", f"/api/calls/{call_id}/offer", agent_token, json=offer)
        assert body["error"]["message"].startswith("the offer is not a valid SDP offer: ")


# -- 11: security headers -------------------------------------------------------------------


async def test_pages_carry_security_headers_and_static_errors_are_json(running: Running) -> None:
    for path in ("/", "/customer", "/agent", "/supervisor"):
        async with running.http.get(running.url + path) as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["Server"] == "callassist"
            assert "<script>" not in await r.text()  # every script is a file CSP allows
    for path in ("/static/nope.js", "/static/../server/app.py", "/no-such-page"):
        async with running.http.get(running.url + path) as r:
            body = await r.json(content_type=None)
            assert_error(r.status, body, 404)
            assert r.headers["Server"] == "callassist"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with running.http.get(running.url + "/health") as r:
        assert "aiohttp" not in r.headers["Server"] and "Python" not in r.headers["Server"]


# -- 12: revoking staff tokens; SSE streams per call ----------------------------------------


def _user_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CALLASSIST_")}
    return subprocess.run(
        [sys.executable, "-m", "server", "user", *args, "--data-dir", str(data)],
        env=base, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_a_disabled_users_tokens_stop_working_within_seconds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with serving(make_settings(data)) as run:
        token = await run.agent("alice")
        session = await run.customer("Ann")
        call_id = await run.new_call(session["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", token)
        stream = await run.http.get(
            f"{run.url}/api/calls/{call_id}/events", headers={"Authorization": f"Bearer {token}"}
        )
        assert stream.status == 200

        result = await asyncio.to_thread(_user_cli, data, "disable", "alice")
        assert result.returncode == 0, result.stderr
        disabled_at = time.monotonic()
        while True:
            status, body = await run.api.call("GET", "/api/calls", token)
            if status == 401:
                break
            assert time.monotonic() - disabled_at < 5, body
            await asyncio.sleep(0.2)
        # Its event stream ends too, and it cannot log in.
        async with asyncio.timeout(10):
            await stream.read()
        stream.close()
        status, body = await run.api.call(
            "POST", "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert_error(status, body, 401)

        result = await asyncio.to_thread(_user_cli, data, "enable", "alice")
        assert result.returncode == 0, result.stderr
        await asyncio.sleep(2.5)
        status, body = await run.api.call(
            "POST", "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert status == 200
        status, _ = await run.api.call("GET", "/api/calls", body["token"])
        assert status == 200
        status, _ = await run.api.call("GET", "/api/calls", token)  # the old token stays dead
        assert status == 401
    result = await asyncio.to_thread(_user_cli, data, "disable", "nobody")
    assert result.returncode == 1 and "no user 'nobody'" in result.stderr


async def test_event_streams_per_call_are_limited(tmp_path: Path) -> None:
    async with serving(make_settings(tmp_path / "data", CALLASSIST_MAX_STREAMS_PER_CALL="2")) as run:
        admin = await run.agent("root", role="admin")
        session = await run.customer("Ann")
        call_id = await run.new_call(session["token"])
        url = f"{run.url}/api/calls/{call_id}/events"
        headers = {"Authorization": f"Bearer {admin}"}
        streams: list[aiohttp.ClientResponse] = []
        try:
            for _ in range(2):
                streams.append(await run.http.get(url, headers=headers))
                assert streams[-1].status == 200
            async with run.http.get(url, headers=headers) as r:
                assert r.status == 429
                assert (await r.json())["error"]["code"] == "too_many_streams"
        finally:
            for s in streams:
                s.close()
