"""Wire messages of API.md: their names, who may see them, which are persisted, one encoder.

Every server → client event is a plain dict with `type`, `call_id`, `ts` (epoch ms), and,
once persisted, `seq`. This module is the only place that decides visibility.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

Role = Literal["customer", "agent", "admin"]

CALL_STATE = "call_state"
TRANSCRIPT = "transcript"
CUSTOMER_CONTEXT = "customer_context"
AI_SUGGESTION = "ai_suggestion"
SUGGESTION_FEEDBACK = "suggestion_feedback"
SUMMARY = "summary"
STATUS = "status"
PONG = "pong"
HANDOVER = "handover"
"""The voice agent's summary for the human who took the call over: agent only, persisted
(API.md "Voice agent")."""
DTMF = "dtmf"
"""A key a caller pressed: agent only, live, not persisted (API.md "Phone callers")."""

# The calls list's stream (`GET /api/calls/events`, docs/api.md extension): staff only.
CALL_LIST = "call_list"
"""The open calls as a list stream starts: `calls`, each as `GET /api/calls` lists it."""
CALL_UPDATE = "call_update"
"""One change of the list: `change`, the call's entry after it (`call`), and the `seq` of
the `call_state` event that made it, wherever the call's node runs."""
LIST_CHANGES = ("created", "voice_agent", "accepted", "ended", "abandoned")

# Everything except these goes to the call's agent (and admins) only.
_CUSTOMER_VISIBLE = frozenset({CALL_STATE, TRANSCRIPT, STATUS, PONG})

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def make(type_: str, call_id: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": type_, "call_id": call_id, "ts": now_ms()}
    event.update(fields)
    return event


def is_persisted(event: dict[str, Any]) -> bool:
    kind = event["type"]
    if kind == TRANSCRIPT:
        return bool(event.get("final"))
    if kind == AI_SUGGESTION:
        return bool(event.get("done"))
    return kind in (CALL_STATE, CUSTOMER_CONTEXT, SUGGESTION_FEEDBACK, SUMMARY, HANDOVER)


def visible_to(event: dict[str, Any], role: Role) -> bool:
    """Agents and admins see every event of their call; customers a public subset."""
    if role in ("agent", "admin"):
        return True
    return event["type"] in _CUSTOMER_VISIBLE


# What a customer reads in a `status` event: a plain sentence, never the engine's or the
# network's error text (agents and logs get that).
_CUSTOMER_STATUS = {
    "info": "A notice from the service; your call continues.",
    "warning": "Some live features are slow right now; your call continues.",
    "error": "Something went wrong on our side; your call continues.",
}


def list_change(call_state: dict[str, Any]) -> str:
    """What a persisted `call_state` event changes in the calls list (one of LIST_CHANGES)."""
    state = call_state.get("state")
    if state == "waiting":
        return "voice_agent" if call_state.get("voice_agent") else "created"
    if state == "active":
        return "accepted"
    return "abandoned" if call_state.get("reason") == "abandoned" else "ended"


def call_update(call_state: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The calls list's change made by a persisted `call_state` event; `entry` is the call
    as `GET /api/calls` lists it, after the change."""
    return make(
        CALL_UPDATE,
        call_state["call_id"],
        change=list_change(call_state),
        seq=call_state["seq"],
        call=entry,
    )


def call_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": CALL_LIST, "ts": now_ms(), "calls": entries}


def for_role(event: dict[str, Any], role: Role) -> dict[str, Any]:
    """The event as `role` receives it (call `visible_to` first)."""
    if role == "customer" and event["type"] == STATUS:
        plain = _CUSTOMER_STATUS.get(str(event.get("level")), _CUSTOMER_STATUS["error"])
        return {**event, "message": plain}
    return event


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def status(call_id: str, level: str, code: str, message: str) -> dict[str, Any]:
    return make(STATUS, call_id, level=level, code=code, message=message)


class ClientMessageError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


CLIENT_TYPES = {
    "ping": ("customer", "agent", "admin"),
    "suggestion_feedback": ("agent",),
    "stop_suggestions": ("agent",),
}


def parse_client_message(raw: str | bytes, role: Role) -> dict[str, Any]:
    """Validate one data-channel message from a client; raise ClientMessageError."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_CLIENT_MESSAGE_BYTES:
        raise ClientMessageError("message_too_large", f"message is {size} bytes; limit is 65536")
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ClientMessageError("invalid_json", "message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ClientMessageError("invalid_message", "message must be an object with a type")
    kind = message["type"]
    allowed = CLIENT_TYPES.get(kind)
    if allowed is None:
        raise ClientMessageError("unknown_type", f"unknown message type {kind!r}")
    if role not in allowed:
        raise ClientMessageError("forbidden", f"{role} may not send {kind!r}")
    if kind == "suggestion_feedback":
        if not isinstance(message.get("suggestion_id"), str) or not message["suggestion_id"]:
            raise ClientMessageError("invalid_message", "suggestion_id is required")
        if message.get("action") not in ("used", "dismissed"):
            raise ClientMessageError("invalid_message", "action must be used or dismissed")
    return message
