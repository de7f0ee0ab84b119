"""The defects of issue 13, each through the real assistant over the demo database.

A scripted call is played turn by turn into a `CallAssistant` (local engine, real
knowledge base), as bench/scenarios.py does; each test states what the agent must see.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench.scenarios import load_scenarios, run_scenarios
from server.config import AssistSettings
from server.store import Store

SETTINGS = AssistSettings()
# Tests do not time the engine (the benchmark does): a suggestion within 5 s counts.
WINDOW_S = 5.0


def call(name: str, caller: dict[str, Any], *turns: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "caller": caller, "turns": list(turns)}


async def play(demo_store: Store, scenario: dict[str, Any]) -> list[Any]:
    report = await run_scenarios(
        [scenario], store=demo_store, coverage_window_s=WINDOW_S, turn_gap_s=0.05
    )
    return report.turns


def texts(turn: Any) -> str:
    return "\n".join(s["text"] for s in turn.suggestions)


NO_RECORDS = {"name": "Sam Taylor"}
EIGHT_TURNS = [
    {"say": "Hi, I'm calling about my order five five five one two."},
    {"say": "Actually my parcel is late, it was supposed to come on Monday."},
    {"say": "Also my blender broke after two weeks."},
    {"say": "And I want to cancel my subscription."},
    {"say": "I also need to change my address."},
    {"say": "I moved last month.", "quick": True},
    {"say": "Can you update it for my future orders too?"},
    {"say": "Thanks, that's everything."},
]


async def test_an_unknown_order_number_stays_with_its_topic(demo_store: Store) -> None:
    turns = await play(demo_store, call("stale", NO_RECORDS, *EIGHT_TURNS))
    assert "55512" in texts(turns[0])  # "I couldn't find an order 55512 …"
    for later in turns[1:]:
        assert "55512" not in texts(later), (later.said, texts(later))


async def test_a_subscription_is_not_an_order(demo_store: Store) -> None:
    turns = await play(demo_store, call("sub", {"phone": "+12025550108"}, {"say": "I want to cancel my subscription, please."}))
    said = texts(turns[0])
    assert "subscription" in said
    assert not re.search(r"order number|order \d{5}|Cancelling an order", said), said


async def test_every_asking_or_closing_turn_gets_a_suggestion(demo_store: Store) -> None:
    turns = await play(demo_store, call("coverage", NO_RECORDS, *EIGHT_TURNS))
    for turn in turns:
        if turn.said != "I moved last month.":
            assert turn.suggestions, f"no suggestion for {turn.said!r}"
    address, follow_up, closing = turns[4], turns[6], turns[7]
    assert "address" in texts(address).lower()
    assert "address" in texts(follow_up).lower()
    assert "anything else" in texts(closing).lower() and "survey" in texts(closing).lower()


async def test_a_follow_up_right_after_the_first_half_is_answered(demo_store: Store) -> None:
    turns = await play(
        demo_store,
        call(
            "follow-up",
            {"phone": "+12025550101"},
            {"say": "Hi, I'd like a refund for order seven eight nine oh one please.", "quick": True},
            {"say": "How long will it take to show up on my card?"},
        ),
    )
    assert "78901" in texts(turns[0])
    assert turns[1].suggestions and "5–7 business days" in texts(turns[1])


async def test_platinum_customers_hear_their_sixty_day_window(demo_store: Store) -> None:
    # Ahmed Hassan is Platinum; order 77310 was delivered 45 days ago.
    turns = await play(
        demo_store,
        call(
            "platinum",
            {"phone": "+12025550106"},
            {"say": "I'd like a refund for the speaker, order seven seven three one zero."},
            {"say": "Also, the speaker from order 77310 stopped working."},
        ),
    )
    refund, warranty = texts(turns[0]), texts(turns[1])
    assert "within your 60-day return window" in refund and "30-day" not in refund.replace("Return policy (30 days)", "")
    assert "60-day return window" in warranty and "refund" in warranty


async def test_a_standard_customer_past_thirty_days_is_told_so(demo_store: Store) -> None:
    # Maria (Gold, 30 days): phone case 78455 delivered 70 days ago.
    turns = await play(demo_store, call("standard", {"phone": "+12025550101"}, {"say": "I want a refund for order 78455."}))
    assert re.search(r"past (?:your|our) 30-day return window", texts(turns[0]))


async def test_a_card_number_is_noted_not_repeated(demo_store: Store) -> None:
    turns = await play(
        demo_store,
        call(
            "card",
            {"phone": "+12025550105"},
            {"agent": "Could you read me the card number?"},
            {"say": "It's four two four two, four two four two, four two four two, four two four two."},
        ),
    )
    assert turns[0].heard == "It's [card ending 4242]."
    said = texts(turns[0])
    assert "ending 4242" in said and "Never repeat it back" in said
    assert "4242 4242" not in said and "42424242" not in said.replace(" ", "")


@pytest.mark.slow
async def test_the_scenario_suite_meets_its_aims(demo_store: Store) -> None:
    report = await run_scenarios(
        load_scenarios(), store=demo_store, coverage_window_s=WINDOW_S, turn_gap_s=0.05
    )
    f = report.figures()
    failing = [(t.scenario, t.index, t.problems) for t in report.turns if t.failed]
    assert f["conversations"] >= 40
    assert f["coverage"] >= 0.95, failing
    assert f["relevance"] >= 0.90, failing
    assert f["stale"] == 0, failing
    assert f["redaction_recall"] == 1.0, failing
    assert f["false_redactions"] == 0, failing
