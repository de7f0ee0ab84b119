"""The browser pages, driven in headless Chromium against the real server.

The server runs as a subprocess (`python -m server serve --demo`); each browser's
microphone is a speech fixture (Chromium's fake capture device, which loops the file).
Controls are found by role and accessible name, as API.md's "Pages" section promises.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SPEECH = ROOT / "tests" / "fixtures" / "speech"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 20_000
SPEECH_TIMEOUT_MS = 60_000  # first words through VAD + speech-to-text on two slow cores
expect.set_options(timeout=TIMEOUT_MS)


# -- server -------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    agent: dict[str, str]
    admin: dict[str, str]

    def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def login(self, account: dict[str, str]) -> str:
        status, body = self.api("POST", "/api/auth/login", body=account)
        assert status == 200, body
        return str(body["token"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def demo_server(data_dir: Path, port: int, log_name: str, **extra_env: str) -> Iterator[Server]:
    """`serve --demo` in a subprocess on `port`, until the block ends; its log is kept."""
    # The demo's voice agent answers calls left waiting 20 s; page tests accept theirs first,
    # and a slow machine must not make the voice agent take one (unless a test asks it to).
    env = {
        **os.environ,
        "CALLASSIST_ICE_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        "CALLASSIST_VOICE_AGENT_AFTER_S": "600",
        **extra_env,
    }
    command = [sys.executable, "-m", "server", "serve", "--demo", "--port", str(port), "--data-dir", str(data_dir)]
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # loading the speech model takes a while
        while True:
            assert proc.poll() is None, f"server exited:\n{log_path.read_text()[-3000:]}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, f"server not healthy:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.3)
        with urllib.request.urlopen(url + "/api/config", timeout=5) as response:
            demo = json.loads(response.read())["demo"]
        # The demo passwords are never served: the console and a 0600 file have them.
        assert demo == {"agent": {"username": "agent"}, "admin": {"username": "admin"}}, demo
        accounts = json.loads((data_dir / "demo_credentials.json").read_text())
        assert f"password {accounts['agent']['password']}" in log_path.read_text()
        yield Server(url=url, agent=accounts["agent"], admin=accounts["admin"])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / log_name).write_text(log_path.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Server]:
    # A module that uses this fixture may set SERVER_ENV to run the server otherwise.
    env = getattr(request.module, "SERVER_ENV", {})
    log_name = getattr(request.module, "SERVER_LOG", "pages-server.log")
    with demo_server(tmp_path_factory.mktemp("pages-data"), _free_port(), log_name, **env) as running:
        yield running


# -- browsers -----------------------------------------------------------------------------


def _padded_wav(source: Path, target: Path, before_s: float, after_s: float) -> Path:
    """`source` with silence around it: Chromium loops the file, so this sets the pace."""
    with wave.open(str(source), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(wav.getnframes())
    frame_bytes = params.sampwidth * params.nchannels
    silence = b"\0" * frame_bytes
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(silence * int(before_s * params.framerate) + frames + silence * int(after_s * params.framerate))
    return target


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Browser]]:
    """Two Chromiums: the customer's says the refund line, the agent's a greeting."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    tmp = tmp_path_factory.mktemp("mics")
    mics = {
        "customer": _padded_wav(SPEECH / "customer_refund.wav", tmp / "customer.wav", 1.0, 6.0),
        "agent": _padded_wav(SPEECH / "agent_greeting.wav", tmp / "agent.wav", 4.0, 8.0),
    }
    with sync_playwright() as p:
        launched = {
            role: p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
            )
            for role, wav in mics.items()
        }
        try:
            yield launched
        finally:
            for browser in launched.values():
                browser.close()


