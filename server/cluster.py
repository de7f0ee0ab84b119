"""This process as one node of several, over one Redis (docs/scaling.md).

Redis holds what is live between nodes; Postgres keeps everything that must survive.
Keys and channels (all under `callassist:`):

- `node:{id}` → the node's URL, expiring after `CALLASSIST_NODE_TTL_S`; each node refreshes
  its own every third of that. A node whose key is gone is dead.
- `lease:{call_id}` → the id of the node that holds the call's media (its participants,
  decoders, transcriber and assistant), with the same TTL, refreshed with the presence key
  in one script. Taken atomically (`ACQUIRE`): free, or held by a node whose presence key
  is gone. So at most one live node holds a call, and a dead node's calls are free again
  within one TTL of its death.
- `holder:{call_id}` → the node that last took the lease, until it lets the call go (a day
  at most): a node that finds another's name there took the call over from a dead node.
- `once:stream-token:{jti}` → the node that used a Twilio stream token, until the token
  expires: a token works once in the cluster (server/phone.py).
- `streams:{call_id}` → a hash of node id → the number of SSE streams of the call that node
  serves. A node writes its own count (an absolute number, so a Redis that came back empty
  learns it again at the next change); a count whose node's presence key is gone does not
  count, and goes. So `CALLASSIST_MAX_STREAMS_PER_CALL` holds for the cluster, and a dead
  node's streams stop counting within one TTL of its death.
- channel `call:{call_id}` → every event of the call as its owner sends it, for the SSE
  streams on the other nodes (server/fanout.py).
- channel `calls` → the calls list's changes (a call created, answered by the voice agent,
  accepted, ended), for the list streams of every node; every node listens from its start.

Fencing: a node that cannot refresh its leases for two thirds of the TTL drops the media of
all its calls (loudly: log, `status` event, metric) before any other node may take them, so
two nodes never terminate one call's media. A lease found taken by another node at refresh
(Redis restarted empty and another node got there first) is dropped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from server.errors import ApiError

log = logging.getLogger(__name__)

PREFIX = "callassist:"
HOP_HEADER = "X-Callassist-Hop"
HOP_MAX_AGE_S = 30
FENCE_FRACTION = 2 / 3
"""A node that has not refreshed its leases for this fraction of the TTL gives up its calls:
the lease in Redis lasts the whole TTL from the last refresh, so the margin (a third of the
TTL, 3.3 s by default) covers the time between our refresh and Redis's clock."""

# KEYS[1] lease, KEYS[2] last holder; ARGV: node id, ttl ms, node key prefix.
# → {1, ""} taken (or already ours), {2, dead_holder} taken over from a node that held it and
# never let it go (it died), {0, owner} held by a live node.
_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return {0, owner}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local last = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', 86400)
if last and last ~= ARGV[1] then return {2, last} end
return {1, ''}
"""

# KEYS[1] presence key, KEYS[2..] leases; ARGV: node id, url, ttl ms.
# Refreshes presence and every lease we hold; takes back a lease that vanished (Redis lost
# its data); returns the indexes of leases another node holds now.
_HEARTBEAT = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local lost = {}
for i = 2, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  elseif not owner then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[3])
  else
    table.insert(lost, i - 1)
  end
end
return lost
"""

_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS[1] the call's stream counts; ARGV: node id, this node's count with the new stream,
# the cluster's limit, node key prefix. → 1 (counted) or 0 (the cluster has enough).
_CLAIM_STREAM = """
local total = tonumber(ARGV[2])
local counts = redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  local node = counts[i]
  if node ~= ARGV[1] then
    if redis.call('EXISTS', ARGV[4] .. node) == 1 then
      total = total + tonumber(counts[i + 1])
    else
      redis.call('HDEL', KEYS[1], node)
    end
  end
end
if total > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


@dataclass(frozen=True)
class Node:
    id: str
    url: str


class Elsewhere(Exception):
    """The call's media lives on another live node."""

    def __init__(self, owner: Node) -> None:
        super().__init__(f"the call is held by node {owner.id} ({owner.url})")
        self.owner = owner


