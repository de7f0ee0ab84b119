"""Phone callers over Twilio Media Streams, against the Twilio simulator (server/qa_phone.py).

A real server on a loopback port, a real aiortc agent, and a caller that speaks Twilio's
protocol: signed webhook, TwiML, `<Connect><Stream>` WebSocket, μ-law in real time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from server.keys import HUB
from server.models import Customer
from server.qa import Participant
from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
from tests.conftest import Running, dominant_frequency, rms, serving, wait_for_audio, write_tone
from tests.phone.conftest import AUTH_TOKEN, PUBLIC_URL, phone_settings
from tests.server.test_auth import assert_error
from tests.server.test_cli import ROOT


async def waiting_calls(run: Running, token: str) -> list[dict]:
    status, body = await run.api.call("GET", "/api/calls?state=waiting", token)
    assert status == 200
    return list(body["calls"])


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def answered_call(
    run: Running, make_caller, frames: list[bytes] | None = None, agent_packets: list[bytes] | None = None
) -> tuple[TwilioCaller, Participant, str]:
    """A phone caller (saying `frames`) whose call a browser agent accepted and joined."""
    agent_token = await run.agent()
    caller: TwilioCaller = make_caller()
    await caller.dial()
    if frames:
        caller.play(frames)
    status, _ = await run.api.call("POST", f"/api/calls/{caller.call_id}/accept", agent_token)
    assert status == 200
    agent = run.participant(agent_token, "agent", packets=agent_packets)
    await agent.connect(caller.call_id)
    await agent.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "active")
    return caller, agent, agent_token


async def test_twilio_routes_are_off_without_an_auth_token(running: Running) -> None:
    async with running.http.post(running.url + "/twilio/voice", data={"From": "+1555"}) as r:
        assert r.status == 404
    async with running.http.get(running.url + "/twilio/stream") as r:
        assert r.status == 404


async def test_webhook_needs_twilios_signature(phone_server: Running, make_caller) -> None:
    run = phone_server
    agent = await run.agent()
    caller: TwilioCaller = make_caller()
    form = caller.webhook_form()

    status, body = await caller.post_webhook(signature="")
    assert_error(status, json.loads(body), 403)
    assert json.loads(body)["error"]["code"] == "forbidden"
    status, _ = await caller.post_webhook(signature=caller.sign("/twilio/voice", form)[::-1])
    assert status == 403
    # Signed with another token, or over another URL, or for other form values.
    other = TwilioCaller(run.url, "not-the-token", public_url=PUBLIC_URL, http=run.http)
    status, _ = await caller.post_webhook(signature=other.sign("/twilio/voice", form))
    assert status == 403
    status, _ = await caller.post_webhook(
        signature=RequestSigner(AUTH_TOKEN).sign(run.url + "/twilio/voice", form)
    )
    assert status == 403
    tampered = {**form, "From": "+15559999999"}
    status, _ = await caller.post_webhook(form=tampered, signature=caller.sign("/twilio/voice", form))
    assert status == 403
    assert await waiting_calls(run, agent) == []

    status, body = await caller.post_webhook()
    assert status == 200
    root = ET.fromstring(body)
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "ws://callassist.test/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert set(params) == {"call_id", "token"}
    calls = await waiting_calls(run, agent)
    assert [c["call_id"] for c in calls] == [params["call_id"]]
    customer = calls[0]["customer"]
    assert customer["channel"] == "phone"
    assert customer["phone"] == caller.caller
    assert customer["name"] == caller.caller


async def test_caller_id_links_to_the_crm_record(phone_server: Running, make_caller) -> None:
    run = phone_server
    agent = await run.agent()
    async with run.store.write() as session:
        record = Customer(name="Ann Phone", phone="+15550102030", tier="gold")
        session.add(record)
    web = await run.customer("Ann Web", phone="+15550102030")
    caller: TwilioCaller = make_caller(caller="+15550102030")
    status, body = await caller.post_webhook()
    assert status == 200
    caller.read_twiml(body)
    [call] = await waiting_calls(run, agent)
    assert call["call_id"] == caller.call_id
    customer = call["customer"]
    assert customer["customer_id"] == record.id
    assert (customer["name"], customer["tier"], customer["channel"]) == ("Ann Phone", "gold", "phone")
    assert customer["verified"] is False  # caller ID is a claim
    assert customer["claimed"] == {"name": "+15550102030", "phone": "+15550102030"}
    assert call["state"] == "waiting"
    # The browser session that claimed the same number gets nothing of the phone call.
    for method, path in [
        ("GET", ""), ("GET", "/messages"), ("POST", "/end"),
        ("POST", "/offer"),
    ]:
        body = {"sdp": "v=0", "type": "offer"} if path == "/offer" else None
        status, reply = await run.api.call(
            method, f"/api/calls/{caller.call_id}{path}", web["token"], json=body
        )
        assert_error(status, reply, 403)
    [still] = await waiting_calls(run, agent)
    assert still["call_id"] == caller.call_id


async def test_phone_caller_and_browser_agent_hear_each_other(
    phone_server: Running, make_caller, tmp_path: Path, tone_packets
) -> None:
    run = phone_server
    caller, agent, agent_token = await answered_call(
        run, make_caller,
        frames=wav_to_mulaw_frames(write_tone(tmp_path / "caller.wav", 440, 8.0, rate=8000)),
        agent_packets=tone_packets(1000, 8.0),
    )

    await wait_for_audio(agent, min_packets=150)
    heard = agent.received.pcm(since_s=1.0)
    assert rms(heard) > 500
    assert abs(dominant_frequency(heard) - 440) < 15

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while len(caller.heard.payloads) < 150:  # noqa: ASYNC110 - counting frames
        assert loop.time() < deadline, f"the caller heard {len(caller.heard.payloads)} frames"
        await asyncio.sleep(0.1)
    pcm = caller.heard.pcm(since_s=1.0)
    assert rms(pcm) > 500
    assert abs(dominant_frequency(pcm, rate=8000) - 1000) < 15
    # Every outbound message is one 20 ms μ-law frame.
    assert {len(p) for p in caller.heard.payloads} == {160}
    assert caller.heard.clears == 0

    # The agent ends the call: the server closes the stream (Twilio then hangs up).
    status, _ = await run.api.call("POST", f"/api/calls/{caller.call_id}/end", agent_token)
    assert status == 200
    await caller.wait_closed()
    await agent.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "ended")
    status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}", agent_token)
    assert body["state"] == "ended"


async def test_dtmf_reaches_the_agent_only_live(phone_server: Running, make_caller) -> None:
    run = phone_server
    caller, agent, agent_token = await answered_call(run, make_caller)
    for digit in "42#":
        await caller.dtmf(digit)
    for digit in "42#":
        await agent.wait_for(lambda e, d=digit: e["type"] == "dtmf" and e["digit"] == d)
    dtmf = [e for e in agent.events if e["type"] == "dtmf"]
    assert [e["digit"] for e in dtmf] == ["4", "2", "#"]
    assert all("seq" not in e and e["call_id"] == caller.call_id for e in dtmf)
    status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}/messages", agent_token)
    assert not [m for m in body["messages"] if m["type"] == "dtmf"]


async def test_malformed_messages_are_ignored_and_counted(
    phone_server: Running, make_caller, tmp_path: Path
) -> None:
    run = phone_server
    caller, agent, agent_token = await answered_call(
        run, make_caller,
        frames=wav_to_mulaw_frames(write_tone(tmp_path / "caller.wav", 440, 10.0, rate=8000)),
    )
    admin = await run.agent("root", role="admin")
    await wait_for_audio(agent, min_packets=50)

    bad = [
        "not json",
        "[1, 2]",
        json.dumps({"event": "bogus"}),
        json.dumps({"event": "media", "streamSid": caller.stream_sid}),
        json.dumps({"event": "media", "streamSid": caller.stream_sid, "media": {"payload": "%%%"}}),
        json.dumps({"event": "media", "streamSid": caller.stream_sid, "media": {"payload": ""}}),
        json.dumps({"event": "dtmf", "streamSid": caller.stream_sid, "dtmf": {"digit": "xyz"}}),
        json.dumps({"event": "media", "streamSid": "MZ-someone-else", "media": {"payload": "//8="}}),
        json.dumps({"event": "mark", "streamSid": caller.stream_sid}),
    ]
    for message in bad:
        await caller.send(message)
    assert caller.ws is not None
    await caller.ws.send_bytes(b"\x00\x01")

    async def counted() -> bool:
        status, stats = await run.api.call("GET", "/api/stats", admin)
        return bool(stats["phone"]["malformed_messages"] == len(bad) + 1)

    await wait_until(counted)
    # The call goes on: audio still flows both ways and the call is active.
    before = agent.received.packets
    await asyncio.sleep(1.0)
    assert agent.received.packets - before >= 35
    assert not caller.closed_by_server.is_set()
    status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}", agent_token)
    assert body["state"] == "active"
    assert not [e for e in agent.events if e["type"] == "dtmf"]


async def test_stop_is_the_caller_hanging_up(phone_server: Running, make_caller) -> None:
    run = phone_server
    caller, agent, agent_token = await answered_call(run, make_caller)
    await caller.stop()
    await agent.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "ended")
    status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}", agent_token)
    assert body["state"] == "ended" and body["ended_at"] is not None


async def test_a_dropped_socket_while_waiting_ends_the_call(phone_server: Running, make_caller) -> None:
    run = phone_server
    admin = await run.agent("root", role="admin")
    caller: TwilioCaller = make_caller()
    await caller.dial()

    async def joined() -> bool:
        return bool(run.server.app[HUB].get_live(caller.call_id).caller_live())

    await wait_until(joined)
    assert caller.ws is not None
    await caller.ws.close()  # no `stop`: the line dropped

    async def ended() -> bool:
        status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}", admin)
        return bool(body["state"] == "ended")

    await wait_until(ended)


async def test_a_wrong_stream_token_closes_the_socket_and_changes_nothing(
    phone_server: Running, make_caller
) -> None:
    run = phone_server
    agent_token = await run.agent()
    caller: TwilioCaller = make_caller()
    status, body = await caller.post_webhook()
    assert status == 200
    caller.read_twiml(body)
    other: TwilioCaller = make_caller(caller="+15550100002")
    status, body = await other.post_webhook()
    other.read_twiml(body)

    attempts = [
        {"call_id": caller.call_id, "token": caller.parameters["token"][:-2] + "xx"},
        {"call_id": caller.call_id},
        {"call_id": caller.call_id, "token": other.parameters["token"]},  # another call's
        {"call_id": caller.call_id, "token": agent_token},  # an API token is not a stream token
        {},
    ]
    for params in attempts:
        await caller.open_stream(parameters=params)
        await caller.wait_closed()
        caller.closed_by_server.clear()
    assert run.server.app[HUB].get_live(caller.call_id).participants == {}
    calls = await waiting_calls(run, agent_token)
    assert {c["call_id"] for c in calls} == {caller.call_id, other.call_id}
    admin = await run.agent("root", role="admin")
    status, body = await run.api.call("GET", f"/api/calls/{caller.call_id}/messages", admin)
    assert [m["state"] for m in body["messages"] if m["type"] == "call_state"] == ["waiting"]

    # The right token works once; a replay of it is refused.
    await caller.open_stream()

    async def joined() -> bool:
        return run.server.app[HUB].get_live(caller.call_id).participants.get("customer") is not None

    await wait_until(joined)
    replay = TwilioCaller(run.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=run.http)
    replay.stream_url, replay.parameters = caller.stream_url, dict(caller.parameters)
    await replay.open_stream()
    await replay.wait_closed()
    await replay.close()
    assert not caller.closed_by_server.is_set()


class RequestSigner:
    """Twilio's signature over an arbitrary URL (the loopback one, which Twilio never sees)."""

    def __init__(self, token: str) -> None:
        from twilio.request_validator import RequestValidator

        self._validator = RequestValidator(token)

    def sign(self, url: str, form: dict[str, str]) -> str:
        return str(self._validator.compute_signature(url, form))



