"""Every route checks its token, its role and call membership, with the API.md error shape."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.conftest import BASE_ENV, Running

CALL_ROUTES = [
    ("GET", "/api/calls/{id}"),
    ("POST", "/api/calls/{id}/accept"),
    ("POST", "/api/calls/{id}/end"),
    ("GET", "/api/calls/{id}/messages"),
    ("GET", "/api/calls/{id}/summary"),
    ("GET", "/api/calls/{id}/events"),
    ("POST", "/api/calls/{id}/offer"),
]
OTHER_ROUTES = [
    ("POST", "/api/calls"),
    ("GET", "/api/calls"),
    ("GET", "/api/webrtc/ice-servers"),
    ("GET", "/api/stats"),
]


def assert_error(status: int, body: dict, expected: int) -> None:
    assert status == expected, body
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def forged(role: str, **claims) -> str:
    payload = {"sub": "mallory", "role": role, "exp": int(time.time()) + 60, **claims}
    return jwt.encode(payload, "not-the-server-key-but-long-enough-0000", algorithm="HS256")


@pytest.fixture
async def call(running: Running) -> dict:
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"])
    return {"id": call_id, "customer": cust["token"]}


async def test_no_token_and_forged_token_get_401(running: Running, call: dict) -> None:
    expired = jwt.encode(
        {"sub": "alice", "role": "agent", "exp": int(time.time()) - 10},
        BASE_ENV["CALLASSIST_SECRET_KEY"],
        algorithm="HS256",
    )
    for method, path in CALL_ROUTES + OTHER_ROUTES:
        url = path.format(id=call["id"])
        for token in (None, "garbage", forged("admin"), expired):
            status, body = await running.api.call(method, url, token, json={})
            assert_error(status, body, 401)
        status, body = await running.api.call(
            method, url, headers={"Authorization": "Basic abc"}, json={}
        )
        assert_error(status, body, 401)


async def test_wrong_role_and_other_call_get_403(running: Running, call: dict) -> None:
    agent = await running.agent("alice")
    other_agent = await running.agent("bob")
    intruder = (await running.customer("Eve", phone="+15550009999"))["token"]

    # Customers cannot list, accept or read agent-only resources.
    for method, path in [
        ("GET", "/api/calls"),
        ("POST", "/api/calls/{id}/accept"),
        ("GET", "/api/calls/{id}/summary"),
        ("GET", "/api/calls/{id}/events"),
        ("GET", "/api/stats"),
    ]:
        status, body = await running.api.call(method, path.format(id=call["id"]), call["customer"])
        assert_error(status, body, 403)
    # Staff cannot open calls; agents cannot see stats.
    status, body = await running.api.call("POST", "/api/calls", agent, json={})
    assert_error(status, body, 403)
    status, body = await running.api.call("GET", "/api/stats", agent)
    assert_error(status, body, 403)

    status, _ = await running.api.call("POST", f"/api/calls/{call['id']}/accept", agent)
    assert status == 200
    # Another customer and another agent are strangers to this call.
    for token in (intruder, other_agent):
        for method, path in [
            ("GET", "/api/calls/{id}"),
            ("POST", "/api/calls/{id}/end"),
            ("GET", "/api/calls/{id}/messages"),
            ("POST", "/api/calls/{id}/offer"),
        ]:
            status, body = await running.api.call(
                method, path.format(id=call["id"]), token, json={"type": "offer", "sdp": "v=0"}
            )
            assert_error(status, body, 403)
    # The call is untouched.
    status, body = await running.api.call("GET", f"/api/calls/{call['id']}", agent)
    assert body["state"] == "active"


async def test_unknown_call_is_404_and_taken_call_409(running: Running, call: dict) -> None:
    alice = await running.agent("alice")
    bob = await running.agent("bob")
    status, body = await running.api.call("GET", "/api/calls/call_doesnotexist", alice)
    assert_error(status, body, 404)
    status, body = await running.api.call("POST", "/api/calls/call_doesnotexist/accept", alice)
    assert_error(status, body, 404)
    assert (await running.api.call("POST", f"/api/calls/{call['id']}/accept", alice))[0] == 200
    status, body = await running.api.call("POST", f"/api/calls/{call['id']}/accept", bob)
    assert_error(status, body, 409)
    # Summary before the end, second open call of a customer: 409.
    status, body = await running.api.call("GET", f"/api/calls/{call['id']}/summary", alice)
    assert_error(status, body, 409)
    status, body = await running.api.call("POST", "/api/calls", call["customer"], json={})
    assert_error(status, body, 409)


async def test_login(running: Running) -> None:
    await running.agent("alice")
    status, body = await running.api.call(
        "POST", "/api/auth/login", json={"username": "alice", "password": "nope"}
    )
    assert_error(status, body, 401)
    status, body = await running.api.call(
        "POST", "/api/auth/login", json={"username": "nobody", "password": "whatever1"}
    )
    assert_error(status, body, 401)
    status, body = await running.api.call(
        "POST", "/api/auth/login", json={"username": "alice", "password": "correct horse battery"}
    )
    assert status == 200 and body["role"] == "agent" and body["username"] == "alice"


async def test_customer_session_links_by_phone_or_email(running: Running) -> None:
    """Each session is its own; the phone or email links its calls to one CRM record,
    which only staff see (unverified)."""
    admin = await running.agent("root", role="admin")
    sessions = [
        await running.customer("Ann", phone="+15550001111"),
        await running.customer("Ann B.", phone="+15550001111"),
        await running.customer("Carl", email="Carl@Example.com"),
        await running.customer("Carl", email="carl@example.com"),
    ]
    assert len({s["customer_id"] for s in sessions}) == 4
    linked = []
    for s in sessions:
        status, call = await running.api.call("GET", f"/api/calls/{await running.new_call(s['token'])}", admin)
        assert status == 200 and call["customer"]["verified"] is False
        linked.append(call["customer"]["customer_id"])
    assert linked[0] == linked[1] and linked[2] == linked[3] and linked[0] != linked[2]
