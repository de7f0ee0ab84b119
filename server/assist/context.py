"""Everything known about one call, and the one snapshot the engines read.

`CallContext` is fed final transcripts as they arrive and does the cheap per-turn work
then (entities, intents, sentiment), so composing a snapshot for an engine is only
aggregation. Snapshots are immutable: a generation that is still streaming keeps
reading the context as it was when it started, while new speech updates the live one.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from server.assist import topics as topic_rules
from server.assist.entities import Entities, extract_entities
from server.assist.knowledge import KnowledgeHit, stem, tokenize
from server.assist.models import CallSummary, Order, Ticket
from server.assist.sentiment import SentimentScore, SentimentTrend, score_text, trend
from server.assist.topics import Topic
from server.events import now_ms
from server.models import Call, Customer

if TYPE_CHECKING:
    from server.assist.knowledge import KnowledgeBase
    from server.store import Store

MAX_ORDERS = 20
MAX_TICKETS = 10
MAX_PREVIOUS_CALLS = 5
KNOWLEDGE_HITS = 2
LEAD_SCORE = 2.0
"""A turn's own intent at least this strong leads even within the same family of topics."""
SWITCH_SCORE = 1.5
"""A weaker cue of another topic ("how fast would it ship?" about a replacement) does not
switch topics, unless the customer says so ("also", "actually")."""
# Intents about one particular order, and which order statuses they are usually about
# when the customer has not said which one.
_ORDER_INTENTS = {
    "refund": ("delivered", "shipped"),
    "return": ("delivered",),
    "damaged_item": ("delivered",),
    "warranty": ("delivered",),
    "order_status": ("shipped", "processing", "placed"),
    "shipping_delay": ("shipped", "processing"),
    "cancellation": ("placed", "processing"),
    "address_change": ("placed", "processing", "shipped"),
    "billing": ("delivered", "shipped"),
    "price_adjustment": ("delivered", "shipped", "processing", "placed"),
}
_TOPIC_SHIFT = re.compile(
    r"^(?:(?:oh|um|uh|so|and|ok|okay)[, ]+)*(?:also|actually|another thing|by the way|one more thing|separately|apart from that)\b",
    re.IGNORECASE,
)
"""Words that open a new subject: "Actually, my parcel is late" is not about the order before."""
_NOT_ABOUT_ORDERS = frozenset(
    {"subscription", "account", "gift_card", "loyalty", "international", "payment", "shipping_times"}
)
"""A subscription is not an order: these intents never pick one by guesswork."""
_GENERIC_ITEM_WORDS = frozenset(tokenize("wireless smart mini slim the pro max 4k usb c 14 11"))


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    segment_id: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    entities: Entities = field(default_factory=Entities)
    topics: tuple[Topic, ...] = ()
    """Intents of the recent turns, the current one first."""
    call_topics: tuple[Topic, ...] = ()
    """Intents of the whole call, all turns weighing the same (for the summary)."""
    sentiment: SentimentScore | None = None
    act: str = ""
    """What a customer turn does: closing | small_talk | question | complaint | statement | ack."""

    def to_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "text": self.text, "start_ms": self.start_ms}