async def test_qa_phone_command_plays_a_caller(
    phone_server: Running, tmp_path: Path, tone_packets
) -> None:
    """`python -m server.qa --phone` (README): the agent hears its WAV, it saves what it hears."""
    run = phone_server
    agent_token = await run.agent()
    wav = write_tone(tmp_path / "caller.wav", 660, 5.0, rate=16000)
    out = tmp_path / "heard.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.qa", "--phone", "--server", run.url,
        "--public-url", PUBLIC_URL, "--from", "+15550107777", "--wav", str(wav),
        "--dtmf", "7", "--seconds", "15", "--out", str(out),
        env={**os.environ, "CALLASSIST_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )

    async def ringing() -> bool:
        return bool(await waiting_calls(run, agent_token))

    await wait_until(ringing, timeout=30)
    [call] = await waiting_calls(run, agent_token)
    assert call["customer"]["phone"] == "+15550107777"
    await run.api.call("POST", f"/api/calls/{call['call_id']}/accept", agent_token)
    agent = run.participant(agent_token, "agent", packets=tone_packets(880, 8.0))
    await agent.connect(call["call_id"])
    await wait_for_audio(agent, min_packets=100)
    heard = agent.received.pcm(since_s=0.5)
    assert abs(dominant_frequency(heard[: 48000 * 2]) - 660) < 15
    await asyncio.sleep(3.0)
    await run.api.call("POST", f"/api/calls/{call['call_id']}/end", agent_token)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    stats = next(e for e in lines if e["type"] == "qa_stats")
    assert stats["ended_by"] == "server" and stats["frames_received"] > 100
    with wave.open(str(out)) as saved:
        assert saved.getframerate() == 8000
        pcm = np.frombuffer(saved.readframes(saved.getnframes()), dtype=np.int16)
    assert rms(pcm) > 500
    assert abs(dominant_frequency(pcm[8000 : 8000 * 3], rate=8000) - 880) < 15


async def test_the_agent_verifies_a_phone_caller(phone_server: Running, make_caller) -> None:
    run = phone_server
    caller, agent, agent_token = await answered_call(run, make_caller)
    status, body = await run.api.call("POST", f"/api/calls/{caller.call_id}/verify", agent_token, json={})
    assert status == 200, body
    status, call = await run.api.call("GET", f"/api/calls/{caller.call_id}", agent_token)
    assert call["customer"]["verified"] is True and call["customer"]["channel"] == "phone"


async def test_a_full_queue_answers_busy_and_creates_nothing(tmp_path: Path) -> None:
    async with serving(phone_settings(tmp_path / "data", CALLASSIST_MAX_WAITING="1")) as run:
        agent = await run.agent()
        first = TwilioCaller(run.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=run.http)
        status, _ = await first.post_webhook()
        assert status == 200
        second = TwilioCaller(run.url, AUTH_TOKEN, public_url=PUBLIC_URL, caller="+15550100009", http=run.http)
        status, body = await second.post_webhook()
        assert status == 200
        root = ET.fromstring(body)
        reject = root.find("Reject")
        assert reject is not None and reject.get("reason") == "busy"
        assert root.find("Connect") is None
        assert len(await waiting_calls(run, agent)) == 1
