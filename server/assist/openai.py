"""The OpenAI engine: chat completions with tools, streamed, with a local fallback.

Any OpenAI-compatible server works (`base_url`). One suggestion is a tool round trip —
the model may call `get_order_details`, `check_policy`, ... which run here against the
store — then a streamed answer in `[reply]` / `[action]` / `[knowledge]` sections. If the
service fails or is slow, the engine says so (`EngineStatus`, which the assistant
publishes as a `status` warning) and streams the local engine's suggestions instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, cast

from server.assist import fmt
from server.assist.engine import (
    FALLBACK_CODE,
    EngineEvent,
    EngineStatus,
    SuggestionChunk,
    SuggestionEngine,
)
from server.assist.summary import build_summary
from server.assist.tools import TOOLS, ToolRunner

if TYPE_CHECKING:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk

    from server.assist.context import ContextSnapshot
    from server.assist.knowledge import KnowledgeBase
    from server.config import AssistSettings
    from server.store import Store

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
DEFAULT_CONFIDENCE = 0.7
SYSTEM_PROMPT = """You assist a call-center agent during a live phone call with a customer.
Suggest what the agent should say or do next, based on the customer's latest words.
Rules:
- Facts about orders, customers and policies come only from the context below or from tools.
  Call get_order_details / check_policy before stating an order's status, amounts, dates or
  eligibility. Never invent order numbers, amounts, dates or policies.
- Write in sections, each starting with a tag on its own line:
  [reply] words the agent can say to the customer (first person, at most 60 words)
  [action] the back-office step to take (one sentence)
  [knowledge] the policy fact the agent should know, naming the article title
  The reply comes first; leave out sections that add nothing.
