import pytest

from server.assist import topics
from server.assist.sentiment import score_text, trend


def test_neutral_request_is_neutral() -> None:
    assert score_text("I'd like to check the status of my order").label == "neutral"


def test_negation_flips_and_softens() -> None:
    happy = score_text("I am happy with it").score
    not_happy = score_text("I am not happy with it").score
    assert happy > 0.25 and not_happy < 0 and abs(not_happy) < happy
    assert score_text("it's not bad actually").score > 0


def test_intensifiers_and_dampeners() -> None:
    base = score_text("I am disappointed").score
    assert score_text("I am extremely disappointed").score < base
    assert score_text("I am slightly disappointed").score > base


def test_but_clause_dominates() -> None:
    assert score_text("the delivery was terrible but you fixed it, thanks").label == "positive"
    assert score_text("the product is good but the service was awful").label == "negative"


def test_angry_customer() -> None:
    score = score_text("This is RIDICULOUS! Third time I call and nobody helps me!")
    assert score.angry and score.label == "negative" and "ridiculous" in score.cues
    assert score_text("This is ridiculous").score > score.score  # caps and ! amplify


def test_trend() -> None:
    assert trend([-0.8, -0.5, 0.1, 0.6]).direction == "improving"
    assert trend([0.3, 0.0, -0.6]).direction == "worsening"
    assert trend([0.1]).direction == "steady"
    assert trend([]).average == 0.0


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I want a refund for my order", "refund"),
        ("can I send it back? it doesn't fit", "return"),
        ("where is my order? when will it arrive", "order_status"),
        ("my package still hasn't arrived, it's late", "shipping_delay"),
        ("I moved and need to change my shipping address", "address_change"),
        ("the headphones stopped working, is that under warranty", "warranty"),
        ("please cancel my order", "cancellation"),
        ("I was charged twice on my card statement", "billing"),
        ("this is unacceptable, I want to speak to a manager", "complaint"),
        ("the box arrived damaged and the screen is cracked", "damaged_item"),
        ("I can't log in, I forgot my password", "account"),
    ],
)
def test_detect_intent(text: str, intent: str) -> None:
    assert topics.detect(text)[0].name == intent


def test_recent_turns_lead() -> None:
    turns = [
        topics.detect("my headphones stopped working"),
        topics.detect("can I just get my money back?"),
    ]
    ranked = topics.combine(turns)
    assert ranked[0].name == "refund"
    assert {t.name for t in ranked} >= {"refund", "warranty"}
    assert topics.combine([topics.detect("hello there")]) == []
