from datetime import date

import pytest

from server.assist.entities import Amount, Entities, extract_entities
from server.assist.spoken import normalize_numbers

TODAY = date(2025, 5, 20)  # a Tuesday


@pytest.mark.parametrize(
    "said",
    [
        "I want a refund for order seven eight nine zero one",
        "order number 7 8 9 0 1",
        "it's order 78901.",
        "the order is seventy eight nine oh one",
        "order 7, 8, 9, 0, 1 please",
        "order 7-8-9-0-1",
        "my order, number seven eight nine oh one, never came",
        "order #78901",
        "it was order 78,901",
    ],
)
def test_order_number_in_any_spoken_form(said: str) -> None:
    assert extract_entities(said, today=TODAY).order_numbers == ("78901",)


def test_double_and_triple_digits() -> None:
    assert normalize_numbers("double five triple two one") == "55 2221".replace(" ", "")


def test_not_an_order_number() -> None:
    assert extract_entities("my zip code is 90210", today=TODAY).order_numbers == ()
    assert extract_entities("it cost $12345", today=TODAY).order_numbers == ()
    assert extract_entities("call me on 202 555 0123", today=TODAY).order_numbers == ()
    assert extract_entities("oh no, it broke after one day", today=TODAY).order_numbers == ()


def test_amounts() -> None:
    found = extract_entities(
        "I paid $149.99, not a hundred and forty nine dollars", today=TODAY
    ).amounts
    assert [a.value for a in found] == [149.99, 149.0]
    assert extract_entities("it was 20 dollars and 50 cents", today=TODAY).amounts == (
        Amount(20.5, "USD", "20 dollars and 50 cents"),
    )
    assert extract_entities("about €20", today=TODAY).amounts[0].currency == "EUR"
    assert extract_entities("$1,249.00 total", today=TODAY).amounts[0].value == 1249.0


def test_emails_written_and_spoken() -> None:
    assert extract_entities("it's maria.garcia@example.com", today=TODAY).emails == (
        "maria.garcia@example.com",
    )
    assert extract_entities(
        "my email is john dot smith at example dot com", today=TODAY
    ).emails == ("john.smith@example.com",)
    assert extract_entities("try j underscore doe at mail dot co dot uk", today=TODAY).emails == (
        "j_doe@mail.co.uk",
    )
    assert extract_entities("I was at home dot", today=TODAY).emails == ()


def test_phones() -> None:
    assert extract_entities("call (202) 555-0123", today=TODAY).phones == ("+12025550123",)
    spoken = "my number is two oh two, five five five, oh one two three"
    assert extract_entities(spoken, today=TODAY).phones == ("+12025550123",)
    assert extract_entities("+44 20 7946 0958", today=TODAY).phones == ("+442079460958",)


@pytest.mark.parametrize(
    ("said", "iso"),
    [
        ("it arrived on March third", "2025-03-03"),
        ("delivered the 14th of february", "2025-02-14"),
        ("on 2024-12-24", "2024-12-24"),
        ("on 3/14", "2025-03-14"),
        ("yesterday", "2025-05-19"),
        ("the day before yesterday", "2025-05-18"),
        ("two weeks ago", "2025-05-06"),
        ("last Monday", "2025-05-19"),
        ("on Friday", "2025-05-16"),
        ("in December", None),
        ("on december twenty fifth", "2024-12-25"),
    ],
)
def test_dates(said: str, iso: str | None) -> None:
    found = extract_entities(said, today=TODAY).dates
    assert [d.date for d in found] == ([iso] if iso else [])


def test_merge_keeps_latest_last() -> None:
    first = Entities(order_numbers=("11111", "78901"))
    merged = first.merge(Entities(order_numbers=("11111",), emails=("a@b.co",)))
    assert merged.order_numbers == ("78901", "11111")
    assert merged.emails == ("a@b.co",)
    assert not Entities()
