"""REST routes of API.md: sessions, calls, history, summary, SSE, ICE servers and offers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from server import calllist, events, identity
from server.assist.assistant import feedback_stats
from server.auth import Principal, authenticate, principal_from_header, require_role
from server.calllist import call_json
from server.errors import ApiError, bad_request, conflict, forbidden
from server.fanout import Subscriber
from server.files import joined_recording
from server.forward import on_owner
from server.hub import CallHub
from server.metrics import CONTENT_TYPE
from server.models import Call, CallCaller, CallEvent, Customer
from server.ratelimit import client_address
from server.session import CallSession
from server.store import QUEUE_LOCK, Store
from signaling.errors import IceGatheringError, InvalidOffer
from signaling.ice import ice_servers
from signaling.peer import Peer

from server.keys import (  # isort: skip
    CLUSTER,
    HUB,
    LIMITS,
    METRICS,
    NODE_ID,
    PHONE,
    PRINCIPAL,
    REVOCATIONS,
    SETTINGS,
    STORE,
    TOKENS,
)

routes = web.RouteTableDef()

OPEN_STATES = ("waiting", "active")
_PHONE_RE = re.compile(r"^\+?[0-9 ().-]{5,30}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,100}@[^@\s]{1,100}\.[^@\s]{1,20}$")


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "invalid_json")
    return body


def _str_field(body: dict[str, Any], name: str, *, required: bool, max_len: int = 200) -> str | None:
    value = body.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise bad_request(f"{name} is required", "missing_field")
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string", "invalid_field")
    if len(value) > max_len:
        raise bad_request(f"{name} is longer than {max_len} characters", "invalid_field")
    return value.strip()


def principal(request: web.Request) -> Principal:
    who = principal_from_header(request.app[TOKENS], request.headers.get("Authorization"))
    request[PRINCIPAL] = who  # the error middleware shows staff the detail of an error
    return who


def check_member(who: Principal, call: Call, *, allow_customer: bool = True) -> None:
    """Its agent (once accepted) and admins; its customer is checked by `_call_for`."""
    if who.role == "admin":
        return
    if who.role == "agent" and call.agent == who.subject:
        return
    if allow_customer and who.role == "customer":
        return
    raise forbidden("this is not your call")


async def _call_for(request: web.Request, **kwargs: Any) -> tuple[Principal, Call]:
    who = principal(request)
    call = await request.app[HUB].load_call(request.match_info["call_id"])
    check_member(who, call, **kwargs)
    if who.role == "customer":
        link, _caller = await identity.caller_of(request.app[STORE], call.id)
        identity.check_owner(who.subject, link)
    return who, call


def _address(request: web.Request) -> str:
    return client_address(request, request.app[SETTINGS].trusted_proxies)


# -- health and sessions -------------------------------------------------------------------


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Also the cluster as this node sees it: a node that cannot reach Redis says so (503),
    so that a proxy's health check takes it out of rotation."""
    app = request.app
    node = app[NODE_ID]
    cluster = app.get(CLUSTER)
    body: dict[str, Any] = {"status": "ok", "live_calls": app[HUB].live_count, "node": node}
    if cluster is None:
        # Alone, the URL it was reached by is as good as any (the port may be chosen at bind).
        url = app[SETTINGS].node_url or str(request.url.origin())
        body["nodes"] = [{"id": node, "url": url}]
        return web.json_response(body)
    try:
        nodes = await cluster.nodes()
    except ApiError as exc:
        body.update(status="degraded", nodes=[], error=exc.message)
        return web.json_response(body, status=503)
    body["nodes"] = [{"id": n.id, "url": n.url} for n in nodes]
    if cluster.fenced or all(n.id != node for n in nodes):
        body["status"] = "degraded"
        return web.json_response(body, status=503)
    return web.json_response(body)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this node (admin token; or CALLASSIST_METRICS_ADDRESS)."""
    require_role(principal(request), "admin")
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.post("/api/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = _str_field(body, "username", required=True, max_len=64)
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise bad_request("password is required", "missing_field")
    async with request.app[LIMITS].login_attempt(username or "", _address(request)):
        user = await authenticate(request.app[STORE], username or "", password)
    token = request.app[TOKENS].issue(Principal(role=user.role, subject=user.username))
    return web.json_response({"token": token, "role": user.role, "username": user.username})


@routes.post("/api/auth/customer")
async def customer_session(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = _str_field(body, "name", required=True)
    phone = _str_field(body, "phone", required=False, max_len=40)
    email = _str_field(body, "email", required=False)
    if phone is not None and not _PHONE_RE.match(phone):
        raise bad_request("phone must be a phone number", "invalid_field")
    if email is not None:
        email = email.lower()
        if not _EMAIL_RE.match(email):
            raise bad_request("email must be an email address", "invalid_field")
    limits = request.app[LIMITS]
    await limits.hit(limits.customer_address, "customer-session", _address(request), "new sessions")
    caller = await identity.open_session(request.app[STORE], name or "", phone, email)
    # The token is this session; `customer_id` names it, not the linked CRM record, whose
    # id would tell anyone who types a phone number whether it is a customer's.
    token = request.app[TOKENS].issue(
        Principal(role="customer", subject=caller.id, customer_id=caller.id)
    )
    return web.json_response({"token": token, "customer_id": caller.id})


# -- calls ---------------------------------------------------------------------------------


@routes.post("/api/calls")
async def create_call(request: web.Request) -> web.Response:
    who = principal(request)
    require_role(who, "customer")
    body = await read_json(request)
    reason = body.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 500:
        raise bad_request("reason must be a string of at most 500 characters", "invalid_field")
    store: Store = request.app[STORE]
    caller = await identity.load_session(store, who.subject)
    limits = request.app[LIMITS]
    await limits.hit(limits.customer_address, "customer-call", _address(request), "new calls")
    max_waiting = request.app[SETTINGS].max_waiting
    async with store.write() as session:
        open_call = (
            await session.exec(
                select(Call)
                .join(CallCaller, col(CallCaller.call_id) == col(Call.id))
                .where(CallCaller.session_id == caller.id, col(Call.state).in_(OPEN_STATES))
            )
        ).first()
        if open_call is not None:
            raise conflict(
                f"you already have an open call {open_call.id}",
                "call_already_open",
                call_id=open_call.id,
            )
        # Nodes count and add under one lock: the cap holds however many race for it.
        await store.serialize(session, QUEUE_LOCK)
        waiting = (
            await session.exec(select(func.count()).select_from(Call).where(Call.state == "waiting"))
        ).one()
        if waiting >= max_waiting:
            raise ApiError(
                503, "queue_full", "every line is busy; please try again in a few minutes"
            )
        call = Call(customer_id=caller.customer_id, reason=reason.strip())
        session.add(call)
        await session.flush()
        session.add(CallCaller(call_id=call.id, session_id=caller.id))
    live = await request.app[HUB].session(call.id)
    await live.on_created()
    return web.json_response({"call_id": call.id, "state": "waiting"}, status=201)


def _list_limit(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        raise bad_request("limit must be an integer", "invalid_query") from None
    if not 1 <= limit <= 1000:
        raise bad_request("limit must be 1..1000", "invalid_query")
    return limit


@routes.get("/api/calls")
async def list_calls(request: web.Request) -> web.Response:
    who = principal(request)
    require_role(who, "agent", "admin")
    state = request.query.get("state")
    if state is not None and state not in ("waiting", "active", "ended"):
        raise bad_request("state must be waiting, active or ended", "invalid_query")
    limit = _list_limit(request)
    app = request.app
    calls, _ = await calllist.entries(
        app[STORE], state, limit, app[HUB].voice_agent_here, clustered=CLUSTER in app
    )
    return web.json_response({"calls": calls})


@routes.get("/api/calls/events")
async def call_list_stream(request: web.Request) -> web.StreamResponse:
    """The calls list live (an extension, docs/api.md): the open calls, then every change of
    any call on any node, as Server-Sent Events."""
    who = principal(request)
    require_role(who, "agent", "admin")
    limit = _list_limit(request)
    app = request.app
    hub: CallHub = app[HUB]
    store: Store = app[STORE]
    # Listening before reading, as the call streams do: nothing falls between the two, and a
    # change the list already shows is dropped by its seq.
    sub = hub.bus.subscribe_list(who.role)
    try:
        started = events.now_ms()
        listed: list[dict[str, Any]] = []
        seqs: dict[str, int] = {}
        for state in calllist.OPEN_STATES:
            part, part_seqs = await calllist.entries(
                store, state, limit, hub.voice_agent_here, clustered=CLUSTER in app
            )
            listed += part
            seqs.update(part_seqs)
        seqs.update(await calllist.recently_ended_seqs(store, started - calllist.RECENTLY_ENDED_MS))
    except BaseException:
        hub.bus.unsubscribe_list(sub)
        raise
    response = await _sse_response(request)

    async def send(update: dict[str, Any]) -> None:
        if update["seq"] <= seqs.get(update["call_id"], 0):
            return  # the list (or an earlier change) had it
        seqs[update["call_id"]] = update["seq"]
        await _sse_write(response, update, with_id=False)

    try:
        await _sse_write(response, events.call_list(listed), with_id=False)
        await _follow(request, response, who, sub, send)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        hub.bus.unsubscribe_list(sub)
    return response


async def _customer(store: Store, customer_id: str) -> Customer | None:
    async with store.session() as session:
        return await session.get(Customer, customer_id)


@routes.get("/api/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    who, call = await _call_for(request)
    link, caller = await identity.caller_of(request.app[STORE], call.id)
    if who.role == "customer":
        return web.json_response(identity.customer_call_view(call, caller))
    customer = await _customer(request.app[STORE], call.customer_id)
    return web.json_response(call_json(call, customer, link, caller))


@routes.post("/api/calls/{call_id}/verify")
async def verify_caller(request: web.Request) -> web.StreamResponse:
    """Its agent confirms the caller is the linked customer (or links another record)."""
    who = principal(request)
    require_role(who, "agent")
    call = await request.app[HUB].load_call(request.match_info["call_id"])
    if call.agent != who.subject:
        raise forbidden("this is not your call")
    body = await read_json(request)
    customer_id = _str_field(body, "customer_id", required=False, max_len=40)
    store: Store = request.app[STORE]

    async def here(live: CallSession) -> web.Response:
        verified = await identity.verify(store, call.id, who.subject, customer_id)
        await live.on_verified(verified)
        link, caller = await identity.caller_of(store, call.id)
        customer = await _customer(store, verified.customer_id)
        return web.json_response(call_json(verified, customer, link, caller))

    return await on_owner(request, call.id, here, "verify")


@routes.post("/api/calls/{call_id}/accept")
async def accept_call(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    require_role(who, "agent")
    call_id = request.match_info["call_id"]

    async def here(live: CallSession) -> web.Response:
        await live.accept(who.subject)
        return web.json_response({"call_id": call_id, "state": "active"})

    return await on_owner(request, call_id, here, "accept")  # 404 first


@routes.post("/api/calls/{call_id}/end")
async def end_call(request: web.Request) -> web.StreamResponse:
    _who, call = await _call_for(request)
    done = web.json_response({"call_id": call.id, "state": "ended"})
    if call.state == "ended":
        return done

    async def here(live: CallSession) -> web.Response:
        await live.end()
        return done

    return await on_owner(request, call.id, here, "end")


@routes.get("/api/calls/{call_id}/messages")
async def messages(request: web.Request) -> web.Response:
    who, call = await _call_for(request)
    raw_after = request.query.get("after", "0")
    if not re.fullmatch(r"\d{1,18}", raw_after):
        raise bad_request("after must be a non-negative integer", "invalid_query")
    role = "customer" if who.role == "customer" else "agent"
    visible = await _history(request.app[STORE], call.id, role, int(raw_after))
    return web.json_response({"messages": visible})


async def _history(store: Store, call_id: str, role: str, after: int = 0) -> list[dict[str, Any]]:
    """The persisted events of a call with `seq > after` that `role` may see, in order."""
    async with store.session() as session:
        rows = await session.exec(
            select(CallEvent)
            .where(CallEvent.call_id == call_id, CallEvent.seq > after)
            .order_by(col(CallEvent.seq))
        )
        bodies = [row.body for row in rows]
    return [b for b in bodies if events.visible_to(b, role)]  # type: ignore[arg-type]


@routes.get("/api/calls/{call_id}/summary")
async def summary(request: web.Request) -> web.Response:
    _who, call = await _call_for(request, allow_customer=False)
    if call.state != "ended":
        raise conflict("the call has not ended yet", "call_not_ended")
    async with request.app[STORE].session() as session:
        row = (
            await session.exec(
                select(CallEvent)
                .where(CallEvent.call_id == call.id, CallEvent.type == events.SUMMARY)
                .order_by(col(CallEvent.seq).desc())
            )
        ).first()
    if row is None:
        raise ApiError(404, "summary_not_found", "this call has no summary")
    return web.json_response({"summary": row.body["summary"]})


SSE_KEEPALIVE_S = 15.0
SSE_RECHECK_S = 2.0
"""A revoked token's stream ends within this (plus the revocation cache), and so does the
stream of a client that went away without a word (else only the next write would tell)."""


@routes.get("/api/calls/{call_id}/events")
async def event_stream(request: web.Request) -> web.StreamResponse:
    who, call = await _call_for(request, allow_customer=False)
    # Subscribed before the history is read, wherever the call's holder runs: nothing falls
    # between the two, and what both have is dropped by seq.
    # At most CALLASSIST_MAX_STREAMS_PER_CALL, counted on every node of a cluster.
    bus = request.app[HUB].bus
    sub = await bus.subscribe(call.id, "agent", request.app[SETTINGS].max_streams_per_call)
    try:
        backlog = await _history(request.app[STORE], call.id, "agent")
        call = await request.app[HUB].load_call(call.id)
    except BaseException:
        bus.unsubscribe(sub)
        raise
    last_seq = backlog[-1]["seq"] if backlog else 0
    response = await _sse_response(request)

    async def send(event: dict[str, Any]) -> None:
        if event.get("seq", last_seq + 1) > last_seq:  # else the backlog had it
            await _sse_write(response, event)

    try:
        for event in backlog:
            await _sse_write(response, event)
        if call.state != "ended":
            await _follow(request, response, who, sub, send)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        bus.unsubscribe(sub)
    return response


async def _sse_response(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


async def _follow(
    request: web.Request,
    response: web.StreamResponse,
    who: Principal,
    sub: Subscriber,
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Send what the subscription gets until it ends (None) or the token is revoked, with
    keep-alive comments while it is quiet."""
    revocations = request.app[REVOCATIONS]
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        try:
            async with asyncio.timeout(SSE_RECHECK_S):
                item = await sub.queue.get()
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return  # the client went away: its place (streams per call) is free again
            if await revocations.is_revoked(who):
                return
            if loop.time() - quiet_since >= SSE_KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            continue
        quiet_since = loop.time()
        if item is None:
            return
        await send(item)


