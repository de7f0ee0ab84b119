"""GET /metrics (Prometheus), /health's node fields, and the settings of several nodes."""

from __future__ import annotations

import aiohttp
import pytest

from server.config import ConfigError, load_settings
from tests.conftest import BASE_ENV, Running, make_settings, serving, wait_for_audio
from tests.postgres import free_port


async def test_metrics_need_an_admin_and_report_the_node(running: Running, tone_packets) -> None:
    agent = await running.agent("alice")
    admin = await running.agent("root", role="admin")
    assert (await running.api.call("GET", "/metrics"))[0] == 401
    assert (await running.api.call("GET", "/metrics", agent))[0] == 403

    cust = await running.customer("Ann")
    call_id = await running.new_call(cust["token"])
    await running.api.call("POST", f"/api/calls/{call_id}/accept", agent)
    customer = running.participant(cust["token"], "customer", packets=tone_packets(440, 10))
    await customer.connect(call_id)
    peer = running.participant(agent, "agent", packets=tone_packets(880, 10))
    await peer.connect(call_id)
    await wait_for_audio(peer, 20)

    async with running.http.get(
        running.url + "/metrics", headers={"Authorization": f"Bearer {admin}"}
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert samples['callassist_calls{state="active"}'] == "1.0"
    assert samples['callassist_calls{state="waiting"}'] == "0.0"
    assert samples["callassist_live_calls"] == "1.0"
    assert samples['callassist_participants{kind="webrtc"}'] == "2.0"
    assert samples["callassist_stt_queue_depth"] == "0.0"
    assert float(samples["callassist_event_loop_lag_seconds_count"]) >= 1
    for name in (
        "callassist_transcript_latency_seconds_count",
        "callassist_suggestion_latency_seconds_count",
        "callassist_db_errors_total",
        "callassist_takeovers_total",
    ):
        assert name in samples, name

    status, health = await running.api.call("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["nodes"] == [{"id": health["node"], "url": running.url}]


async def test_metrics_on_their_own_address_need_no_token(tmp_path) -> None:
    port = free_port()
    settings = make_settings(tmp_path / "data", CALLASSIST_METRICS_ADDRESS=f"127.0.0.1:{port}")
    async with (
        serving(settings),
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        assert r.status == 200
        assert "callassist_live_calls 0.0" in await r.text()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CALLASSIST_REDIS_URL": "redis://127.0.0.1:6379/0", "CALLASSIST_SECRET_KEY": ""}, "CALLASSIST_SECRET_KEY"),
        ({"CALLASSIST_REDIS_URL": "redis://127.0.0.1:6379/0"}, "DATABASE_URL"),
        ({"CALLASSIST_REDIS_URL": "localhost:6379"}, "CALLASSIST_REDIS_URL"),
        (
            {
                "CALLASSIST_REDIS_URL": "redis://127.0.0.1:6379/0",
                "DATABASE_URL": "postgresql+asyncpg://u@h/db",
                "CALLASSIST_NODE_TTL_S": "0.5",
            },
            "CALLASSIST_NODE_TTL_S",
        ),
        ({"CALLASSIST_METRICS_ADDRESS": "9100"}, "CALLASSIST_METRICS_ADDRESS"),
    ],
)
def test_cluster_settings_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_settings(env={**BASE_ENV, **env})


def test_a_node_url_defaults_to_host_and_port() -> None:
    env = {
        **BASE_ENV,
        "CALLASSIST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "CALLASSIST_HOST": "10.0.0.5",
        "CALLASSIST_PORT": "8081",
    }
    assert load_settings(env=env).own_url == "http://10.0.0.5:8081"
    assert load_settings(env={**env, "CALLASSIST_NODE_URL": "http://node1:8080/"}).own_url == "http://node1:8080"
