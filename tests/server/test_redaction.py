"""PII redaction of transcripts and events (server/redaction.py), without a server."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from media.recording import SilencedRanges
from server.redaction import CallRedactor, RedactingLogFilter, luhn_valid, redact_text


def final(text: str, speaker: str = "customer", seg: str = "s", start: int = 0, end: int = 1000) -> dict:
    return {"type": "transcript", "speaker": speaker, "segment_id": seg, "text": text,
            "final": True, "start_ms": start, "end_ms": end}


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("My card is 4242 4242 4242 4242.", "My card is [card ending 4242]."),
        ("four two four two four two four two four two four two four two four two", "[card ending 4242]"),
        ("it's 5555-5555-5555-4444", "it's [card ending 4444]"),
        ("the security code is 737", "the security code is [security code]"),
        ("CVV one two three", "CVV [security code]"),
        ("my social is 123-45-6789", "my social is [SSN redacted]"),
        ("social security number one two three four five six seven eight nine", "social security number [SSN redacted]"),
        ("My card number is 4,2424,2424,2424,2424,2424,2422", "My card number is [card number]"),
    ],
)
def test_pii_is_replaced(said: str, expected: str) -> None:
    assert redact_text(said) == expected


@pytest.mark.parametrize(
    "said",
    [
        "order 78901 arrived 12 days ago",
        "I paid $149.00 for order seven eight nine oh one",
        "call me at 202 555 0101 or +1 202 555 0102",
        "my card ending in 4242 was charged 1249 dollars twice",
        "the tracking number is 1Z999AA10123456784",
        "it shipped on 2026-03-14 with UPS",
    ],
)
def test_order_numbers_amounts_phones_and_dates_stay(said: str) -> None:
    assert redact_text(said) == said


def test_luhn() -> None:
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424241")


def test_a_card_number_split_over_two_utterances_is_redacted_in_both() -> None:
    r = CallRedactor()
    first = r.transcript(final("OK, it's 4242 4242", seg="a", start=1000, end=2500))
    assert first.event["text"] == "OK, it's 4242 4242"  # not card data on its own
    r.published({**first.event, "seq": 7}, "OK, it's 4242 4242")
    second = r.transcript(final("4242 4242.", seg="b", start=3000, end=4200))
    assert second.event["text"] == "[card ending 4242]."
    assert second.revised == {**first.event, "seq": 7, "text": "OK, it's [card number]"}
    assert sorted(second.silence) == [("customer", 1000, 2500), ("customer", 3000, 4200)]


def test_digits_after_the_agent_asks_for_the_card_or_the_code() -> None:
    r = CallRedactor()
    r.transcript(final("Could you read me the card number?", speaker="agent"))
    assert r.transcript(final("5, 5, 5, 5, 5.")).event["text"] == "[card number]."
    assert r.transcript(final("555, 444.")).event["text"] == "[card number]."
    r.transcript(final("And the three digits on the back?", speaker="agent"))
    assert r.transcript(final("It's 123.")).event["text"] == "It's [security code]."
    # The context closes: an order number later is an order number.
    for text in ("thanks", "great", "ok"):
        r.transcript(final(text))
    assert r.transcript(final("also order 78901 is late")).event["text"] == "also order 78901 is late"


def test_a_redactor_seeded_from_published_transcripts_goes_on_where_the_last_one_was() -> None:
    """A call that moved to this process: the published (redacted) finals rebuild what spans
    utterances; the digits a label keeps ("ending 4242") start no number of their own."""
    r = CallRedactor()
    r.seed([{**final("OK, it's 4242 4242", seg="a", start=1000, end=2500), "seq": 7}])
    second = r.transcript(final("4242 4242.", seg="b", start=3000, end=4200))
    assert second.event["text"] == "[card ending 4242]."
    assert second.revised == {**final("OK, it's [card number]", seg="a", start=1000, end=2500), "seq": 7}

    r = CallRedactor()
    r.seed([{**final("Thanks, it's [card ending 4242]", seg="a"), "seq": 3}])
    after = r.transcript(final("4242 4242 4242 and my name is Ann", seg="b"))
    assert after.revised is None  # the stored event keeps its label
    assert after.event["text"] == "[card number] and my name is Ann"  # still card context
    assert r.redacted_spans == 1  # what the seed read again is not counted twice

    r = CallRedactor()
    r.seed([final("Could you read me the card number?", speaker="agent")])
    assert r.transcript(final("5, 5, 5, 5, 5.")).event["text"] == "[card number]."


def test_interims_are_redacted_too_and_off_means_off() -> None:
    interim = {**final("my card is 4242424242424242"), "final": False}
    assert CallRedactor().transcript(interim).event["text"] == "my card is [card ending 4242]"
    assert CallRedactor(enabled=False).transcript(interim).event["text"] == "my card is 4242424242424242"


def test_suggestions_and_summaries_are_scrubbed() -> None:
    event = {"type": "summary", "summary": {"text": "Card 4242424242424242 given", "items": ["ssn 123-45-6789"]}}
    assert CallRedactor().scrub(event)["summary"] == {
        "text": "Card [card ending 4242] given", "items": ["ssn [SSN redacted]"]
    }


def test_log_filter() -> None:
    import logging

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "heard %s", ("4242 4242 4242 4242",), None)
    RedactingLogFilter().filter(record)
    assert record.getMessage() == "heard [card ending 4242]"


def test_silenced_ranges_zero_written_and_future_audio(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    ranges = SilencedRanges()
    one_s = b"\x01\x02" * 16000
    with wave.open(str(path), "wb") as rec:
        rec.setnchannels(1)
        rec.setsampwidth(2)
        rec.setframerate(16000)
        ranges.write(rec, 0, one_s)  # 0..1 s on disk
        ranges.add(path, origin_ms=500, start_ms=1000, end_ms=1750)  # 0.5..1.25 s of the file
        ranges.write(rec, len(one_s), one_s)
    with wave.open(str(path), "rb") as rec:
        pcm = rec.readframes(rec.getnframes())
    half, end = 16000 * 2 // 2, int(16000 * 1.25) * 2
    assert pcm[:half] == one_s[:half]
    assert pcm[half:end] == bytes(end - half)
    assert pcm[end:] == (one_s + one_s)[end:]
