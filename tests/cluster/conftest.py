"""Several real server processes on loopback over one real PostgreSQL and one real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.auth import add_user
from server.store import open_store
from tests.cluster.nodes import NODE_TTL_S, Node
from tests.conftest import BASE_ENV, PASSWORD, Api
from tests.redis import RedisServer, redis_server  # noqa: F401 - fixture


class Cluster:
    def __init__(self, tmp_path: Path, database_url: str, redis: RedisServer, http: aiohttp.ClientSession) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.redis = redis
        self.http = http
        self.nodes: list[Node] = []

    async def start(self, count: int, **env: str) -> list[Node]:
        base = {
            **BASE_ENV,
            "DATABASE_URL": self.database_url,
            "CALLASSIST_REDIS_URL": self.redis.url,
            "CALLASSIST_NODE_TTL_S": str(NODE_TTL_S),
            "CALLASSIST_STT_THREADS": "1",
            **env,
        }
        started = []
        for _ in range(count):
            name = "abcdefgh"[len(self.nodes)]
            node = Node(name, self.tmp_path / name / "data", base)
            node.start()
            self.nodes.append(node)
            started.append(node)
        await asyncio.gather(*(n.wait_ready(self.http) for n in started))
        return started

    def api(self, node: Node) -> Api:
        return Api(self.http, node.url)

    async def add_user(self, name: str, role: str = "agent") -> str:
        async with open_store(self.database_url, self.tmp_path) as store:
            await add_user(store, name, PASSWORD, role)
        status, body = await self.api(self.nodes[0]).call(
            "POST", "/api/auth/login", json={"username": name, "password": PASSWORD}
        )
        assert status == 200, body
        return str(body["token"])

    def logs(self) -> str:
        return "\n".join(f"--- node {n.name}\n{n.log_tail()}" for n in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
async def cluster(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer  # noqa: F811
) -> AsyncIterator[Cluster]:
    async with aiohttp.ClientSession() as http:
        nodes = Cluster(tmp_path, postgres_url, redis_server, http)
        try:
            yield nodes
        finally:
            nodes.close()


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll an async or plain check until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.1)
