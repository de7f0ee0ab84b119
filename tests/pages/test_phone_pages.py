"""A phone caller in the browser pages: the agent console and the supervisor show and serve it.

A demo server with Twilio configured; the caller is the Twilio simulator (server/qa_phone.py,
on its own event loop in a thread) calling from a demo customer's number; the agent and
the supervisor are real Chromium pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
from tests.pages.test_pages import (  # noqa: F401 - fixtures
    SPEECH,
    Server,
    _free_port,
    accept,
    browsers,
    connection,
    demo_server,
    log_in,
    open_page,
    shot,
    transcript,
    wait_for_level,
)

pytestmark = pytest.mark.slow

AUTH_TOKEN = "pages-twilio-auth-token"
MARIA = "+12025550101"  # a demo customer: caller ID links the call to her record


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = _free_port()
    with demo_server(
        tmp_path_factory.mktemp("phone-pages-data"), port, "phone-pages-server.log",
        CALLASSIST_TWILIO_AUTH_TOKEN=AUTH_TOKEN, CALLASSIST_PUBLIC_URL=f"http://127.0.0.1:{port}",
    ) as running:
        yield running


def loudest_second(pcm: np.ndarray, rate: int = 8000) -> float:
    """The highest RMS over the whole seconds of `pcm`."""
    seconds = len(pcm) // rate
    if not seconds:
        return 0.0
    chunks = pcm[: seconds * rate].astype(np.float64).reshape(seconds, rate)
    return float(np.sqrt((chunks**2).mean(axis=1)).max())


class CallerThread:
    """The simulated caller on its own event loop (the page tests are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def test_agent_and_supervisor_serve_a_phone_caller(open_page, server: Server) -> None:  # noqa: F811
    thread = CallerThread()
    caller = TwilioCaller(server.url, AUTH_TOKEN, caller=MARIA)
    try:
        thread.run(caller.dial())
        caller.loop_clip = True
        caller.play(wav_to_mulaw_frames(SPEECH / "customer_refund.wav", seconds_of_silence=2.0))

        agent = open_page("agent", "/agent")
        log_in(agent, server.agent)
        waiting = agent.get_by_role("region", name="Waiting calls")
        item = waiting.get_by_role("listitem").filter(has_text="Maria Garcia")
        expect(item).to_contain_text("Phone")
        expect(item).to_contain_text(f"phone {MARIA}")
        accept(agent, "Maria Garcia")
        customer_panel = agent.get_by_role("region", name="Customer")
        expect(customer_panel).to_contain_text("Phone call")
        expect(customer_panel).to_contain_text("78901")  # her CRM record, by caller ID
        # The agent hears the caller, and the caller hears the agent's microphone.
        wait_for_level(agent, "remote-meter")
        expect(transcript(agent)).to_contain_text("78901", timeout=60_000)
        # The agent's fake microphone loops a greeting padded with seconds of silence: wait
        # until the caller has heard a second of it.
        deadline = time.monotonic() + 40
        while loudest_second(caller.heard.pcm()) < 300:
            assert time.monotonic() < deadline, (
                f"the caller heard {len(caller.heard.payloads)} frames, none of them speech"
            )
            time.sleep(0.5)

        thread.run(caller.dtmf("5"))
        expect(agent.get_by_text("The caller pressed 5")).to_be_visible()

        supervisor = open_page("supervisor", "/supervisor")
        log_in(supervisor, server.admin)
        live = supervisor.get_by_role("region", name="Live calls")
        row = live.get_by_role("listitem").filter(has_text="Maria Garcia")
        expect(row).to_contain_text(f"phone {MARIA}")
        row.get_by_role("button", name="Watch call with Maria Garcia").click()
        expect(supervisor.get_by_role("region", name="Customer")).to_contain_text("Phone call")
        shot(agent, "pages-agent-phone-call")
        shot(supervisor, "pages-supervisor-phone-call")

        # The caller hangs up: the call ends for the agent, with its summary.
        thread.run(caller.stop())
        expect(agent.locator('[data-call="state"]')).to_have_text("Ended")
        summary = agent.get_by_role("region", name="Summary")
        expect(summary).to_be_visible()
        expect(summary).not_to_contain_text("Writing the summary", timeout=30_000)
        expect(connection(agent)).not_to_have_text("Connected")
    finally:
        with contextlib.suppress(Exception):
            thread.run(caller.close())
        thread.stop()
