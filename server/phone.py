"""Phone callers over Twilio: the voice webhook and the media stream (API.md "Phone callers").

`POST /twilio/voice` is the number's voice webhook: a call signed by Twilio becomes a
waiting call whose customer is the caller (linked by caller ID to the CRM record with that
number, unverified), answered with TwiML that connects a bidirectional media stream.
`GET /twilio/stream` is that stream: after a `start` that carries the call's short-lived
stream token, it joins the call as the customer (signaling/twilio.py does the protocol).

The routes exist only when `CALLASSIST_TWILIO_AUTH_TOKEN` is set.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, cast

import aiohttp
import jwt
from aiohttp import web
from sqlalchemy import func
from sqlmodel import select
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from server import identity
from server.cluster import Cluster, ClusterUnavailable, Elsewhere
from server.errors import ApiError, forbidden
from server.forward import forwarded_by, relay_websocket
from server.models import Call, CallCaller
from server.session import CallSession
from server.store import QUEUE_LOCK
from signaling.twilio import MediaStream, StreamStats, media_format_ok, wait_for_start

from server.keys import CLUSTER, HUB, PHONE, SETTINGS, STORE  # isort: skip

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

STREAM_TOKEN_TTL_S = 120
"""Twilio opens the stream right after it reads the TwiML; the token is good this long."""
START_TIMEOUT_S = 10.0
"""A stream must send `start` this soon after it opens."""
_AUDIENCE = "twilio-stream"


class Phone:
    """The process's phone state: stream tokens (single use) and counters.

    A token's use is remembered until it expires: in this process alone, or, on a node of a
    cluster, in Redis (`SET NX` with the token's remaining life), so that a token used on
    one node cannot be replayed on another (after a takeover, say) within its 120 s.
    """

    def __init__(self, secret: str, auth_token: str, cluster: Cluster | None = None) -> None:
        self._secret = secret
        self.validator = RequestValidator(auth_token)
        self.stats = StreamStats()
        self._cluster = cluster
        self._used: dict[str, float] = {}

    def stream_token(self, call_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": call_id,
            "aud": _AUDIENCE,  # never accepted as an API bearer token
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + STREAM_TOKEN_TTL_S,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _claims(self, token: Any, call_id: Any) -> dict[str, Any] | None:
        if not isinstance(token, str) or not isinstance(call_id, str):
            return None
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=_AUDIENCE)
        except jwt.PyJWTError:
            return None
        return claims if claims.get("sub") == call_id else None

    def valid(self, token: Any, call_id: Any) -> bool:
        """Whether `token` is a fresh stream token for `call_id` (not using it up)."""
        return self._claims(token, call_id) is not None

    async def redeem(self, token: Any, call_id: Any) -> bool:
        """Whether `token` is a fresh, unused stream token for `call_id` (then it is used)."""
        claims = self._claims(token, call_id)
        if claims is None:
            return False
        now = time.time()
        jti = str(claims.get("jti"))
        expires = float(claims["exp"])
        if self._cluster is not None:
            try:
                return await self._cluster.claim_once(f"stream-token:{jti}", expires - now)
            except ClusterUnavailable:
                log.warning("stream token of call %s refused: Redis is unreachable", call_id)
                return False  # its use could not be recorded for the other nodes
        self._used = {k: exp for k, exp in self._used.items() if exp > now}
        if jti in self._used:
            return False
        self._used[jti] = expires
        return True


def _public_url(request: web.Request) -> str:
    """The URL Twilio requested, as the outside world spells it (what it signed)."""
    return request.app[SETTINGS].public_url + request.rel_url.path_qs


def _stream_url(request: web.Request) -> str:
    base = request.app[SETTINGS].public_url
    scheme, rest = base.split("://", 1)
    return ("wss" if scheme == "https" else "ws") + "://" + rest + "/twilio/stream"


@routes.post("/twilio/voice")
async def voice_webhook(request: web.Request) -> web.Response:
    phone = cast(Phone, request.app[PHONE])
    form = await request.post()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not phone.validator.validate(_public_url(request), form, signature):
        phone.stats.rejected += 1
        raise forbidden("the request is not signed by Twilio")
    caller = str(form.get("From") or "").strip()[:40]
    if not caller:
        raise ApiError(400, "missing_field", "From is required")
    call_sid = str(form.get("CallSid") or "")[:64]
    name = str(form.get("CallerName") or "").strip()[:200] or caller
    store = request.app[STORE]
    max_waiting = request.app[SETTINGS].max_waiting
    async with store.write() as session:
        # Counted and added under the lock the browser path takes (server/api.py): the cap
        # holds however many calls race for the last place, on any node, from either path.
        await store.serialize(session, QUEUE_LOCK)
        waiting = (
            await session.exec(select(func.count()).select_from(Call).where(Call.state == "waiting"))
        ).one()
        if waiting >= max_waiting:
            call = None
        else:
            # One phone call is one caller session. Caller ID is a claim, not a proof: it
            # links the session to the customer record with that number, shown to the agent
            # unverified.
            caller_session = await identity.add_session(session, name, caller, None)
            call = Call(customer_id=caller_session.customer_id, channel="phone", reason="phone call")
            session.add(call)
            await session.flush()
            session.add(CallCaller(call_id=call.id, session_id=caller_session.id))
    if call is None:
        # Every line is busy: the caller hears a busy signal and nothing is created.
        response = VoiceResponse()
        response.reject(reason="busy")
        return web.Response(text=str(response), content_type="text/xml")
    live = await request.app[HUB].session(call.id)
    await live.on_created()
    log.info("phone call %s from Twilio call %s", call.id, call_sid)

    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=_stream_url(request))
    stream.parameter(name="call_id", value=call.id)
    stream.parameter(name="token", value=phone.stream_token(call.id))
    response.append(connect)
    return web.Response(text=str(response), content_type="text/xml")


@routes.get("/twilio/stream")
async def media_stream(request: web.Request) -> web.StreamResponse:
    phone = cast(Phone, request.app[PHONE])
    ws = web.WebSocketResponse(max_msg_size=256 * 1024)
    await ws.prepare(request)
    start = await wait_for_start(ws, phone.stats, START_TIMEOUT_S)
    if start is None:
        await ws.close()
        return ws
    params = start["start"].get("customParameters", {})
    call_id = params.get("call_id")
    if not phone.valid(params.get("token"), call_id) or not media_format_ok(start):
        return await _reject(ws, phone, call_id)
    try:
        live = await _session_here(request, ws, call_id, start)
    except ApiError:
        await ws.close(code=1008, message=b"unknown call")
        return ws
    if live is None:  # relayed to the node that holds the call, which used the token
        return ws
    if not await phone.redeem(params.get("token"), call_id):
        return await _reject(ws, phone, call_id)
    if live.call.channel != "phone":
        await ws.close(code=1008, message=b"not a phone call")
        return ws
    participant = MediaStream(
        ws,
        role="customer",
        stream_sid=start["streamSid"],
        call_sid=str(start["start"].get("callSid", "")),
        stats=phone.stats,
    )
    try:
        await live.join(participant)
    except ApiError:  # the call ended meanwhile; join closed the stream
        return ws
    await participant.run()
    return ws


async def _reject(ws: web.WebSocketResponse, phone: Phone, call_id: Any) -> web.WebSocketResponse:
    phone.stats.rejected += 1
    log.warning("closed a media stream with a bad token or format for %r", call_id)
    await ws.close(code=1008, message=b"bad stream token")
    return ws


async def _session_here(
    request: web.Request, ws: web.WebSocketResponse, call_id: str, start: dict[str, Any]
) -> CallSession | None:
    """The call's session on this node; or None once the stream was relayed to the node
    that holds the call (Twilio reaches whichever node the proxy picks)."""
    hub = request.app[HUB]
    for _attempt in range(2):
        try:
            return await hub.session(call_id)
        except Elsewhere as where:
            if forwarded_by(request) is not None:
                raise ApiError(503, "call_moving", "the call moved again") from None
            cluster = request.app[CLUSTER]
            try:
                await relay_websocket(request, ws, where.owner.url, [start])
                return None
            except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError, TimeoutError):
                log.warning("node %s holds call %s but does not answer", where.owner.id, call_id)
                await cluster.wait_gone(where.owner.id, cluster.ttl_ms / 1000 + 2)
    raise ApiError(503, "node_unavailable", "the server holding this call does not answer")