async def _sse_write(response: web.StreamResponse, event: dict[str, Any], with_id: bool = True) -> None:
    lines = [f"event: {event['type']}"]
    if with_id and "seq" in event:
        lines.append(f"id: {event['seq']}")
    lines.append(f"data: {events.encode(event)}")
    await response.write(("\n".join(lines) + "\n\n").encode())


@routes.get("/api/calls/{call_id}/recordings/{speaker}")
async def recording(request: web.Request) -> web.StreamResponse:
    """A participant's audio as 16 kHz mono WAV, kept when CALLASSIST_RECORD_AUDIO is on."""
    _who, call = await _call_for(request, allow_customer=False)
    speaker = request.match_info["speaker"]
    if speaker not in ("customer", "agent"):
        raise bad_request("speaker must be customer or agent", "invalid_speaker")
    call_dir = request.app[SETTINGS].data_dir / "recordings" / call.id
    # A call recorded across a server restart has several parts (server/files.py).
    wav = await asyncio.to_thread(joined_recording, call_dir, speaker)
    if wav is None:
        raise ApiError(404, "recording_not_found", "no recording of this speaker in this call")
    return web.Response(body=wav, headers={"Content-Type": "audio/wav", "Cache-Control": "no-store"})


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    async with request.app[STORE].session() as session:
        rows = (await session.exec(select(Call.state, func.count()).group_by(Call.state))).all()
    by_state = {state: count for state, count in rows}
    feedback = await feedback_stats(request.app[STORE])
    total = feedback["total"]
    phone = request.app.get(PHONE)
    phone_stats = getattr(phone, "stats", None)
    return web.json_response(
        {
            "calls": {s: by_state.get(s, 0) for s in ("waiting", "active", "ended")},
            "phone": {
                "streams": phone_stats.streams,
                "rejected": phone_stats.rejected,
                "malformed_messages": phone_stats.malformed,
                "media_in": phone_stats.media_in,
                "media_out": phone_stats.media_out,
            }
            if phone_stats is not None
            else None,
            "live_sessions": request.app[HUB].live_count,
            "suggestions": {
                "total": total["shown"],
                "used": total["used"],
                "dismissed": total["dismissed"],
                "use_rate": total["use_rate"],
                "by_kind": feedback["by_kind"],
            },
        }
    )


