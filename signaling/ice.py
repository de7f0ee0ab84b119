"""ICE configuration: STUN/TURN servers, coturn TURN REST credentials, host candidates.

Clients get `iceServers` from `/api/webrtc/ice-servers`; the server's own peers are
configured from the same settings with credentials it issues to itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

_original_get_host_addresses = aioice.ice.get_host_addresses


def turn_rest_credentials(
    secret: str, user: str, ttl_s: int, now: float | None = None
) -> tuple[str, str]:
    """coturn's `use-auth-secret` scheme: username `<expiry>:<user>`, HMAC-SHA1 password."""
    expiry = int(now if now is not None else time.time()) + ttl_s
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    stun_urls: Sequence[str],
    turn_urls: Sequence[str],
    turn_secret: str,
    turn_ttl_s: int,
    user: str,
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries as browsers take them."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls:
        entry: dict[str, Any] = {"urls": list(turn_urls)}
        if turn_secret:
            username, credential = turn_rest_credentials(turn_secret, user, turn_ttl_s)
            entry.update(username=username, credential=credential)
        servers.append(entry)
    return servers


def rtc_configuration(
    servers: Iterable[dict[str, Any]], transport_policy: str = "all"
) -> RTCConfiguration:
    """An explicit configuration: never aiortc's default public STUN server."""
    ice = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in servers
    ]
    policy = RTCIceTransportPolicy.RELAY if transport_policy == "relay" else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=ice, iceTransportPolicy=policy)


def restrict_host_addresses(hosts: Sequence[str]) -> None:
    """Gather host candidates only on `hosts` (process-wide; empty restores every interface).

    aioice offers no per-connection setting for this and never gathers 127.0.0.1, which
    tests and local QA need so that media stays on loopback.
    """
    if not hosts:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    chosen = list(hosts)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [h for h in chosen if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def count_candidates(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("a=candidate:"))
