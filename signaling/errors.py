"""Errors of the signaling layer; the HTTP API maps them to its error shape."""

from __future__ import annotations


class SignalingError(Exception):
    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        """Safe to show anyone (a customer included)."""
        self.detail = detail
        """What went wrong inside, for staff and logs only."""


class InvalidOffer(SignalingError):
    """The client's SDP offer cannot be used (a client error)."""


class IceGatheringError(SignalingError):
    """The server could not gather ICE candidates (its configuration, or overload)."""