@pytest.fixture
def open_page(browsers: dict[str, Browser], server: Server) -> Iterator[Callable[..., Page]]:
    """open_page(role, path) → a page in a fresh context of that role's browser."""
    contexts = []
    errors: list[str] = []

    def open_(role: str, path: str, width: int = 1400, height: int = 900, init_script: str = "") -> Page:
        context = browsers["agent" if role == "supervisor" else role].new_context(
            viewport={"width": width, "height": height}, base_url=server.url
        )
        context.set_default_timeout(TIMEOUT_MS)
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{role}: {error}"))
        # Anything the pages' Content-Security-Policy blocks is a bug in the pages.
        page.on(
            "console",
            lambda msg: errors.append(f"{role}: {msg.text}") if "Content Security Policy" in msg.text else None,
        )
        page.goto(path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- page steps ---------------------------------------------------------------------------


def connection(page: Page) -> Locator:
    return page.locator('[data-call="connection"]')


def transcript(page: Page) -> Locator:
    return page.get_by_role("log", name="Transcript")


def place_call(page: Page, name: str, phone: str) -> None:
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("textbox", name="Phone").fill(phone)
    page.get_by_role("button", name="Call", exact=True).click()
    expect(connection(page)).to_have_text("Connected")


def log_in(page: Page, account: dict[str, str]) -> None:
    page.get_by_role("textbox", name="Username").fill(account["username"])
    page.get_by_role("textbox", name="Password").fill(account["password"])
    page.get_by_role("button", name="Log in").click()


def accept(page: Page, name: str) -> None:
    waiting = page.get_by_role("region", name="Waiting calls")
    waiting.get_by_role("button", name=f"Accept call from {name}").click()
    expect(connection(page)).to_have_text("Connected")


def wait_for_level(page: Page, meter: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """The meter (0..1) shows sound: audio really arrives (or leaves) in the browser."""
    page.wait_for_function(
        "sel => document.querySelector(sel).value > 0.2", arg=f'[data-call="{meter}"]', timeout=timeout_ms
    )


def seqs_shown(page: Page) -> list[int]:
    return [int(s) for s in transcript(page).locator("li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")]


def call_id_of(server: Server, token: str, customer_name: str, state: str) -> str:
    status, body = server.api("GET", f"/api/calls?state={state}", token)
    assert status == 200, body
    ids = [c["call_id"] for c in body["calls"] if c["customer"]["name"] == customer_name]
    assert len(ids) == 1, body
    return str(ids[0])


# -- tests --------------------------------------------------------------------------------


def test_landing_page_links_to_the_pages_and_shows_demo_accounts(open_page, server: Server) -> None:
    page = open_page("customer", "/", width=1100, height=800)
    nav = page.get_by_role("navigation", name="Pages")
    for name, href in (("Customer", "/customer"), ("Agent console", "/agent"), ("Supervisor", "/supervisor")):
        expect(nav.get_by_role("link", name=name)).to_have_attribute("href", href)
    demo = page.get_by_role("region", name="Demo accounts")
    expect(demo).to_contain_text(server.admin["username"])
    expect(demo).to_contain_text("password as printed by the server")
    expect(demo).not_to_contain_text(server.agent["password"])
    shot(page, "pages-landing")


def test_failures_show_a_clear_message(open_page, server: Server) -> None:
    page = open_page("agent", "/agent")
    page.get_by_role("textbox", name="Username").fill(server.agent["username"])
    page.get_by_role("textbox", name="Password").fill("not the password")
    page.get_by_role("textbox", name="Password").press("Enter")  # the keyboard submits
    status, body = server.api("POST", "/api/auth/login", body={"username": server.agent["username"], "password": "x"})
    assert status == 401
    expect(page.get_by_role("alert")).to_have_text(body["error"]["message"])
    expect(page.get_by_role("region", name="Waiting calls")).to_be_hidden()

    page.route("**/api/auth/login", lambda route: route.abort())
    log_in(page, server.agent)
    expect(page.get_by_role("alert")).to_contain_text("server cannot be reached")

    supervisor = open_page("supervisor", "/supervisor")
    log_in(supervisor, server.agent)  # an agent is not an admin
    expect(supervisor.get_by_role("alert")).to_contain_text("needs an admin account")
    expect(supervisor.get_by_role("region", name="Live calls")).to_be_hidden()

    customer = open_page("customer", "/customer")
    customer.get_by_role("textbox", name="Name", exact=True).fill("Cy")
    customer.get_by_role("textbox", name="Phone").fill("not a phone")
    customer.get_by_role("button", name="Call", exact=True).click()
    expect(customer.get_by_role("alert")).to_have_text("phone must be a phone number")
    expect(customer.get_by_role("button", name="Call", exact=True)).to_be_enabled()

    # The server cannot connect the call at first: the page says why, retries, recovers.
    failing = {"left": 1}

    def offer(route: Route) -> None:
        if failing["left"]:
            failing["left"] -= 1
            error = {"code": "ice_gathering_failed", "message": "the server gathered no ICE candidates"}
            route.fulfill(status=503, json={"error": error})
        else:
            route.continue_()

    customer.route("**/api/calls/*/offer", offer)
    customer.get_by_role("textbox", name="Phone").fill("+1 555 010 4444")
    customer.get_by_role("button", name="Call", exact=True).click()
    expect(customer.get_by_role("alert")).to_contain_text("the server gathered no ICE candidates")
    expect(customer.get_by_role("alert")).to_contain_text("Retrying")
    expect(connection(customer)).to_have_text("Connected")
    expect(customer.locator("[role=alert]")).to_be_empty()  # the error is gone
    customer.get_by_role("button", name="Hang up").click()
    expect(customer.locator('[data-call="state"]')).to_have_text("Ended")

    # A refused microphone (the browser's answer when the user says no): no call is
    # placed, and the page says what to do.
    refused = open_page(
        "customer",
        "/customer",
        init_script="navigator.mediaDevices.getUserMedia = async () => {"
        " throw new DOMException('Permission denied', 'NotAllowedError'); };",
    )
    refused.get_by_role("textbox", name="Name", exact=True).fill("Cy Refused")
    refused.get_by_role("button", name="Call", exact=True).click()
    expect(refused.get_by_role("alert")).to_contain_text("Microphone access was denied")
    expect(refused.get_by_role("button", name="Call", exact=True)).to_be_enabled()
    admin = server.login(server.admin)
    waiting = server.api("GET", "/api/calls?state=waiting", admin)[1]["calls"]
    assert not [c for c in waiting if c["customer"]["name"].startswith("Cy")], waiting
    shot(refused, "pages-customer-mic-denied")


def test_call_connects_survives_reloads_is_watched_and_ends(open_page, server: Server) -> None:
    admin = server.login(server.admin)
    # Someone else is already waiting: the page's caller must be listed after them.
    status, early = server.api("POST", "/api/auth/customer", body={"name": "Early Bird", "phone": "+15550000001"})
    assert status == 200
    assert server.api("POST", "/api/calls", early["token"], {"reason": "first in line"})[0] == 201

    customer = open_page("customer", "/customer", width=1000)
    place_call(customer, "Ann Page", "+1 555 010 2030")  # connects while waiting
    expect(customer.locator('[data-call="state"]')).to_have_text("Waiting for an agent…")

    agent = open_page("agent", "/agent")
    log_in(agent, server.agent)
    waiting = agent.get_by_role("region", name="Waiting calls")
    expect(waiting.get_by_role("listitem")).to_have_count(2)
    expect(waiting.get_by_role("listitem").last).to_contain_text("Ann Page")  # newest last
    expect(waiting.get_by_role("listitem").first).to_contain_text("Early Bird")
    accept(agent, "Ann Page")
    expect(customer.locator('[data-call="state"]')).to_have_text("Talking with an agent")
    expect(agent.get_by_role("region", name="Customer")).to_contain_text("+1 555 010 2030")
    expect(waiting.get_by_role("listitem")).to_have_count(1)

    # Each side hears the other: the remote level meters move (the mics are speech files).
    wait_for_level(agent, "remote-meter")
    wait_for_level(customer, "remote-meter")
    wait_for_level(customer, "mic-meter")
    # The customer never gets suggestions.
    expect(customer.get_by_role("region", name="Suggestions")).to_have_count(0)
    shot(customer, "pages-customer-call")
    shot(agent, "pages-agent-call")

    call_id = call_id_of(server, admin, "Ann Page", "active")
    supervisor = open_page("supervisor", "/supervisor")
    log_in(supervisor, server.admin)
    live = supervisor.get_by_role("region", name="Live calls")
    live.get_by_role("button", name="Watch call with Ann Page").click()
    expect(transcript(supervisor)).to_contain_text("Agent joined the call")
    expect(connection(supervisor)).to_have_text("Live")
    expect(supervisor.get_by_role("region", name="Statistics")).to_contain_text("Active")
    expect(supervisor.get_by_role("region", name="Suggestions")).to_be_visible()
    shot(supervisor, "pages-supervisor-watch")

    # Reloads keep the session and the call: a new offer, the transcript back once.
    before = seqs_shown(agent)
    assert before and len(before) == len(set(before)), before
    agent.reload()
    expect(connection(agent)).to_have_text("Connected")
    wait_for_level(agent, "remote-meter")
    expect(transcript(agent).locator(f'li[data-seq="{max(before)}"]')).to_have_count(1)
    after = seqs_shown(agent)
    assert len(after) == len(set(after)) and set(before) <= set(after), (before, after)
    expect(transcript(agent).locator('li[data-state="active"]')).to_have_count(1)
    customer.reload()
    expect(connection(customer)).to_have_text("Connected")
    expect(customer.locator('[data-call="state"]')).to_have_text("Talking with an agent")
    for state in ("waiting", "active"):
        expect(transcript(customer).locator(f'li[data-state="{state}"]')).to_have_count(1)
    seqs = seqs_shown(customer)
    assert len(seqs) == len(set(seqs)), seqs
    wait_for_level(agent, "remote-meter")  # the agent hears the customer's new connection

    agent.get_by_role("button", name="End call").click()
    summary = agent.get_by_role("region", name="Summary")
    expect(summary).to_be_visible()
    expect(agent.locator('[data-call="state"]')).to_have_text("Ended")
    expect(customer.locator('[data-call="state"]')).to_have_text("Ended")
    expect(customer.get_by_role("button", name="Call", exact=True)).to_be_enabled()
    expect(transcript(supervisor)).to_contain_text("Call ended")
    expect(supervisor.get_by_role("region", name="Summary")).to_be_visible()
    expect(live.get_by_role("button", name="Watch call with Ann Page")).to_have_count(0)
    status, body = server.api("GET", f"/api/calls/{call_id}", admin)
    assert body["state"] == "ended" and body["agent"] == server.agent["username"]
    expect(summary).not_to_contain_text("Writing the summary", timeout=30_000)
    shot(agent, "pages-agent-ended")
    shot(customer, "pages-customer-ended")
    server.api("POST", f"/api/calls/{call_id_of(server, admin, 'Early Bird', 'waiting')}/end", admin)


def test_lists_follow_calls_live_without_polling(open_page, server: Server) -> None:
    """Waiting calls and Live calls come from the list stream (GET /api/calls/events): a call
    created, accepted and ended through the API shows and goes on both pages while neither
    page asks GET /api/calls (its fallback while the stream is down)."""
    agent_token, admin = server.login(server.agent), server.login(server.admin)
    agent = open_page("agent", "/agent")
    supervisor = open_page("supervisor", "/supervisor")
    list_reads: list[str] = []
    for page in (agent, supervisor):
        page.on("request", lambda r: list_reads.append(r.url) if "/api/calls?" in r.url else None)
    log_in(agent, server.agent)
    log_in(supervisor, server.admin)
    waiting = agent.get_by_role("region", name="Waiting calls")
    live = supervisor.get_by_role("region", name="Live calls")
    expect(waiting).to_be_visible()
    expect(live).to_be_visible()

    status, caller = server.api("POST", "/api/auth/customer", body={"name": "Lee Stream"})
    assert status == 200
    status, body = server.api("POST", "/api/calls", caller["token"], {"reason": "live list"})
    assert status == 201
    call_id = body["call_id"]
    accept_button = waiting.get_by_role("button", name="Accept call from Lee Stream")
    expect(accept_button).to_be_visible(timeout=5000)
    expect(waiting.locator(f'[data-call-id="{call_id}"]')).to_contain_text("live list")

    assert server.api("POST", f"/api/calls/{call_id}/accept", agent_token)[0] == 200
    expect(accept_button).to_have_count(0, timeout=5000)
    watch = live.get_by_role("button", name="Watch call with Lee Stream")
    expect(watch).to_be_visible(timeout=5000)

    assert server.api("POST", f"/api/calls/{call_id}/end", admin)[0] == 200
    expect(watch).to_have_count(0, timeout=5000)
    assert list_reads == [], list_reads


def test_live_transcript_suggestions_feedback_and_summary(open_page, server: Server) -> None:
    admin = server.login(server.admin)
    customer = open_page("customer", "/customer", width=1000)
    # The phone of the demo customer who owns order 78901 (server/assist/demo.py).
    caller = "Maria Garcia"
    place_call(customer, caller, "+12025550101")
    agent = open_page("agent", "/agent")
    log_in(agent, server.agent)
    accept(agent, caller)
    call_id = call_id_of(server, admin, caller, "active")
    profile = agent.get_by_role("region", name="Customer")
    expect(profile).to_contain_text("Order 78901")

    # The phone is a claim: the record is marked unverified and the first suggestion is to
    # verify; the agent checks the caller and presses Verify.
    identity = profile.locator("#identity-state")
    expect(identity).to_have_text("Not verified")
    expect(profile).to_contain_text(f"The caller said: {caller}, +12025550101")
    first_suggestion = agent.get_by_role("region", name="Suggestions").get_by_role("listitem").first
    expect(first_suggestion).to_contain_text("Verify the caller's identity")
    profile.get_by_role("button", name="Verify").click()
    expect(identity).to_have_text("Verified")
    expect(profile.get_by_role("button", name="Verify")).to_be_hidden()
    status, body = server.api("GET", f"/api/calls/{call_id}", admin)
    assert body["customer"]["verified"] is True and body["customer"]["name"] == caller

    # The customer's words reach the agent's transcript, interim text settling into finals.
    words = re.compile(r"refund|order|broken", re.I)
    said = transcript(agent).locator("li.speaker-customer:not(.interim)")
    expect(said.filter(has_text=words).first).to_be_visible(timeout=SPEECH_TIMEOUT_MS)
    expect(transcript(customer).locator("li.speaker-customer").filter(has_text=words).first).to_be_visible()
    # ... and both speakers' words reach both sides.
    expect(transcript(customer).locator("li.speaker-agent:not(.interim)").first).to_be_visible(timeout=SPEECH_TIMEOUT_MS)

    suggestions = agent.get_by_role("region", name="Suggestions")
    relevant = suggestions.get_by_role("listitem").filter(has_text=re.compile(r"78901|refund", re.I))
    expect(relevant.first).to_be_visible(timeout=SPEECH_TIMEOUT_MS)
    expect(relevant.first).to_contain_text("Confidence")
    expect(customer.get_by_role("region", name="Suggestions")).to_have_count(0)
    expect(customer.get_by_text(re.compile("Confidence"))).to_have_count(0)

    supervisor = open_page("supervisor", "/supervisor")
    log_in(supervisor, server.admin)
    supervisor.get_by_role("region", name="Live calls").get_by_role("button", name=f"Watch call with {caller}").click()
    expect(transcript(supervisor).locator("li.speaker-customer").filter(has_text=words).first).to_be_visible()
    expect(supervisor.get_by_role("region", name="Suggestions").get_by_role("listitem").first).to_be_visible()
    shot(supervisor, "pages-supervisor-assist")

    # A reload restores the transcript from /messages with no segment twice.
    status, body = server.api("GET", f"/api/calls/{call_id}/messages", admin)
    finals = {m["segment_id"] for m in body["messages"] if m["type"] == "transcript"}
    agent.reload()
    expect(connection(agent)).to_have_text("Connected")
    expect(said.first).to_be_visible()
    shown = transcript(agent).locator("li[data-segment-id]:not(.interim)").evaluate_all(
        "els => els.map(e => e.dataset.segmentId)"
    )
    assert len(shown) == len(set(shown)) and finals <= set(shown), (finals, shown)
    seqs = seqs_shown(agent)
    assert len(seqs) == len(set(seqs)), seqs

    # Use and Dismiss go back to the server as suggestion_feedback.
    first = suggestions.get_by_role("listitem").filter(has=agent.get_by_role("button", name="Use")).first
    expect(first).to_be_visible(timeout=SPEECH_TIMEOUT_MS)
    first.get_by_role("button", name="Use").click()
    expect(suggestions.get_by_role("listitem").filter(has_text="Used").first).to_be_visible()
    dismissible = suggestions.get_by_role("listitem").filter(has=agent.get_by_role("button", name="Dismiss"))
    expect(dismissible.first).to_be_visible(timeout=SPEECH_TIMEOUT_MS)
    dismissible.first.get_by_role("button", name="Dismiss").click()
    expect(suggestions.get_by_role("listitem").filter(has_text="Dismissed").first).to_be_visible()
    deadline = time.monotonic() + 10
    while True:
        status, body = server.api("GET", f"/api/calls/{call_id}/messages", admin)
        actions = {m["action"] for m in body["messages"] if m["type"] == "suggestion_feedback"}
        if actions >= {"used", "dismissed"} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert actions >= {"used", "dismissed"}, body["messages"]
    shot(agent, "pages-agent-assist")
    shot(customer, "pages-customer-assist")

    agent.get_by_role("button", name="End call").click()
    summary = agent.get_by_role("region", name="Summary")
    expect(summary.locator(".summary-text")).to_have_text(re.compile(r"\w{3,}"), timeout=30_000)
    expect(summary).not_to_contain_text("No summary")
    expect(supervisor.get_by_role("region", name="Summary").locator(".summary-text")).to_have_text(re.compile(r"\w{3,}"))
    shot(agent, "pages-agent-summary")
