"""Headless QA client: join a call as customer, agent or both over real WebRTC.

    python -m server.qa --server http://127.0.0.1:8080 --pair --wav hello.wav \\
        --agent-user alice --agent-password-env AGENT_PASSWORD --seconds 10 --out heard.wav

It sends a WAV file as its microphone (encoded to Opus once, then paced in real time),
saves what it hears to a WAV, and prints every event it receives as a JSON line.
The same classes drive the test-suite and the load generator.

    CALLASSIST_TWILIO_AUTH_TOKEN=... python -m server.qa --phone --wav hello.wav \
        --server http://127.0.0.1:8080 --public-url https://cc.example.com --out heard.wav

plays a phone caller through Twilio Media Streams instead (server/qa_phone.py): it signs
the voice webhook with the auth token, opens the stream, sends the WAV as μ-law in real
time and saves what it hears (8 kHz).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.relay import OPUS_RATE, TIME_BASE
from media.tap import tap_receiver
from signaling.ice import count_candidates, restrict_host_addresses, rtc_configuration

FRAME_SAMPLES = 960  # 20 ms at 48 kHz


class QaError(RuntimeError):
    pass


def encode_wav_to_opus(path: Path | str | None, seconds_of_silence: float = 0.0) -> list[bytes]:
    """Encode a WAV (any rate, mono or stereo, 16-bit) to 20 ms Opus packets, once."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = OPUS_RATE
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    encoder.time_base = TIME_BASE
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE)
    packets: list[bytes] = []
    samples = np.zeros(0, dtype=np.int16)
    if path is not None:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise QaError(f"{path}: only 16-bit PCM WAV is supported")
            rate, channels = wav.getframerate(), wav.getnchannels()
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for out in resampler.resample(frame) + resampler.resample(None):
            samples = np.concatenate([samples, out.to_ndarray().reshape(-1)])
    silence = np.zeros(int(seconds_of_silence * OPUS_RATE) * 2, dtype=np.int16)
    samples = np.concatenate([samples, silence])
    step = FRAME_SAMPLES * 2  # interleaved stereo
    pts = 0
    for start in range(0, len(samples) - step + 1, step):
        chunk = samples[start : start + step].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = OPUS_RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        pts += FRAME_SAMPLES
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    return packets


_SILENCE: list[bytes] = []


def silence_packet() -> bytes:
    if not _SILENCE:
        _SILENCE.extend(encode_wav_to_opus(None, seconds_of_silence=0.1)[-1:])
    return _SILENCE[0]


class OpusPacketTrack(MediaStreamTrack):
    """Plays pre-encoded Opus packets in real time, then silence (as a live microphone does)."""

    kind = "audio"

    def __init__(self, packets: list[bytes], loop_audio: bool = False) -> None:
        super().__init__()
        self._packets = packets
        self._loop_audio = loop_audio
        self._index = 0
        self._start: float | None = None
        self._sent = 0
        self.clip_started_at: float | None = None  # monotonic time the clip's first packet went out

    def carry_on(self, other: OpusPacketTrack) -> None:
        """Play on from where `other` (a stopped connection's track) was."""
        self._packets, self._index, self._loop_audio = other._packets, other._index, other._loop_audio

    def replace(self, packets: list[bytes]) -> None:
        """Start playing another clip now."""
        self._packets = packets
        self._index = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._sent * FRAME_SAMPLES / OPUS_RATE
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._index < len(self._packets):
            if self._index == 0:
                self.clip_started_at = time.monotonic()
            payload = self._packets[self._index]
            self._index += 1
            if self._index == len(self._packets) and self._loop_audio:
                self._index = 0
        else:
            payload = silence_packet()
        packet = av.Packet(payload)
        packet.pts = self._sent * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self._sent += 1
        return packet


class ReceivedAudio:
    """Counts what arrives on the tapped track and optionally decodes it to 48 kHz mono."""

    def __init__(self, decode: bool = True) -> None:
        self.packets = 0
        self.bytes = 0
        self._decoder = av.CodecContext.create("opus", "r") if decode else None
        self._pcm: list[np.ndarray] = []
        self.first_packet_at: float | None = None
        self.arrivals: list[float] = []
        """Monotonic arrival time of each packet."""

    def __call__(self, payload: bytes) -> None:
        self.packets += 1
        self.bytes += len(payload)
        now = time.monotonic()
        self.arrivals.append(now)
        if self.first_packet_at is None:
            self.first_packet_at = now
        if self._decoder is None:
            return
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            return
        for frame in frames:
            data = frame.to_ndarray()
            if frame.format.is_planar:
                mono = data.mean(axis=0)
            else:
                mono = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if frame.format.name.startswith("flt"):
                mono = mono * 32767
            self._pcm.append(mono.astype(np.int16))

    def pcm(self, since_s: float = 0.0) -> np.ndarray:
        """Decoded audio at 48 kHz mono int16, skipping the first `since_s` seconds."""
        if not self._pcm:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._pcm)[int(since_s * OPUS_RATE) :]

    def save(self, path: Path | str) -> None:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(OPUS_RATE)
            wav.writeframes(self.pcm().tobytes())


