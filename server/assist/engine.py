"""The suggestion engine abstraction: one snapshot in, a stream of suggestion pieces out.

`LocalSuggestionEngine` (local.py), `OpenAISuggestionEngine` (openai.py) and the test
fakes are siblings behind this class; `server.assist.create_suggestion_engine` picks one
from the settings (this module imports no engine, so engines import it freely). An
engine is shared by every call of the server and holds no per-call state.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from server.assist.context import ContextSnapshot

Kind = Literal["reply", "knowledge", "action"]
KINDS: tuple[str, ...] = ("reply", "knowledge", "action")
WORDS_PER_CHUNK = 2
FALLBACK_CODE = "suggestion_engine_fallback"


@dataclass(frozen=True)
class SuggestionChunk:
    """A piece of one suggestion. Pieces with the same `key` belong to one suggestion."""

    key: str
    kind: str
    delta: str
    confidence: float
    sources: tuple[dict[str, Any], ...] = ()
    done: bool = False
    """The last piece of this suggestion (the stream may go on with other keys)."""


@dataclass(frozen=True)
class EngineStatus:
    """Degraded service the agent should know about (becomes a `status` event)."""

    level: str
    code: str
    message: str


EngineEvent = SuggestionChunk | EngineStatus


class SuggestionEngine(ABC):
    name = "engine"

    @abstractmethod
    def suggest(self, snapshot: ContextSnapshot) -> AsyncGenerator[EngineEvent, None]:
        """Stream the suggestions for this moment of the call.

        Implementations are async generators: the assistant closes them (`aclose()`)
        when the suggestion is stopped, so their `finally` / `async with` blocks run then.
        """

    @abstractmethod
    async def summarize(self, snapshot: ContextSnapshot) -> dict[str, Any]:
        """The call's summary; it always has a human-readable `text`.

        An engine that had to fall back puts an `EngineStatus` under "engine_status";
        the assistant turns it into a `status` event and drops it from the summary.
        """

    async def close(self) -> None:
        """Release clients and connections; safe to call twice."""
        return None


async def stream_text(
    key: str,
    kind: str,
    text: str,
    confidence: float,
    sources: Sequence[dict[str, Any]] = (),
    *,
    words_per_chunk: int = WORDS_PER_CHUNK,
) -> AsyncGenerator[SuggestionChunk, None]:
    """`text` as a stream of word chunks, so the agent sees the suggestion grow."""
    words = text.split(" ")
    pieces = [
        " ".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)
    ]
    sources = tuple(sources)
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        yield SuggestionChunk(
            key, kind, piece if n == 0 else " " + piece, confidence, sources, done=last
        )
        # Let the loop deliver this piece (and hear a stop) before the next one.
        await asyncio.sleep(0)
