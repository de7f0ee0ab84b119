"""The offline suggestion engine: intent playbooks, retrieved articles, local summary.

Everything it needs is in the snapshot (records, intents, sentiment, retrieved
articles), so a suggestion costs well under a millisecond of CPU; it is streamed word
by word only so the agent's screen behaves the same with every engine.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from server.assist.context import ContextSnapshot
from server.assist.engine import EngineEvent, SuggestionEngine, stream_text
from server.assist.knowledge import KnowledgeBase
from server.assist.playbooks import build_drafts
from server.assist.summary import build_summary


class LocalSuggestionEngine(SuggestionEngine):
    name = "local"

    def __init__(self, knowledge: KnowledgeBase | None = None) -> None:
        self._knowledge = knowledge

    async def suggest(self, snapshot: ContextSnapshot) -> AsyncGenerator[EngineEvent, None]:
        for n, draft in enumerate(build_drafts(snapshot, self._knowledge)):
            pieces = stream_text(
                f"local-{n}", draft.kind, draft.text, draft.confidence, draft.sources
            )
            async with aclosing(pieces):
                async for chunk in pieces:
                    yield chunk

    async def summarize(self, snapshot: ContextSnapshot) -> dict[str, Any]:
        return build_summary(snapshot)