# -- WebRTC --------------------------------------------------------------------------------


@routes.get("/api/webrtc/ice-servers")
async def get_ice_servers(request: web.Request) -> web.Response:
    who = principal(request)
    s = request.app[SETTINGS]
    turn_urls = s.turn_urls
    if who.role == "customer" and turn_urls and not await _has_open_call(request, who):
        # Anyone can open a customer session: relay credentials only for a caller's call.
        turn_urls = ()
    servers = ice_servers(s.stun_urls, turn_urls, s.turn_secret, s.turn_ttl_s, who.subject)
    return web.json_response({"iceServers": servers, "ttl": s.turn_ttl_s})


async def _has_open_call(request: web.Request, who: Principal) -> bool:
    async with request.app[STORE].session() as session:
        row = (
            await session.exec(
                select(Call.id)
                .join(CallCaller, col(CallCaller.call_id) == col(Call.id))
                .where(CallCaller.session_id == who.subject, col(Call.state).in_(OPEN_STATES))
            )
        ).first()
    return row is not None


@routes.post("/api/calls/{call_id}/offer")
async def offer(request: web.Request) -> web.StreamResponse:
    who, call = await _call_for(request)
    if who.role == "admin":
        raise forbidden("only the call's customer or agent can connect to it")
    body = await read_json(request)
    if body.get("type") != "offer":
        raise bad_request("type must be 'offer'", "invalid_sdp")
    sdp = body.get("sdp")
    if not isinstance(sdp, str):
        raise bad_request("sdp is required", "invalid_sdp")
    if call.state == "ended":
        raise conflict("the call has ended", "call_ended")
    if who.role == "agent" and call.state != "active":
        raise conflict("accept the call before connecting", "call_not_active")
    hub: CallHub = request.app[HUB]

    async def here(live: CallSession) -> web.Response:
        settings = request.app[SETTINGS]
        peer = Peer(
            role=who.role,
            configuration=hub.services.rtc_configuration(),
            connect_timeout_s=settings.ice_connect_timeout_s,
        )
        try:
            answer = await peer.answer(sdp, settings.ice_gather_timeout_s)
        except BaseException as exc:
            await peer.close()
            if isinstance(exc, InvalidOffer | IceGatheringError):
                error = ApiError(400 if isinstance(exc, InvalidOffer) else 503, exc.code, exc.message)
                error.detail = exc.detail  # for staff and logs only
                raise error from None
            raise
        await live.join(peer)  # an offer to a call that ended meanwhile → 409, peer closed
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    return await on_owner(request, call.id, here, "offer")
