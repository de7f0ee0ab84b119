"""Requests about a call's media that reach a node which does not hold the call.

Clients never choose a node: an offer, an accept, an end or a phone stream may land on any
node behind the proxy. The node that holds the call's lease serves it; the others forward
the request to it (`X-Callassist-Hop`, an HMAC of the shared secret key, marks a forwarded
request, which is never forwarded again), or, when the holder is dead, wait for its lease
to lapse (at most `CALLASSIST_NODE_TTL_S`) and take the call over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from server.cluster import HOP_HEADER, Elsewhere
from server.errors import ApiError
from server.session import CallSession

from server.keys import CLUSTER, HUB, METRICS, SETTINGS  # isort: skip

log = logging.getLogger(__name__)

# Request headers a forwarded request keeps; the rest are the proxy's and ours.
_KEEP = ("Authorization", "Content-Type", "X-Forwarded-For", "X-Twilio-Signature")
_CONNECT_TIMEOUT_S = 3.0


def forwarded_by(request: web.Request) -> str | None:
    """The node that forwarded this request (a valid hop signature), else None."""
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        return None
    return cluster.verify_hop(request.headers.get(HOP_HEADER), request.method, request.path)


async def on_owner(
    request: web.Request,
    call_id: str,
    here: Callable[[CallSession], Awaitable[web.StreamResponse]],
    kind: str,
) -> web.StreamResponse:
    """Serve the request with the call's session here, or on the node that holds it."""
    hub = request.app[HUB]
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        return await here(await hub.session(call_id))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cluster.ttl_ms / 1000 + 2
    hopped = forwarded_by(request) is not None
    while True:
        try:
            live = await hub.session(call_id)
        except Elsewhere as where:
            if hopped:
                # A forwarded request that finds the call moved again: the client retries.
                raise ApiError(
                    503, "call_moving", "the call is moving between servers; try again",
                ) from None
            try:
                return await _forward(request, where.owner.url, kind)
            except (aiohttp.ClientConnectionError, TimeoutError):
                log.warning("node %s holds call %s but does not answer", where.owner.id, call_id)
                left = deadline - loop.time()
                if left <= 0 or not await cluster.wait_gone(where.owner.id, left):
                    raise ApiError(
                        503, "node_unavailable", "the server holding this call does not answer"
                    ) from None
                continue  # it died: its lease is free now, take the call over
        return await here(live)


async def _forward(request: web.Request, base_url: str, kind: str) -> web.Response:
    app = request.app
    cluster = app[CLUSTER]
    body = await request.read()
    headers = {k: v for k in _KEEP if (v := request.headers.get(k)) is not None}
    headers[HOP_HEADER] = cluster.sign_hop(request.method, request.path)
    if request.remote and "X-Forwarded-For" not in headers:
        headers["X-Forwarded-For"] = request.remote
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=settings.ice_gather_timeout_s + 10, sock_connect=_CONNECT_TIMEOUT_S
    )
    app[METRICS].forwarded.labels(kind).inc()
    assert cluster.http is not None
    async with cluster.http.request(
        request.method, base_url + request.path_qs, data=body, headers=headers, timeout=timeout
    ) as r:
        payload = await r.read()
        return web.Response(
            body=payload,
            status=r.status,
            headers={k: v for k in ("Content-Type", "Retry-After") if (v := r.headers.get(k))},
        )


async def relay_websocket(
    request: web.Request, ws: web.WebSocketResponse, base_url: str, first: list[Any]
) -> None:
    """Pipe a WebSocket whose call lives elsewhere to the same route on that node: the
    messages already read (`first`) go first, then both directions as they come."""
    cluster = request.app[CLUSTER]
    request.app[METRICS].forwarded.labels("stream").inc()
    url = base_url.replace("http", "ws", 1) + request.path_qs
    headers = {HOP_HEADER: cluster.sign_hop(request.method, request.path)}
    assert cluster.http is not None
    async with cluster.http.ws_connect(url, headers=headers, max_msg_size=256 * 1024) as upstream:
        for message in first:
            await upstream.send_json(message)

        tasks = [asyncio.ensure_future(_pipe(upstream, ws)), asyncio.ensure_future(_pipe(ws, upstream))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _pipe(source: Any, sink: Any) -> None:
    """Copy WebSocket messages from `source` to `sink` until `source` closes, then close `sink`."""
    async for msg in source:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
    await sink.close()