@dataclass(frozen=True)
class ContextSnapshot:
    """What an engine may know when it makes one suggestion (or the summary)."""

    call_id: str
    customer_id: str
    now_ms: int
    customer: dict[str, Any] | None = None
    call_reason: str = ""
    orders: tuple[dict[str, Any], ...] = ()
    tickets: tuple[dict[str, Any], ...] = ()
    previous_calls: tuple[dict[str, Any], ...] = ()
    turns: tuple[Turn, ...] = ()
    """The last `history_turns` final turns of both speakers, oldest first."""
    entities: Entities = field(default_factory=Entities)
    """Everything mentioned during the whole call."""
    mentioned_orders: tuple[dict[str, Any], ...] = ()
    """Orders named in the call, latest mention first; `belongs_to_caller` is False for
    an order on another customer's account."""
    unknown_order_numbers: tuple[str, ...] = ()
    """The order number the customer gave last, if no order has it — only while the
    conversation is still on the topic it was given for (a new topic does not inherit it)."""
    focus_order: dict[str, Any] | None = None
    focus_reason: str = ""
    """mentioned | item (the customer named the product) | inferred (guessed from intent)."""
    topics: tuple[Topic, ...] = ()
    """Intents of the recent turns, the current one first."""
    call_topics: tuple[Topic, ...] = ()
    """Intents of the whole call, all turns weighing the same (for the summary)."""
    sentiment: SentimentScore | None = None
    """The customer's latest turn."""
    sentiment_history: tuple[float, ...] = ()
    sentiment_trend: SentimentTrend = field(default_factory=lambda: trend(()))
    knowledge: tuple[KnowledgeHit, ...] = ()
    suggestions: tuple[dict[str, Any], ...] = ()
    """Suggestions shown so far: suggestion_id, kind, text, sources, feedback."""
    act: str = ""
    """What the customer's latest turn does (topics.detect_act)."""
    turn_topics: tuple[Topic, ...] = ()
    """Intents of the customer's latest turn alone."""

    @property
    def intent(self) -> str | None:
        return self.topics[0].name if self.topics else None

    @property
    def last_customer_text(self) -> str:
        for turn in reversed(self.turns):
            if turn.speaker == "customer":
                return turn.text
        return ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view, for prompts and logs."""
        return {
            "call_id": self.call_id,
            "customer": self.customer,
            "call_reason": self.call_reason,
            "orders": list(self.orders),
            "tickets": list(self.tickets),
            "previous_calls": list(self.previous_calls),
            "turns": [t.to_dict() for t in self.turns],
            "entities": self.entities.to_dict(),
            "focus_order": self.focus_order,
            "focus_reason": self.focus_reason,
            "unknown_order_numbers": list(self.unknown_order_numbers),
            "topics": [t.to_dict() for t in self.topics],
            "call_topics": [t.to_dict() for t in self.call_topics],
            "sentiment": self.sentiment.to_dict() if self.sentiment else None,
            "sentiment_trend": self.sentiment_trend.to_dict(),
            "knowledge": [h.to_dict() for h in self.knowledge],
            "suggestions": list(self.suggestions),
            "act": self.act,
        }


class CallContext:
    """The live context of one call. Not shared between calls."""

    def __init__(self, call_id: str, customer_id: str, *, history_turns: int = 12) -> None:
        self.call_id = call_id
        self.customer_id = customer_id
        self.loaded = False
        self.customer: dict[str, Any] | None = None
        self.call_reason = ""
        self.orders: list[dict[str, Any]] = []
        self.tickets: list[dict[str, Any]] = []
        self.previous_calls: list[dict[str, Any]] = []
        self.turns: deque[Turn] = deque(maxlen=max(1, history_turns))
        self.turn_count = 0
        self.entities = Entities()
        self.customer_scores: list[float] = []
        self.all_topics: list[tuple[Topic, ...]] = []
        self.suggestions: dict[str, dict[str, Any]] = {}
        # Orders named in the call but not the caller's: looked up once, kept (None: no such order).
        self._other_orders: dict[str, dict[str, Any] | None] = {}
        self._order_mentions: list[tuple[str, int]] = []  # (number, topic segment), oldest first
        self._customer_segments: list[str | None] = []
        # The conversation's topic segments: a customer turn about a new kind of problem
        # starts one, and facts (unresolved order numbers) stay in the segment they came in.
        self._segment = 0
        self._segment_family: str | None = None

    # --- records ---------------------------------------------------------------

    async def load(self, store: Store) -> None:
        """Read the customer's records; safe to call again to refresh them."""
        async with store.session() as session:
            customer = await session.get(Customer, self.customer_id)
            call = await session.get(Call, self.call_id)
            orders = (
                await session.exec(
                    select(Order)
                    .where(Order.customer_id == self.customer_id)
                    .order_by(col(Order.created_at).desc())
                    .limit(MAX_ORDERS)
                )
            ).all()
            tickets = (
                await session.exec(
                    select(Ticket)
                    .where(Ticket.customer_id == self.customer_id)
                    .order_by(col(Ticket.created_at).desc())
                    .limit(MAX_TICKETS)
                )
            ).all()
            summaries = (
                await session.exec(
                    select(CallSummary)
                    .where(
                        CallSummary.customer_id == self.customer_id,
                        CallSummary.call_id != self.call_id,
                    )
                    .order_by(col(CallSummary.created_at).desc())
                    .limit(MAX_PREVIOUS_CALLS)
                )
            ).all()
        if customer is not None:
            self.customer = {
                **customer.public(),
                "notes": customer.notes,
                "since": customer.created_at,
            }
        self.call_reason = call.reason if call is not None else ""
        self.orders = [{**o.public(), "belongs_to_caller": True} for o in orders]
        self.tickets = [t.public() for t in tickets]
        self.previous_calls = [_previous_call(s) for s in summaries]
        self.loaded = True

    def customer_context(self) -> dict[str, Any]:
        """The body of the `customer_context` event."""
        return {
            "customer": self.customer or {"customer_id": self.customer_id},
            "orders": [_without(o, "belongs_to_caller") for o in self.orders],
            "tickets": list(self.tickets),
            "previous_calls": list(self.previous_calls),
        }

    async def resolve_orders(self, store: Store) -> None:
        """Look up order numbers said in the call that are not the caller's."""
        own = {o["order_id"] for o in self.orders}
        missing = [
            n for n in self.entities.order_numbers if n not in own and n not in self._other_orders
        ]
        if not missing:
            return
        async with store.session() as session:
            rows = (await session.exec(select(Order).where(col(Order.id).in_(missing)))).all()
        found = {row.id: row for row in rows}
        for number in missing:
            row = found.get(number)
            if row is None:
                self._other_orders[number] = None
            elif row.customer_id == self.customer_id:
                self.orders.insert(0, {**row.public(), "belongs_to_caller": True})
            else:
                self._other_orders[number] = {**row.public(), "belongs_to_caller": False}

    # --- conversation ----------------------------------------------------------

    def add_turn(self, event: dict[str, Any]) -> Turn | None:
        """Record one final transcript event; returns the turn (None if empty)."""
        text = " ".join(str(event.get("text") or "").split())
        if not text:
            return None
        speaker = "customer" if event.get("speaker") == "customer" else "agent"
        today = datetime.fromtimestamp(now_ms() / 1000, tz=UTC).date()
        entities = extract_entities(text, today=today)
        is_customer = speaker == "customer"
        turn = Turn(
            speaker=speaker,
            text=text,
            segment_id=event.get("segment_id"),
            start_ms=event.get("start_ms"),
            end_ms=event.get("end_ms"),
            entities=entities,
            topics=tuple(topic_rules.detect(text)) if is_customer else (),
            sentiment=score_text(text) if is_customer else None,
            act=topic_rules.detect_act(text) if is_customer else "",
        )
        previous = self._segment_index(turn)
        if previous is not None:
            # A re-sent final replaces its segment (and that turn's scores).
            self.turns[previous] = turn
            if is_customer and turn.segment_id in self._customer_segments:
                k = self._customer_segments.index(turn.segment_id)
                self.customer_scores[k] = turn.sentiment.score if turn.sentiment else 0.0
                self.all_topics[k] = turn.topics
        else:
            self.turns.append(turn)
            self.turn_count += 1
            if is_customer:
                self.customer_scores.append(turn.sentiment.score if turn.sentiment else 0.0)
                self.all_topics.append(turn.topics)
                self._customer_segments.append(turn.segment_id)
        if is_customer and previous is None:
            self._follow_topic(turn)
        if entities:
            self.entities = self.entities.merge(entities)
            for number in entities.order_numbers:
                self._order_mentions = [m for m in self._order_mentions if m[0] != number]
                self._order_mentions.append((number, self._segment))
        return turn

    def _follow_topic(self, turn: Turn) -> None:
        own = [t for t in turn.topics if t.score >= 1.0 and t.name != "complaint"]
        if not own:
            return  # a follow-up stays on the topic
        family = topic_rules.family(own[0].name)
        if (self._segment_family is not None and family != self._segment_family) or (
            _TOPIC_SHIFT.match(turn.text)
        ):
            self._segment += 1
        self._segment_family = family

    def _segment_index(self, turn: Turn) -> int | None:
        if turn.segment_id is None:
            return None
        for k, existing in enumerate(self.turns):
            if existing.segment_id == turn.segment_id and existing.speaker == turn.speaker:
                return k
        return None

    def record_suggestion(self, suggestion: dict[str, Any]) -> None:
        """Add or update a shown suggestion; feedback already given is kept."""
        previous = self.suggestions.get(suggestion["suggestion_id"], {})
        self.suggestions[suggestion["suggestion_id"]] = {
            **suggestion,
            "feedback": previous.get("feedback"),
        }

    def record_feedback(self, suggestion_id: str, action: str) -> None:
        if suggestion_id in self.suggestions:
            self.suggestions[suggestion_id]["feedback"] = action

    # --- the snapshot ----------------------------------------------------------

    def snapshot(
        self, knowledge: KnowledgeBase | None = None, *, at_ms: int | None = None
    ) -> ContextSnapshot:
        """The one view of this call the engines read."""
        at = at_ms if at_ms is not None else now_ms()
        turns = tuple(self.turns)
        n_customer = sum(1 for t in turns if t.speaker == "customer")
        recent_topics = self.all_topics[-n_customer:] if n_customer else []
        customer_turns = [t for t in turns if t.speaker == "customer"]
        latest = customer_turns[-1] if customer_turns else None
        own_topics = tuple(t for t in latest.topics if t.score >= 1.0) if latest else ()
        ranked = tuple(topic_rules.combine(recent_topics))
        if own_topics and (
            own_topics[0].score >= LEAD_SCORE
            or not ranked
            or (
                topic_rules.family(own_topics[0].name) != topic_rules.family(ranked[0].name)
                and (own_topics[0].score >= SWITCH_SCORE or _TOPIC_SHIFT.match(latest.text if latest else ""))
            )
        ):
            # A clear new request leads; earlier ones follow, weaker. A weak cue in a
            # follow-up ("do I send the broken one back?") stays on the topic at hand.
            ranked = own_topics + tuple(t for t in ranked if t.name not in {o.name for o in own_topics})
        own = {o["order_id"]: o for o in self.orders}
        current: list[dict[str, Any]] = []
        earlier: list[dict[str, Any]] = []
        unknown: list[str] = []
        for k, (number, segment) in enumerate(reversed(self._order_mentions)):
            record = own.get(number) or self._other_orders.get(number)
            if record is not None:
                (current if segment == self._segment else earlier).append(record)
            elif k == 0 and number in self._other_orders and segment == self._segment:
                # Only the number said last counts: a later one corrects it.
                unknown.append(number)
        focus, reason = self._focus(current, earlier, ranked, turns)
        hits: tuple[KnowledgeHit, ...] = ()
        if knowledge is not None and latest is not None:
            # The latest turn asks; the one before only helps a follow-up without a topic.
            query = latest.text
            if not own_topics and len(customer_turns) > 1:
                query = f"{customer_turns[-2].text} {query}"
            tags = topic_rules.intent_tags(ranked[0].name) if ranked else ()
            hits = tuple(knowledge.search(query, k=KNOWLEDGE_HITS, tags=tags))
        mentioned = current + earlier
        return ContextSnapshot(
            call_id=self.call_id,
            customer_id=self.customer_id,
            now_ms=at,
            customer=self.customer,
            call_reason=self.call_reason,
            orders=tuple(self.orders),
            tickets=tuple(self.tickets),
            previous_calls=tuple(self.previous_calls),
            turns=turns,
            entities=self.entities,
            mentioned_orders=tuple(mentioned),
            unknown_order_numbers=tuple(unknown),
            focus_order=focus,
            focus_reason=reason,
            topics=ranked,
            call_topics=tuple(topic_rules.combine(self.all_topics, decay=1.0)),
            sentiment=customer_turns[-1].sentiment if customer_turns else None,
            sentiment_history=tuple(self.customer_scores),
            sentiment_trend=trend(self.customer_scores),
            knowledge=hits,
            suggestions=tuple(dict(s) for s in self.suggestions.values()),
            act=latest.act if latest else "",
            turn_topics=own_topics,
        )

    def _focus(
        self,
        current: list[dict[str, Any]],
        earlier: list[dict[str, Any]],
        ranked: tuple[Topic, ...],
        turns: tuple[Turn, ...],
    ) -> tuple[dict[str, Any] | None, str]:
        if current:
            return current[0], "mentioned"
        intent = ranked[0].name if ranked else None
        statuses = _ORDER_INTENTS.get(intent or "")
        if intent in _NOT_ABOUT_ORDERS:
            return None, ""
        if not self.orders and not earlier:
            return None, ""
        said = {w for t in turns if t.speaker == "customer" for w in tokenize(t.text)}
        for order in self.orders:  # newest first
            names = {
                stem(w)
                for item in order.get("items") or []
                for w in tokenize(str(item.get("name", "")))
            }
            if (names - _GENERIC_ITEM_WORDS) & said:
                return order, "item"
        for order in earlier:  # named under an earlier topic: still the one, if it fits
            if statuses is None or order.get("status") in statuses:
                return order, "mentioned"
        if statuses:
            for status in statuses:
                for order in self.orders:
                    if order["status"] == status:
                        return order, "inferred"
        return None, ""


def _previous_call(summary: CallSummary) -> dict[str, Any]:
    body = summary.body or {}
    return {
        "call_id": summary.call_id,
        "created_at": summary.created_at,
        "reason": body.get("reason"),
        "outcome": body.get("outcome"),
        "text": body.get("text"),
    }


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}
