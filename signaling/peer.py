"""The server's end of one participant's WebRTC connection: the `webrtc` kind of Participant.

A Peer answers one offer: it terminates the participant's audio (tapped, not decoded,
see media/tap.py) and hands the Opus payloads to its call, plays the others' voices back
through an OutboundAudioTrack (Opus as received, or PCM it encodes), and carries the
`events` data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from media.decode import AudioDecoder, OpusDecoder
from media.participant import Participant
from media.relay import OutboundAudioTrack
from media.tap import tap_receiver
from signaling.errors import IceGatheringError, InvalidOffer
from signaling.ice import count_candidates

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


class Peer(Participant):
    kind = "webrtc"
    codec = "opus"
    forwards = frozenset({"opus"})

    def __init__(self, *, role: str, configuration: Any, connect_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.role = role
        self._connect_timeout_s = connect_timeout_s
        self._connected = False
        self._watchdog: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(configuration)
        self.outbound = OutboundAudioTrack()
        self.channel: RTCDataChannel | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.pc.on("datachannel", self._handle_datachannel)
        self.pc.on("connectionstatechange", self._handle_state)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    async def answer(self, sdp: str, gather_timeout_s: float) -> RTCSessionDescription:
        """Apply the client's offer and return our answer with all our ICE candidates."""
        _check_offer(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc's parser raises anything from assert to KeyError
            raise InvalidOffer(
                "invalid_sdp",
                "the offer is not a valid SDP offer",
                detail=str(exc) or type(exc).__name__,
            ) from None
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) != 1:
            raise InvalidOffer("invalid_sdp", "the offer must have exactly one audio m-line")
        transceiver = audio[0]
        tap_receiver(transceiver.receiver, self._on_opus)
        self.pc.addTrack(self.outbound)  # reuses the offered audio transceiver
        answer = await self.pc.createAnswer()
        try:
            await asyncio.wait_for(self.pc.setLocalDescription(answer), gather_timeout_s)
        except TimeoutError:
            raise IceGatheringError(
                "ice_gathering_timeout", "the server could not gather ICE candidates in time"
            ) from None
        local = self.pc.localDescription
        # A client that vanishes after its offer would hold our sockets for good.
        self._watchdog = asyncio.ensure_future(self._close_unless_connected())
        if count_candidates(local.sdp) == 0:
            raise IceGatheringError(
                "ice_gathering_failed",
                "the server could not set up media for this call",
                detail="no ICE candidates gathered: check the TURN URLs and secret "
                "(relay-only needs a TURN server that accepts our credentials)",
            )
        return local

    # -- Participant ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self._closed and self.pc.connectionState == "connected"

    def decoder(self) -> AudioDecoder:
        return OpusDecoder()

    def play_encoded(self, payload: bytes) -> None:
        self.outbound.push(payload)

    def play_pcm(self, pcm: bytes) -> None:
        self.outbound.push_pcm(pcm)

    def clear_audio(self) -> int:
        return self.outbound.clear()

    def send_event(self, text: str) -> bool:
        return self.send(text)

    def _on_opus(self, payload: bytes) -> None:
        if self.port is not None and not self._closed:
            self.port.on_audio(self, payload)

    def _on_channel_open(self) -> None:
        if self.port is not None:
            self.port.on_ready(self)

    def _on_message(self, message: str | bytes) -> None:
        if self.port is not None:
            self.port.on_message(self, message)

    # -- transport ----------------------------------------------------------------------------

    def send(self, text: str) -> bool:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return False
        try:
            channel.send(text)
        except Exception:  # the transport went away between the check and the send
            log.debug("send on closed channel", exc_info=True)
            return False
        return True

    def _handle_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events":
            return
        self.channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._on_channel_open()
        else:
            channel.on("open", self._on_channel_open)

    def _handle_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected = True
        if self.pc.connectionState in ("failed", "closed") and not self._closed:
            self._close_task = asyncio.ensure_future(self.close())

    async def _close_unless_connected(self) -> None:
        await asyncio.sleep(self._connect_timeout_s)
        if not self._connected and not self._closed:
            log.info(
                "%s peer: ICE did not connect within %.0f s; closing it",
                self.role,
                self._connect_timeout_s,
            )
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        self.outbound.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self.port is not None:
            self.port.on_left(self, hung_up=False)


def _check_offer(sdp: Any) -> None:
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidOffer("invalid_sdp", "sdp must be a non-empty string")
    if len(sdp) > MAX_SDP_BYTES:
        raise InvalidOffer("invalid_sdp", "sdp is too large")
    if not sdp.startswith("v=0"):
        raise InvalidOffer("invalid_sdp", "sdp must start with v=0")
    if "m=audio" not in sdp:
        raise InvalidOffer("invalid_sdp", "the offer has no audio m-line")
    if "a=fingerprint:" not in sdp or "a=ice-ufrag:" not in sdp:
        raise InvalidOffer("invalid_sdp", "the offer lacks DTLS fingerprint or ICE credentials")
