"""The pages with the voice agent in Chromium: the caller sees that an automated assistant
is answering and its words apart from a person's; agents see it in Waiting calls, then take
the call over with the handover summary."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.pages.test_pages import (  # noqa: F401 - fixtures
    SPEECH_TIMEOUT_MS,
    Server,
    accept,
    browsers,
    connection,
    log_in,
    open_page,
    place_call,
    server,
    shot,
    transcript,
)

pytestmark = pytest.mark.slow

SERVER_ENV = {"CALLASSIST_VOICE_AGENT": "always"}
SERVER_LOG = "voice-agent-pages-server.log"


def test_the_voice_agent_answers_on_the_pages_and_hands_over(open_page, server: Server) -> None:  # noqa: F811
    customer = open_page("customer", "/customer", width=1000)
    place_call(customer, "Vera Voice", "+12025550101")
    state = customer.locator('[data-call="state"]')
    expect(state).to_have_text("An automated assistant is answering until a person joins")
    said = transcript(customer).locator("li.speaker-voice_agent")
    # It greets; the caller's microphone (the refund line, looped) talks over it, and it
    # answers the request about the order the caller named, never with the linked record's
    # name (the number is a claim, not a proof: the record is Maria's).
    answer = said.filter(has_text="78901").first
    expect(answer).to_be_visible(timeout=SPEECH_TIMEOUT_MS)
    expect(answer.locator(".who")).to_have_text("Assistant (automated)")
    expect(transcript(customer)).not_to_contain_text("Maria")
    shot(customer, "pages-customer-voice-agent")

    # A supervisor can watch the voice agent at work.
    supervisor = open_page("supervisor", "/supervisor")
    log_in(supervisor, server.admin)
    live = supervisor.get_by_role("region", name="Live calls")
    live.get_by_role("button", name="Watch call with Maria Garcia, agent voice agent").click()
    watched = transcript(supervisor).locator("li.speaker-voice_agent")
    expect(watched.first.locator(".who")).to_have_text("Voice agent (AI)")
    shot(supervisor, "pages-supervisor-voice-agent")

    agent = open_page("agent", "/agent")
    log_in(agent, server.agent)
    waiting = agent.get_by_role("region", name="Waiting calls")
    # Agents see the linked record (marked unverified elsewhere): Maria's.
    item = waiting.get_by_role("listitem").filter(has_text="Maria Garcia")
    expect(item).to_contain_text("Voice agent")
    expect(item).to_contain_text("talking with the voice agent")
    accept(agent, "Maria Garcia")
    expect(state).to_have_text("Talking with an agent")
    log = transcript(agent)
    expect(log.locator("li.speaker-voice_agent").first.locator(".who")).to_have_text(
        "Voice agent (AI)"
    )
    expect(log.locator('li[data-kind="handover"]')).to_contain_text(
        "The caller talked with the voice agent"
    )
    expect(log).to_contain_text("the voice agent handed over")
    expect(connection(agent)).to_have_text("Connected")
    shot(agent, "pages-agent-handover")
    agent.get_by_role("button", name="End call").click()
    expect(state).to_have_text("Ended")
    expect(transcript(supervisor)).to_contain_text("Call ended")
