"""The voice agent's wording rules: backchannels, what was heard of a cut reply, acts as the
team's."""

from __future__ import annotations

import pytest

from server.voice_agent import as_team, heard_text, is_backchannel


@pytest.mark.parametrize(
    "text",
    ["Mm-hmm.", "mm hmm", "Okay.", "OK", "Right.", "Yeah.", "Uh-huh.", "I see.", "Got it."]
    # How the local Whisper spelled the "Mm-hmm." fixture at 3 concurrent calls.
    + ["MMM.", "MMO.", "mmm", "Mhm.", "Hmm.", "Uhm", "Ahh."],
)
def test_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    [
        "Wait.",
        "No, that's wrong.",
        "Okay, but I want a refund.",
        "Stop",
        "",
        "Yes please cancel it",
        "Mom.",
        "Home.",
        "Humm, my order",
    ],
)
def test_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


def test_heard_text_keeps_whole_sentences_and_the_heard_part_of_the_cut_one() -> None:
    sentences = [("Hello there.", 0, 1000), ("I can see order 78901 on your account.", 1000, 3000)]
    assert heard_text(sentences, 0) == ""
    assert heard_text(sentences, 999) == "Hello"
    assert heard_text(sentences, 1000) == "Hello there."
    assert heard_text(sentences, 2000) == "Hello there. I can see order"
    assert heard_text(sentences, 5000) == "Hello there. I can see order 78901 on your account."
    # Words take as long as they are to say: the number is five of them.
    assert heard_text(sentences, 1000 + 1449) == "Hello there. I can see order 78901"  # 42/58
    assert heard_text(sentences, 1000 + 1448) == "Hello there. I can see order"


def test_acts_are_the_teams_lookups_stay_first_person() -> None:
    assert as_team("so I can refund the full $149.00.") == "so we can refund the full $149.00."
    assert as_team("I'll email you a prepaid label.") == "We'll email you a prepaid label."
    assert as_team("I will cancel it now.") == "We will cancel it now."
    assert as_team("I can see order 78901.") == "I can see order 78901."
    assert as_team("I can check that.") == "I can check that."
