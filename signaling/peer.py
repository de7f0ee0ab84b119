"""The server's end of one participant's WebRTC connection.

A Peer answers one offer: it terminates the participant's audio (tapped, not decoded,
see media/tap.py), plays the other party's voice back to it through a
ForwardedAudioTrack, and carries the `events` data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from media.relay import ForwardedAudioTrack
from media.tap import tap_receiver
from server.errors import ApiError, bad_request
from signaling.ice import count_candidates

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


class Peer:
    def __init__(
        self,
        *,
        role: str,
        configuration: Any,
        on_opus: Callable[[bytes], None],
        on_channel_open: Callable[[Peer], None],
        on_message: Callable[[Peer, str | bytes], None],
        on_closed: Callable[[Peer], None],
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.role = role
        self._connect_timeout_s = connect_timeout_s
        self._connected = False
        self._watchdog: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(configuration)
        self.outbound = ForwardedAudioTrack()
        self.channel: RTCDataChannel | None = None
        self._on_opus = on_opus
        self._on_channel_open = on_channel_open
        self._on_message = on_message
        self._on_closed = on_closed
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
            error = bad_request("the offer is not a valid SDP offer", "invalid_sdp")
            error.detail = str(exc) or type(exc).__name__  # for staff and logs only
            raise error from None
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) != 1:
            raise bad_request("the offer must have exactly one audio m-line", "invalid_sdp")
        transceiver = audio[0]
        tap_receiver(transceiver.receiver, self._on_opus)
        self.pc.addTrack(self.outbound)  # reuses the offered audio transceiver
        answer = await self.pc.createAnswer()
        try:
            await asyncio.wait_for(self.pc.setLocalDescription(answer), gather_timeout_s)
        except TimeoutError:
            raise ApiError(
                503, "ice_gathering_timeout", "the server could not gather ICE candidates in time"
            ) from None
        local = self.pc.localDescription
        # A client that vanishes after its offer would hold our sockets for good.
        self._watchdog = asyncio.ensure_future(self._close_unless_connected())
        if count_candidates(local.sdp) == 0:
            error = ApiError(503, "ice_gathering_failed", "the server could not set up media for this call")
            error.detail = (
                "no ICE candidates gathered: check the TURN URLs and secret "
                "(relay-only needs a TURN server that accepts our credentials)"
            )
            raise error
        return local

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
        channel.on("message", lambda message: self._on_message(self, message))
        if channel.readyState == "open":
            self._on_channel_open(self)
        else:
            channel.on("open", lambda: self._on_channel_open(self))

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
        self._on_closed(self)


def _check_offer(sdp: Any) -> None:
    if not isinstance(sdp, str) or not sdp.strip():
        raise bad_request("sdp must be a non-empty string", "invalid_sdp")
    if len(sdp) > MAX_SDP_BYTES:
        raise bad_request("sdp is too large", "invalid_sdp")
    if not sdp.startswith("v=0"):
        raise bad_request("sdp must start with v=0", "invalid_sdp")
    if "m=audio" not in sdp:
        raise bad_request("the offer has no audio m-line", "invalid_sdp")
    if "a=fingerprint:" not in sdp or "a=ice-ufrag:" not in sdp:
        raise bad_request("the offer lacks DTLS fingerprint or ICE credentials", "invalid_sdp")
