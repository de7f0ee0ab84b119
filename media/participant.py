"""A call's participant: the one interface every transport implements.

A call holds participants and knows nothing else about them: a browser over WebRTC
(signaling/peer.py), a phone caller over a media stream (signaling/twilio.py), and an AI
voice agent are kinds of Participant. Each one

- has a `role` (whose voice it carries: `customer`, `agent`, ...) and a `kind`;
- hands its inbound audio to the call as payloads of its own `codec`, through the
  `CallPort` it is bound to; the call forwards them as received to participants that can
  play that codec (`forwards`: Opus between two browsers is never re-encoded) and
  decodes them once, with `decoder()`, to 16 kHz mono PCM for the speech pipeline and for
  everyone else (`play_pcm`);
- takes events (`send_event`, already-encoded JSON) if it has an event channel;
- stops its outbound audio at once on `clear_audio` (barge-in; a phone stream also tells
  the carrier to drop what it has buffered) and says how much it dropped, so that a speaker
  who pauses can play it again on resuming;
- says whether it is `connected` (media flowing) right now;
- reports through the port when its channel opens, a message, a DTMF digit, and when it
  leaves (`hung_up`: the caller hung up, which ends the call; otherwise it may come back);
- closes idempotently.

Everything here runs on the event loop except `decoder()`'s decoder, which the audio
thread uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from .decode import AudioDecoder


class CallPort(Protocol):
    """What a call offers its participants (all on the event loop)."""

    def on_audio(self, participant: Participant, payload: bytes) -> None:
        """One inbound payload in `participant.codec`, in arrival order (~every 20 ms)."""

    def on_ready(self, participant: Participant) -> None:
        """The participant's event channel is open: replay, then live events."""

    def on_message(self, participant: Participant, raw: str | bytes) -> None:
        """A client message (API.md "Client → server") from the participant."""

    def on_dtmf(self, participant: Participant, digit: str) -> None:
        """The participant pressed a key."""

    def on_left(self, participant: Participant, *, hung_up: bool) -> None:
        """The participant's transport is gone; `hung_up`: it ended the call."""

    def interrupt(self, participant: Participant) -> int:
        """Stop `participant`'s audio at everyone else now (barge-in); the most audio (ms)
        any of them dropped unplayed."""


class Participant(ABC):
    role: str
    kind: str
    codec: str
    """The codec of the payloads it hands to `CallPort.on_audio`."""
    forwards: frozenset[str] = frozenset()
    """Codecs it plays as received through `play_encoded`; other audio comes as PCM."""

    def __init__(self) -> None:
        self.port: CallPort | None = None

    def bind(self, port: CallPort) -> None:
        """Join a call: from now on its audio and reports go to `port`."""
        self.port = port

    @property
    def connected(self) -> bool:
        """Whether its media is flowing now (a connected peer, an open phone stream)."""
        return self.port is not None

    @abstractmethod
    def decoder(self) -> AudioDecoder:
        """A new decoder of its `codec` to 16 kHz mono PCM (used on the audio thread)."""

    def send_event(self, text: str) -> bool:
        """Deliver an encoded event; False when it has no open event channel."""
        return False

    def play_encoded(self, payload: bytes) -> None:
        """Another participant's payload, in one of `forwards`, to play as it is."""
        return None

    @abstractmethod
    def play_pcm(self, pcm: bytes) -> None:
        """Another participant's voice as 16 kHz mono s16, to play in real time."""

    def clear_audio(self) -> int:
        """Drop outbound audio not yet played (barge-in); the ms dropped."""
        return 0

    @abstractmethod
    async def close(self) -> None:
        """Leave the call and release the transport. Safe to call twice."""