class Participant:
    """One side of a call over real WebRTC, as a browser page would do it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        role: str,
        *,
        packets: list[bytes] | None = None,
        decode: bool = True,
        relay_only: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.role = role
        self.relay_only = relay_only
        self.track = OpusPacketTrack(packets or [])
        self.received = ReceivedAudio(decode=decode)
        self.events: list[dict[str, Any]] = []
        self.received_at: list[float] = []  # monotonic arrival time of each event
        self._on_event = on_event
        self._changed = asyncio.Condition()
        self._http = http
        self._own_http = http is None
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.call_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        http = await self._session()
        async with http.request(method, self.base_url + path, headers=self.headers, **kwargs) as r:
            body = await r.json(content_type=None)
            if r.status >= 400:
                raise QaError(f"{method} {path} → {r.status} {body}")
            return body

    async def connect(self, call_id: str, timeout: float = 20.0) -> None:
        """Offer with all candidates gathered, apply the answer, wait for the channel."""
        if self.pc is not None:
            await self.pc.close()
            # A reconnect (the page's retry): a new connection with a new microphone track
            # that goes on with the clip where the old one was.
            old, self.track = self.track, OpusPacketTrack([])
            self.track.carry_on(old)
        self.call_id = call_id
        ice = await self.request("GET", "/api/webrtc/ice-servers")
        pc = RTCPeerConnection(
            rtc_configuration(ice["iceServers"], "relay" if self.relay_only else "all")
        )
        self.pc = pc
        transceiver = pc.addTransceiver(self.track, direction="sendrecv")
        tap_receiver(transceiver.receiver, self.received)
        channel = pc.createDataChannel("events")
        self.channel = channel
        opened = asyncio.Event()
        channel.on("open", opened.set)
        channel.on("message", self._handle_message)
        await pc.setLocalDescription(await pc.createOffer())
        if count_candidates(pc.localDescription.sdp) == 0:
            raise QaError(
                "gathered no ICE candidates: check the TURN credentials/URLs"
                + (" (relay-only needs a working TURN server)" if self.relay_only else "")
            )
        answer = await self.request(
            "POST",
            f"/api/calls/{call_id}/offer",
            json={"sdp": pc.localDescription.sdp, "type": "offer"},
        )
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        try:
            await asyncio.wait_for(opened.wait(), timeout)
        except TimeoutError:
            raise QaError(f"connection state {pc.connectionState}: the data channel never opened") from None

    def _handle_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.events.append(event)
        self.received_at.append(time.monotonic())
        if self._on_event is not None:
            self._on_event(event)
        asyncio.ensure_future(self._notify())  # noqa: RUF006 - short-lived, awaited by waiters

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def send(self, message: dict[str, Any] | str) -> None:
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first event (received so far or later) for which `predicate` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        async with self._changed:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    types = [e.get("type") for e in self.events]
                    raise TimeoutError(f"{self.role}: no matching event; got {types}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


async def customer_session(http: aiohttp.ClientSession, base_url: str, name: str, phone: str | None = None, email: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if phone:
        body["phone"] = phone
    if email:
        body["email"] = email
    async with http.post(f"{base_url}/api/auth/customer", json=body) as r:
        data = await r.json()
        if r.status != 200:
            raise QaError(f"customer session failed: {r.status} {data}")
        return data


async def login(http: aiohttp.ClientSession, base_url: str, username: str, password: str) -> str:
    async with http.post(
        f"{base_url}/api/auth/login", json={"username": username, "password": password}
    ) as r:
        data = await r.json()
        if r.status != 200:
            raise QaError(f"login failed: {r.status} {data}")
        return str(data["token"])


async def _run_phone(args: argparse.Namespace) -> int:
    from server.qa_phone import PhoneError, TwilioCaller, wav_to_mulaw_frames

    token = os.environ.get(args.twilio_auth_token_env, "")
    if not token:
        print(f"error: --phone needs the Twilio auth token in ${args.twilio_auth_token_env}", file=sys.stderr)
        return 1
    caller = TwilioCaller(args.server, token, public_url=args.public_url or None, caller=args.caller_id)
    try:
        await caller.dial()
        print(json.dumps({"type": "qa_phone", "call_id": caller.call_id, "stream_url": caller.stream_url}), flush=True)
        if args.wav:
            caller.play(wav_to_mulaw_frames(args.wav))
        for digit in args.dtmf or "":
            await caller.dtmf(digit)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caller.closed_by_server.wait(), args.seconds)
        hung_up_by_server = caller.closed_by_server.is_set()
        if not hung_up_by_server:
            await caller.stop()
        if args.out:
            caller.heard.save(args.out)
        gaps = sorted(caller.heard.gaps_ms())
        print(json.dumps({
            "type": "qa_stats", "call_id": caller.call_id, "frames_sent": caller.sent_frames,
            "frames_received": len(caller.heard.payloads), "clears": caller.heard.clears,
            "marks": len(caller.heard.marks), "ended_by": "server" if hung_up_by_server else "caller",
            "gap_p99_ms": round(gaps[int(0.99 * (len(gaps) - 1))], 1) if gaps else None,
        }), flush=True)
    except (PhoneError, aiohttp.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await caller.close()
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.phone == "":
        return await _run_phone(args)
    base = args.server.rstrip("/")
    packets = encode_wav_to_opus(args.wav) if args.wav else []
    roles = ["customer", "agent"] if args.pair else [args.role]

    def printer(role: str) -> Callable[[dict[str, Any]], None]:
        def emit(event: dict[str, Any]) -> None:
            print(json.dumps({"peer": role, **event}), flush=True)

        return emit

    async with aiohttp.ClientSession() as http:
        participants: dict[str, Participant] = {}
        call_id = args.call_id
        try:
            if "customer" in roles:
                cust = await customer_session(http, base, args.name, args.phone or None, args.email)
                customer = Participant(base, cust["token"], "customer", packets=packets, relay_only=args.relay_only, on_event=printer("customer"), http=http)
                participants["customer"] = customer
                if call_id is None:
                    created = await customer.request("POST", "/api/calls", json={"reason": args.reason})
                    call_id = created["call_id"]
                await customer.connect(call_id)
            if "agent" in roles:
                password = os.environ.get(args.agent_password_env, "")
                if not args.agent_user or not password:
                    raise QaError(f"agent needs --agent-user and the password in ${args.agent_password_env}")
                token = await login(http, base, args.agent_user, password)
                agent = Participant(base, token, "agent", packets=packets if not args.pair else [], relay_only=args.relay_only, on_event=printer("agent"), http=http)
                participants["agent"] = agent
                if call_id is None:
                    waiting = (await agent.request("GET", "/api/calls?state=waiting"))["calls"]
                    if not waiting:
                        raise QaError("no waiting call to accept")
                    call_id = waiting[-1]["call_id"]
                await agent.request("POST", f"/api/calls/{call_id}/accept")
                await agent.connect(call_id)
            await asyncio.sleep(args.seconds)
            if args.end:
                await next(iter(participants.values())).request("POST", f"/api/calls/{call_id}/end")
                await asyncio.sleep(1.0)
            if args.out:
                listener = participants.get("agent" if args.pair else roles[0])
                if listener is not None:
                    listener.received.save(args.out)
            for role, p in participants.items():
                print(json.dumps({"peer": role, "type": "qa_stats", "call_id": call_id, "packets_received": p.received.packets, "bytes_received": p.received.bytes}), flush=True)
        except QaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            for p in participants.values():
                await p.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.qa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("CALLASSIST_URL", "http://127.0.0.1:8080"))
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--role", choices=("customer", "agent"), default="customer")
    who.add_argument("--pair", action="store_true", help="join as both customer and agent")
    parser.add_argument("--call-id", help="join this call (agent: accept it); default: create one / take the newest waiting")
    parser.add_argument("--name", default="QA Customer")
    # `--phone` alone: be a phone caller through Twilio Media Streams (simulated);
    # `--phone NUMBER`: the browser customer's phone number, as before.
    parser.add_argument("--phone", nargs="?", const="", help="alone: call as a phone caller through Twilio Media Streams (simulated); with a NUMBER: the customer's phone")
    parser.add_argument("--from", dest="caller_id", default="+15550100001", help="--phone: the caller's number (Twilio's From)")
    parser.add_argument("--email")
    parser.add_argument("--reason", default="qa")
    parser.add_argument("--agent-user", default=os.environ.get("CALLASSIST_AGENT_USER"))
    parser.add_argument("--agent-password-env", default="CALLASSIST_AGENT_PASSWORD", help="environment variable holding the agent's password")
    parser.add_argument("--wav", help="16-bit PCM WAV to send as the microphone")
    parser.add_argument("--out", help="write what is heard (the agent's side with --pair) to this WAV")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to stay in the call")
    parser.add_argument("--end", action="store_true", help="end the call before leaving")
    parser.add_argument("--public-url", default=os.environ.get("CALLASSIST_PUBLIC_URL", ""), help="--phone: the server's CALLASSIST_PUBLIC_URL, which Twilio signs (default: --server)")
    parser.add_argument("--twilio-auth-token-env", default="CALLASSIST_TWILIO_AUTH_TOKEN", help="--phone: environment variable holding the Twilio auth token")
    parser.add_argument("--dtmf", help="--phone: keys to press after connecting, e.g. 12#")
    parser.add_argument("--relay-only", action="store_true", help="gather only TURN relay candidates")
    parser.add_argument("--ice-hosts", default=os.environ.get("CALLASSIST_ICE_HOSTS", ""), help="host addresses to gather (comma-separated)")
    args = parser.parse_args(argv)
    restrict_host_addresses([h.strip() for h in args.ice_hosts.split(",") if h.strip()])
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