class ClusterUnavailable(ApiError):
    """Redis cannot be reached: no lease can be taken, so no call can move here."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "cluster_unavailable", message)


def new_node_id() -> str:
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


LostHandler = Callable[[str, str], Awaitable[None]]
"""(call_id, why): this node must drop the call's media now."""
MessageHandler = Callable[[str, dict[str, Any]], None]
"""(call_id, message) from another node's fan-out."""
ListHandler = Callable[[dict[str, Any]], None]
"""A message of another node's calls-list fan-out."""


class Cluster:
    def __init__(
        self,
        redis_url: str,
        *,
        node_id: str,
        node_url: str,
        ttl_s: float,
        secret: str,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.node = Node(node_id, node_url)
        self.ttl_ms = int(ttl_s * 1000)
        self.interval_s = ttl_s / 3
        self._secret = secret.encode()
        self.redis = redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=max(1.0, ttl_s / 4),
            socket_connect_timeout=max(1.0, ttl_s / 4),
        )
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._release = self.redis.register_script(_RELEASE)
        self._claim_stream = self.redis.register_script(_CLAIM_STREAM)
        self.owned: set[str] = set()
        self.on_lost: LostHandler | None = None
        self.on_message: MessageHandler | None = None
        self.on_list_message: ListHandler | None = None
        self.on_reconnect: Callable[[], None] | None = None
        self._on_error = on_error
        self._last_ok = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub = _PubSub(self.redis.connection_pool, on_reconnect=self._resubscribed)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.http: aiohttp.ClientSession | None = None
        """Node-to-node requests (server/forward.py)."""
        self.fenced = False
        self.commands = 0
        """Redis commands this node sent (for the benchmark of Redis load per call)."""

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node (fails loudly when Redis is unreachable) and start the loops."""
        await self._heartbeat(keys=[self._node_key(self.node.id)], args=[self.node.id, self.node.url, self.ttl_ms])
        self.commands += 1
        self._last_ok = time.monotonic()
        await self._pubsub.subscribe(self._node_channel(), self._list_channel())
        self.http = aiohttp.ClientSession()
        self._tasks = [
            asyncio.ensure_future(self._beat()),
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._send()),
        ]
        log.info("node %s (%s) joined the cluster", self.node.id, self.node.url)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            for call_id in list(self.owned):
                await self.release(call_id)
            await self.redis.delete(self._node_key(self.node.id))
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await self._pubsub.aclose()
        if self.http is not None:
            await self.http.close()
        await self.redis.aclose()

    # -- presence ---------------------------------------------------------------------------

    async def nodes(self) -> list[Node]:
        """The live nodes (their presence keys), this one included while it is healthy."""

        async def scan() -> list[Node]:
            prefix = self._node_key("")
            keys = [str(k) async for k in self.redis.scan_iter(match=prefix + "*", count=100)]
            urls = await self.redis.mget(keys) if keys else []
            return [Node(k[len(prefix) :], str(u)) for k, u in zip(keys, urls, strict=True) if u]

        return sorted(await self._call(scan()), key=lambda n: n.id)

    async def node_url(self, node_id: str) -> str | None:
        return await self._call(self.redis.get(self._node_key(node_id)))

    async def wait_gone(self, node_id: str, timeout_s: float) -> bool:
        """Until `node_id`'s presence key is gone (it died): True, or False at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not await self._call(self.redis.exists(self._node_key(node_id))):
                return True
            await asyncio.sleep(0.2)
        return False

    # -- leases ------------------------------------------------------------------------------

    async def acquire(self, call_id: str) -> str | None:
        """Take the call's lease. Returns the id of the dead node it was taken from (or None);
        raises Elsewhere when a live node holds it, ClusterUnavailable without Redis."""
        if self.fenced:
            raise ClusterUnavailable("this node lost Redis; it takes no calls until it is back")
        result = await self._call(
            self._acquire(
                keys=[self._lease_key(call_id), self._holder_key(call_id)],
                args=[self.node.id, self.ttl_ms, self._node_key("")],
            )
        )
        status, owner = int(result[0]), str(result[1])
        if status == 0:
            url = await self.node_url(owner)
            if url is None:  # it died between the two commands: try again
                return await self.acquire(call_id)
            raise Elsewhere(Node(owner, url))
        self.owned.add(call_id)
        return owner or None

    async def release(self, call_id: str) -> None:
        self.owned.discard(call_id)
        with contextlib.suppress(RedisError, OSError):
            self.commands += 1
            await self._release(
                keys=[self._lease_key(call_id), self._holder_key(call_id)], args=[self.node.id]
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            owned = list(self.owned)
            started = time.monotonic()
            try:
                lost = await self._call(
                    self._heartbeat(
                        keys=[self._node_key(self.node.id)] + [self._lease_key(c) for c in owned],
                        args=[self.node.id, self.node.url, self.ttl_ms],
                    )
                )
            except ClusterUnavailable:
                if time.monotonic() - self._last_ok > FENCE_FRACTION * self.ttl_ms / 1000:
                    await self._fence()
                continue
            self._last_ok = started
            if self.fenced:
                self.fenced = False
                log.warning("node %s: Redis is back; taking calls again", self.node.id)
            for index in lost:
                call_id = owned[int(index) - 1]
                log.error("node %s: another node holds call %s now; dropping its media here", self.node.id, call_id)
                await self._lose(call_id, "lease_lost")

    async def _fence(self) -> None:
        if not self.fenced:
            log.error(
                "node %s: no Redis for %.1f s; dropping the media of %d calls before their "
                "leases lapse",
                self.node.id,
                time.monotonic() - self._last_ok,
                len(self.owned),
            )
        self.fenced = True
        for call_id in list(self.owned):
            await self._lose(call_id, "redis_unreachable")

    async def _lose(self, call_id: str, why: str) -> None:
        self.owned.discard(call_id)
        if self.on_lost is not None:
            try:
                await self.on_lost(call_id, why)
            except Exception:
                log.exception("dropping call %s failed", call_id)

    async def claim_once(self, name: str, ttl_s: float) -> bool:
        """True the first time any node claims `name` within `ttl_s` (a single-use token)."""
        key = f"{PREFIX}once:{name}"
        return bool(await self._call(self.redis.set(key, self.node.id, nx=True, px=max(1, int(ttl_s * 1000)))))

    # -- SSE streams per call ------------------------------------------------------------------

    async def claim_stream(self, call_id: str, here: int, limit: int) -> bool:
        """Whether a new SSE stream of the call fits the cluster's `limit`, `here` being this
        node's streams of the call with the new one (then counted); ClusterUnavailable
        without Redis."""
        ok = await self._call(
            self._claim_stream(
                keys=[self._streams_key(call_id)],
                args=[self.node.id, here, limit, self._node_key("")],
            )
        )
        return bool(int(ok))

    async def count_streams(self, call_id: str, here: int) -> None:
        """This node now serves `here` streams of the call (one ended)."""
        key = self._streams_key(call_id)
        with contextlib.suppress(ClusterUnavailable):
            if here > 0:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hset(key, self.node.id, here)
                    pipe.expire(key, 86400)
                    await self._call(pipe.execute())
            else:
                await self._call(self.redis.hdel(key, self.node.id))

    # -- fan-out -----------------------------------------------------------------------------

    def publish(self, call_id: str, message: dict[str, Any]) -> None:
        """Send to the nodes listening on the call, in order, without waiting for Redis."""
        text = json.dumps({"o": self.node.id, **message}, separators=(",", ":"), ensure_ascii=False)
        self._outbox.put_nowait((self._call_channel(call_id), text))

    def publish_list(self, message: dict[str, Any]) -> None:
        """Send to every node's calls-list listeners, in order, without waiting for Redis."""
        text = json.dumps({"o": self.node.id, **message}, separators=(",", ":"), ensure_ascii=False)
        self._outbox.put_nowait((self._list_channel(), text))

    async def listen(self, call_id: str) -> None:
        """Receive the call's fan-out from now on (returns once Redis confirmed it)."""
        channel = self._call_channel(call_id)
        confirmed = self._confirmed.setdefault(channel, asyncio.Event())
        await self._call(self._pubsub.subscribe(channel))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ttl_ms / 1000):
                await confirmed.wait()

    async def unlisten(self, call_id: str) -> None:
        channel = self._call_channel(call_id)
        self._confirmed.pop(channel, None)
        with contextlib.suppress(ClusterUnavailable):
            await self._call(self._pubsub.unsubscribe(channel))

    async def _send(self) -> None:
        dropped: set[str] = set()
        while True:
            channel, text = await self._outbox.get()
            batch = [(channel, text)]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    # Listeners that missed messages start over from the history first.
                    for lost in dropped:
                        pipe.publish(lost, json.dumps({"o": self.node.id, "reset": True}))
                    for ch, body in batch:
                        pipe.publish(ch, body)
                    self.commands += len(batch) + len(dropped)
                    await pipe.execute()
                dropped.clear()
            except (RedisError, OSError):
                self._error("publish")
                dropped.update(ch for ch, _ in batch)
                log.warning("node %s: %d events not fanned out (Redis unreachable)", self.node.id, len(batch))

    def _resubscribed(self) -> None:
        # The subscriptions came back with a new connection; what was sent meanwhile is
        # lost, so listeners start over from the history.
        log.warning("node %s: the fan-out connection to Redis was re-established", self.node.id)
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                self._error("subscribe")
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message.get("channel", "")
            if message["type"] == "subscribe":
                event = self._confirmed.get(channel)
                if event is not None:
                    event.set()
                continue
            if message["type"] != "message":
                continue
            is_list = channel == self._list_channel()
            if not is_list and not channel.startswith(PREFIX + "call:"):
                continue
            try:
                body = json.loads(message["data"])
            except ValueError:
                continue
            if body.get("o") == self.node.id:
                continue
            if is_list:
                if self.on_list_message is not None:
                    self.on_list_message(body)
            elif self.on_message is not None:
                self.on_message(channel[len(PREFIX + "call:") :], body)

    # -- node-to-node requests -----------------------------------------------------------------

    def sign_hop(self, method: str, path: str) -> str:
        ts = str(int(time.time()))
        mac = hmac.new(self._secret, f"{self.node.id}\n{ts}\n{method}\n{path}".encode(), hashlib.sha256)
        return f"{self.node.id} {ts} {mac.hexdigest()}"

    def verify_hop(self, header: str | None, method: str, path: str) -> str | None:
        """The forwarding node's id when `header` is a fresh hop signature, else None."""
        if not header:
            return None
        parts = header.split(" ")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        node_id, ts, mac = parts
        if abs(time.time() - int(ts)) > HOP_MAX_AGE_S:
            return None
        expected = hmac.new(self._secret, f"{node_id}\n{ts}\n{method}\n{path}".encode(), hashlib.sha256)
        return node_id if hmac.compare_digest(expected.hexdigest(), mac) else None

    # -- helpers -----------------------------------------------------------------------------

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        self.commands += 1
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            self._error("command")
            raise ClusterUnavailable(f"Redis is unreachable: {exc}") from exc

    def _error(self, what: str) -> None:
        if self._on_error is not None:
            self._on_error(what)

    @staticmethod
    def _node_key(node_id: str) -> str:
        return f"{PREFIX}node:{node_id}"

    @staticmethod
    def _lease_key(call_id: str) -> str:
        return f"{PREFIX}lease:{call_id}"

    @staticmethod
    def _holder_key(call_id: str) -> str:
        return f"{PREFIX}holder:{call_id}"

    @staticmethod
    def _streams_key(call_id: str) -> str:
        return f"{PREFIX}streams:{call_id}"

    @staticmethod
    def _call_channel(call_id: str) -> str:
        return f"{PREFIX}call:{call_id}"

    @staticmethod
    def _list_channel() -> str:
        return f"{PREFIX}calls"

    def _node_channel(self) -> str:
        return f"{PREFIX}node-channel:{self.node.id}"


class _PubSub(PubSub):
    """redis-py's PubSub, telling us when it reconnected (and so may have missed messages).
    redis-py registers `on_connect` after the first connection: every call is a reconnect."""

    def __init__(self, pool: Any, *, on_reconnect: Callable[[], None]) -> None:
        super().__init__(pool, ignore_subscribe_messages=False)
        self._on_reconnect = on_reconnect

    async def on_connect(self, connection: Any) -> None:
        await super().on_connect(connection)
        self._on_reconnect()
