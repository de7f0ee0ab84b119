"""Suggestion latency with the local engine: final customer transcript → first ai_suggestion.

Runs the real CallAssistant against a throwaway SQLite demo database and a publish that
only timestamps events. Prints p50/p95/max in milliseconds for:
  first  — on_transcript() → first ai_suggestion chunk published (what the agent sees first)
  final  — on_transcript() → first suggestion's done:true message published (persisted)
once with debounce 0 (engine + context cost) and once with the configured debounce.

    python -m bench.bench_assist [--rounds 10] [--debounce-ms 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from server.assist.assistant import CallAssistant
from server.assist.demo import load_demo
from server.assist.knowledge import KnowledgeBase
from server.assist.local import LocalSuggestionEngine
from server.config import AssistSettings
from server.models import Call
from server.store import Store

UTTERANCES = [
    ("cus_demo_01", "Hi, I'd like a refund for order seven eight nine zero one please."),
    (
        "cus_demo_01",
        "This is ridiculous! My headphones stopped working and nobody answers my emails!",
    ),
    (
        "cus_demo_02",
        "Where is my standing desk? It still hasn't arrived and it's been over a week.",
    ),
    ("cus_demo_03", "My laptop won't turn on anymore. Is it still under warranty?"),
    ("cus_demo_04", "I ordered a coffee grinder this morning but I need to cancel it."),
    ("cus_demo_05", "I was charged twice for my smart watch, I can see two charges on my card."),
    ("cus_demo_06", "I just moved, can you change the shipping address on my tablet order?"),
    ("cus_demo_07", "Hello, I'm calling about order eight one five four four."),
    ("cus_demo_08", "My package arrived damaged, the box was crushed and the screen is cracked."),
    ("cus_demo_09", "I can't log in to my account, I forgot my password."),
    ("cus_demo_10", "Can I return something I bought two weeks ago? It doesn't fit."),
    ("cus_demo_11", "I want to speak to a manager, this is the third time I'm calling."),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def measure(
    store: Store, knowledge: KnowledgeBase, debounce_ms: int, rounds: int
) -> dict[str, list[float]]:
    engine = LocalSuggestionEngine(knowledge)
    settings = AssistSettings(debounce_ms=debounce_ms)
    first: list[float] = []
    final: list[float] = []
    for _ in range(rounds):
        for customer_id, text in UTTERANCES:
            async with store.write() as session:
                call = Call(customer_id=customer_id, state="active")
                session.add(call)
            marks: dict[str, float] = {}
            done = asyncio.Event()

            async def publish(
                event: dict[str, Any], marks: dict[str, float] = marks, done: asyncio.Event = done
            ) -> dict[str, Any]:
                if event["type"] == "ai_suggestion":
                    marks.setdefault("first", time.perf_counter())
                    if event["done"] and "final" not in marks:
                        marks["final"] = time.perf_counter()
                        done.set()
                return event

            assistant = CallAssistant(
                call_id=call.id,
                customer_id=customer_id,
                store=store,
                settings=settings,
                engine=engine,
                knowledge=knowledge,
                publish=publish,
            )
            await assistant.on_accept()  # as in a real call: records are loaded on accept
            started = time.perf_counter()
            assistant.on_transcript(
                {
                    "type": "transcript",
                    "speaker": "customer",
                    "segment_id": "s1",
                    "text": text,
                    "final": True,
                    "start_ms": 0,
                    "end_ms": 2000,
                }
            )
            await asyncio.wait_for(done.wait(), 10)
            first.append((marks["first"] - started) * 1000)
            final.append((marks["final"] - started) * 1000)
            await assistant.close()
    return {"first": first, "final": final}


def report(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    for name, values in results.items():
        print(
            f"  {name:<6} n={len(values):<4} p50={statistics.median(values):7.2f} ms  "
            f"p95={percentile(values, 0.95):7.2f} ms  max={max(values):7.2f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="passes over the utterances (debounce 0)"
    )
    parser.add_argument("--debounce-ms", type=int, default=AssistSettings().debounce_ms)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await store.create_schema()
            await load_demo(store)
            knowledge = KnowledgeBase()
            await knowledge.refresh(store)
            print(
                f"local engine, {len(knowledge)} articles, {len(UTTERANCES)} utterances, SQLite demo database"
            )
            report(
                "debounce 0 ms (engine + context + publish):",
                await measure(store, knowledge, 0, args.rounds),
            )
            if args.debounce_ms:
                report(
                    f"debounce {args.debounce_ms} ms (end to end, as configured):",
                    await measure(store, knowledge, args.debounce_ms, 1),
                )
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