- If the customer is upset, the reply begins with one sincere, specific empathy sentence.
- Order numbers are 5 digits; customers may say them as words ("seven eight nine oh one")."""
SUMMARY_PROMPT = """Summarize this customer-service call for the CRM. Answer with one JSON object:
{"reason": short phrase, "outcome": "resolved" | "escalated" | "unresolved" | "information provided",
 "text": 2-4 sentences for the agent's notes (who, what, which order, what was done, what is pending),
 "follow_up": [short strings]}. Use only facts from the data given."""
_TAG = re.compile(r"\[(reply|action|knowledge)\]\s*", re.IGNORECASE)
_TAG_PREFIXES = ("[reply]", "[action]", "[knowledge]")


class SectionParser:
    """Splits streamed model text into `[reply]` / `[action]` / `[knowledge]` sections.

    A tag may arrive split across chunks ("[know" + "ledge]"), so text that could still
    become a tag is held back until the next chunk decides.
    """

    def __init__(self, prefix: str = "openai") -> None:
        self._prefix = prefix
        self._buffer = ""
        self._kind = "reply"
        self._n = 0
        self._started = False
        self._pending_ws = ""

    @property
    def key(self) -> str:
        return f"{self._prefix}-{self._n}"

    def feed(self, text: str) -> list[tuple[str, str, str, bool]]:
        """[(key, kind, delta, done)] for the text that is certain so far."""
        self._buffer += text
        out: list[tuple[str, str, str, bool]] = []
        while True:
            m = _TAG.search(self._buffer)
            if m is None:
                break
            self._emit(self._buffer[: m.start()], out)
            if self._started:
                out.append((self.key, self._kind, "", True))
                self._n += 1
            self._kind, self._started, self._pending_ws = m.group(1).lower(), False, ""
            self._buffer = self._buffer[m.end() :]
        hold = _partial_tag_length(self._buffer)
        self._emit(self._buffer[: len(self._buffer) - hold], out)
        self._buffer = self._buffer[len(self._buffer) - hold :]
        return out

    def flush(self) -> list[tuple[str, str, str, bool]]:
        out: list[tuple[str, str, str, bool]] = []
        self._emit(self._buffer, out)
        self._buffer = ""
        if self._started:
            out.append((self.key, self._kind, "", True))
            self._n += 1
            self._started = False
        return out

    def _emit(self, text: str, out: list[tuple[str, str, str, bool]]) -> None:
        if not self._started:
            text = text.lstrip()
        full = self._pending_ws + text
        body = full.rstrip()
        # Trailing whitespace waits: it is dropped if the section ends right after it.
        self._pending_ws = full[len(body) :]
        if body:
            self._started = True
            out.append((self.key, self._kind, body, False))


def _partial_tag_length(buffer: str) -> int:
    start = buffer.rfind("[")
    if start == -1:
        return 0
    tail = buffer[start:].lower()
    return len(buffer) - start if any(p.startswith(tail) for p in _TAG_PREFIXES) else 0


class OpenAISuggestionEngine(SuggestionEngine):
    name = "openai"

    def __init__(
        self,
        settings: AssistSettings,
        store: Store,
        knowledge: KnowledgeBase,
        *,
        fallback: SuggestionEngine,
    ) -> None:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - openai is a declared dependency
            raise RuntimeError(
                "the openai suggestion engine needs the SDK: pip install openai"
            ) from exc
        self._settings = settings
        self._store = store
        self._knowledge = knowledge
        self._fallback = fallback
        # Retries would only delay the fallback: a live call cannot wait for them.
        self._client = AsyncOpenAI(
            base_url=settings.openai_base_url or None,
            api_key=settings.openai_api_key or "not-needed",
            timeout=settings.timeout_s,
            max_retries=0,
        )
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        await self._fallback.close()

    async def suggest(self, snapshot: ContextSnapshot) -> AsyncGenerator[EngineEvent, None]:
        open_keys: dict[str, str] = {}
        try:
            # aclosing: when our consumer stops early, the HTTP stream is closed now, not at GC.
            async with aclosing(self._stream(snapshot)) as stream:
                async for chunk in stream:
                    if chunk.done:
                        open_keys.pop(chunk.key, None)
                    else:
                        open_keys[chunk.key] = chunk.kind
                    yield chunk
        except Exception as exc:  # any failure of the service: fall back, never go silent
            log.warning(
                "openai suggestion failed (%s); falling back to the local engine", _describe(exc)
            )
            for key, kind in open_keys.items():
                yield SuggestionChunk(key, kind, "", DEFAULT_CONFIDENCE, (), done=True)
            yield EngineStatus(
                "warning",
                FALLBACK_CODE,
                f"AI suggestion service unavailable ({_describe(exc)}); showing offline suggestions",
            )
            async with aclosing(self._fallback.suggest(snapshot)) as fallback:
                async for item in fallback:
                    yield item

    async def _stream(self, snapshot: ContextSnapshot) -> AsyncGenerator[SuggestionChunk, None]:
        runner = ToolRunner(self._store, self._knowledge, snapshot)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": context_prompt(snapshot)},
        ]
        parser = SectionParser()
        default_sources = _context_sources(snapshot)

        def chunks(parts: list[tuple[str, str, str, bool]]) -> list[SuggestionChunk]:
            sources = tuple(runner.sources) or default_sources
            return [
                SuggestionChunk(k, kind, d, DEFAULT_CONFIDENCE, sources, done)
                for k, kind, d, done in parts
            ]

        # The deadline covers the wait for the first words, tool rounds included; once the
        # answer streams, the client's read timeout guards against a stalled stream.
        async with asyncio.timeout(self._settings.timeout_s) as deadline:
            for round_ in range(MAX_TOOL_ROUNDS + 1):
                calls: dict[int, dict[str, str]] = {}
                content: list[str] = []
                # The last round offers no tools, so the model has to answer.
                tools: dict[str, Any] = {"tools": TOOLS} if round_ < MAX_TOOL_ROUNDS else {}
                stream = cast(
                    "AsyncStream[ChatCompletionChunk]",
                    await self._client.chat.completions.create(
                        model=self._settings.openai_model,
                        messages=cast(Any, messages),
                        stream=True,
                        temperature=0.3,
                        **tools,
                    ),
                )
                async with stream:
                    async for chunk in stream:
                        if not chunk.choices:
                            continue
                        delta = chunk.choices[0].delta
                        for call in delta.tool_calls or ():
                            slot = calls.setdefault(
                                call.index, {"id": "", "name": "", "arguments": ""}
                            )
                            slot["id"] = call.id or slot["id"]
                            if call.function is not None:
                                slot["name"] += call.function.name or ""
                                slot["arguments"] += call.function.arguments or ""
                        if delta.content:
                            content.append(delta.content)
                            deadline.reschedule(None)
                            for piece in chunks(parser.feed(delta.content)):
                                yield piece
                if not calls:
                    break
                messages.append(
                    {
                        "role": "assistant",
                        "content": "".join(content) or None,
                        "tool_calls": [
                            {
                                "id": c["id"] or f"call_{i}",
                                "type": "function",
                                "function": {
                                    "name": c["name"],
                                    "arguments": c["arguments"] or "{}",
                                },
                            }
                            for i, c in sorted(calls.items())
                        ],
                    }
                )
                for i, c in sorted(calls.items()):
                    result = await runner.run(c["name"], c["arguments"])
                    messages.append(
                        {"role": "tool", "tool_call_id": c["id"] or f"call_{i}", "content": result}
                    )
        for piece in chunks(parser.flush()):
            yield piece

    async def summarize(self, snapshot: ContextSnapshot) -> dict[str, Any]:
        local = build_summary(snapshot)
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                response = await self._client.chat.completions.create(
                    model=self._settings.openai_model,
                    messages=[
                        {"role": "system", "content": SUMMARY_PROMPT},
                        {
                            "role": "user",
                            "content": json.dumps(
                                {"context": context_prompt(snapshot), "computed": local},
                                default=str,
                            ),
                        },
                    ],
                    temperature=0.2,
                )
            text = response.choices[0].message.content or ""
            generated = _json_object(text)
        except Exception as exc:
            log.warning("openai summary failed (%s); using the local summary", _describe(exc))
            local["engine_status"] = EngineStatus(
                "warning",
                FALLBACK_CODE,
                f"AI summary unavailable ({_describe(exc)}); offline summary used",
            )
            return local
        if generated is None:
            generated = {"text": text.strip()} if text.strip() else {}
        for key in ("reason", "outcome", "text"):
            if isinstance(generated.get(key), str) and generated[key].strip():
                local[key] = generated[key].strip()
        if isinstance(generated.get("follow_up"), list):
            local["follow_up"] = [str(item) for item in generated["follow_up"]][:10]
        local["engine"] = "openai"
        return local


def context_prompt(snap: ContextSnapshot) -> str:
    """The call as the model sees it: records, what was detected, the conversation."""
    customer = snap.customer or {"customer_id": snap.customer_id}
    lines = [
        f"Customer: {customer.get('name', 'unknown')} (id {snap.customer_id}, tier {customer.get('tier')})"
    ]
    if customer.get("notes"):
        lines.append(f"Notes: {customer['notes']}")
    if snap.call_reason:
        lines.append(f"Reason given when calling: {snap.call_reason}")
    for order in snap.orders[:8]:
        lines.append(
            f"Order {order['order_id']}: {fmt.items(order)}, {fmt.money(order.get('amount'), order.get('currency', 'USD'))},"
            f" {order['status']}, ordered {fmt.day(order.get('created_at'))}"
            + (f", delivered {fmt.day(order['delivered_at'])}" if order.get("delivered_at") else "")
        )
    for ticket in snap.tickets[:5]:
        if ticket.get("status") in ("open", "pending"):
            lines.append(
                f"Open ticket {ticket['ticket_id']}: {ticket['subject']} ({ticket['priority']})"
            )
    for call in snap.previous_calls[:3]:
        if call.get("text"):
            lines.append(f"Earlier call: {call['text']}")
    if snap.focus_order:
        lines.append(
            f"The customer seems to mean order {snap.focus_order['order_id']} ({snap.focus_reason})."
        )
        if not snap.focus_order.get("belongs_to_caller", True):
            lines.append(
                "That order is on another customer's account: the agent must verify identity first."
            )
    for number in snap.unknown_order_numbers:
        lines.append(f"Order number {number} was mentioned but does not exist.")
    if snap.topics:
        lines.append("Detected intents: " + ", ".join(t.label for t in snap.topics[:3]))
    if snap.sentiment is not None:
        mood = "angry" if snap.sentiment.angry else snap.sentiment.label
        lines.append(f"Customer mood now: {mood} (trend {snap.sentiment_trend.direction})")
    for hit in snap.knowledge:
        lines.append(f'Article "{hit.title}" ({hit.id}): {hit.passage}')
    lines.append("Conversation (oldest first):")
    lines += [f"{t.speaker.capitalize()}: {t.text}" for t in snap.turns]
    return "\n".join(lines)


def _context_sources(snap: ContextSnapshot) -> tuple[dict[str, Any], ...]:
    sources: list[dict[str, Any]] = []
    if snap.focus_order:
        sources.append({"type": "order", "id": snap.focus_order["order_id"]})
    sources += [hit.source() for hit in snap.knowledge[:1]]
    return tuple(sources)


def _json_object(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
