"""Agent assist: customer context, live suggestions and call summaries (issue 4).

Data flows in one direction: final transcripts → `CallContext` (entities, topics,
sentiment) → one snapshot → a `SuggestionEngine` → `ai_suggestion` events. The call
session owns one `CallAssistant` per call; see assistant.py. Submodules are imported
lazily so that `server.assist.models` (imported by the store) stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.assist.assistant import CallAssistant
    from server.assist.engine import SuggestionEngine
    from server.assist.knowledge import KnowledgeBase
    from server.config import AssistSettings
    from server.store import Store

log = logging.getLogger(__name__)


async def create_assistant_factory(
    settings: AssistSettings, store: Store
) -> tuple[Callable[..., CallAssistant], Callable[[], Awaitable[None]]]:
    """(factory, close): the factory makes one `CallAssistant` per call, all of them
    sharing one engine and one knowledge base; `close()` releases the engine."""
    from server.assist.assistant import CallAssistant
    from server.assist.knowledge import KnowledgeBase

    knowledge = KnowledgeBase()
    await knowledge.refresh_if_changed(store)
    engine = create_suggestion_engine(settings, store, knowledge)

    def factory(
        *,
        call_id: str,
        customer_id: str,
        publish: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        customer_speaking: Callable[[], bool] | None = None,
        verified: bool = False,
    ) -> CallAssistant:
        return CallAssistant(
            call_id=call_id,
            customer_id=customer_id,
            store=store,
            settings=settings,
            engine=engine,
            knowledge=knowledge,
            publish=publish,
            customer_speaking=customer_speaking,
            verified=verified,
        )

    return factory, engine.close


def create_suggestion_engine(
    settings: AssistSettings, store: Store, knowledge: KnowledgeBase | None = None
) -> SuggestionEngine:
    """The engine the settings ask for; the OpenAI one falls back to the local one.

    The one place engines are wired: engine.py (the abstraction) imports none of them.
    """
    from server.assist.knowledge import KnowledgeBase
    from server.assist.local import LocalSuggestionEngine

    knowledge = knowledge if knowledge is not None else KnowledgeBase()
    local = LocalSuggestionEngine(knowledge)
    if settings.engine == "local":
        return local
    if settings.engine == "openai":
        if not (settings.openai_base_url or settings.openai_api_key):
            log.warning(
                "CALLASSIST_ASSIST_ENGINE=openai but no API key or base URL; using the local engine"
            )
            return local
        from server.assist.openai import OpenAISuggestionEngine

        return OpenAISuggestionEngine(settings, store, knowledge, fallback=local)
    raise ValueError(f"unknown suggestion engine {settings.engine!r} (local or openai)")
