"""Scenario benchmark: scripted multi-turn calls through the real assistant (issue 13).

Each conversation of bench/scenarios.yaml is played turn by turn into a real
`CallAssistant` (local engine, real knowledge base) over a throwaway SQLite database with
the demo records, with each transcript passed through the call's `CallRedactor` first,
as the call session does. A few turns are speech fixtures, transcribed by the local
Whisper model. For every customer turn it checks what the suggestions must contain and
must not, and prints:

  coverage     asking / complaining / closing customer turns with a suggestion within 1 s
  relevance    turns with expectations whose suggestions meet them
  stale        turns whose suggestions repeat a fact from an earlier topic
  latency      final transcript → first suggestion chunk, p50 / p95
  redaction    recall on PII turns, and order numbers / amounts lost to redaction

and every failing turn with its suggestions, so the figures can be read.

    python -m bench.scenarios [--only NAME] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.assist.assistant import CallAssistant
from server.assist.demo import load_demo
from server.assist.entities import extract_entities
from server.assist.knowledge import KnowledgeBase
from server.assist.local import LocalSuggestionEngine
from server.assist.spoken import normalize_numbers
from server.config import AssistSettings
from server.models import Call, Customer
from server.redaction import CallRedactor
from server.store import Store

SCENARIOS = Path(__file__).with_name("scenarios.yaml")
COVERAGE_WINDOW_S = 1.0
"""A suggestion must start within this long after the customer's final transcript."""
TURN_GAP_S = 0.3
"""Pause before the next turn once the assistant is idle (a person takes a breath)."""


@dataclass
class TurnResult:
    scenario: str
    index: int
    said: str
    heard: str
    needs: bool
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float | None = None
    problems: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    relevant: bool | None = None
    article_hit: bool | None = None
    pii_total: int = 0
    pii_leaked: int = 0
    kept_total: int = 0
    kept_lost: list[str] = field(default_factory=list)

    window_s: float = COVERAGE_WINDOW_S

    @property
    def covered(self) -> bool:
        return self.latency_ms is not None and self.latency_ms <= self.window_s * 1000

    @property
    def failed(self) -> bool:
        return bool(
            (self.needs and not self.covered)
            or self.relevant is False
            or self.stale
            or self.pii_leaked
            or self.kept_lost
        )


@dataclass
class Report:
    turns: list[TurnResult]
    conversations: int

    def figures(self) -> dict[str, Any]:
        needing = [t for t in self.turns if t.needs]
        judged = [t for t in self.turns if t.relevant is not None]
        latencies = [t.latency_ms for t in self.turns if t.latency_ms is not None]
        pii = sum(t.pii_total for t in self.turns)
        leaked = sum(t.pii_leaked for t in self.turns)
        kept = sum(t.kept_total for t in self.turns)
        lost = sum(len(t.kept_lost) for t in self.turns)
        return {
            "conversations": self.conversations,
            "customer_turns": len(self.turns),
            "coverage": _ratio(sum(t.covered for t in needing), len(needing)),
            "relevance": _ratio(sum(bool(t.relevant) for t in judged), len(judged)),
            "stale": sum(1 for t in self.turns if t.stale),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_ms": round(percentile(latencies, 0.95), 1) if latencies else None,
            "article_hits": _ratio(
                sum(bool(t.article_hit) for t in self.turns),
                sum(t.article_hit is not None for t in self.turns),
            ),
            "redaction_recall": _ratio(pii - leaked, pii),
            "false_redactions": lost,
            "needing": len(needing),
            "judged": len(judged),
            "pii_items": pii,
            "kept_items": kept,
        }


def _ratio(n: int, d: int) -> float:
    return round(n / d, 4) if d else 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def load_scenarios(path: Path = SCENARIOS) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    return list(data["scenarios"])


class _Transcriber:
    """Speech fixtures → text with the local Whisper model, loaded on first use."""

    def __init__(self) -> None:
        self._decoder: Any = None

    def __call__(self, name: str) -> str:
        from media.audio import silence
        from media.stt.local import WhisperDecoder
        from server.config import SpeechSettings
        from tests.media.speech import fixture, segment_offline

        if self._decoder is None:
            self._decoder = WhisperDecoder.load(SpeechSettings())
        segments = segment_offline(silence(300) + fixture(name).pcm())
        results = [self._decoder.decode(s.pcm) for s in segments]
        return " ".join(r.text.strip() for r in results if r.is_speech)


async def _customer_id(store: Store, spec: dict[str, Any]) -> str:
    from sqlmodel import select

    async with store.write() as session:
        if "phone" in spec:
            row = (
                await session.exec(select(Customer).where(Customer.phone == spec["phone"]))
            ).first()
            if row is None:
                raise ValueError(f"no demo customer with phone {spec['phone']}")
            return str(row.id)
        customer = Customer(name=spec.get("name", "Caller"), tier=spec.get("tier", "standard"))
        session.add(customer)
    return str(customer.id)


def _texts(suggestions: list[dict[str, Any]]) -> str:
    return "\n".join(s["text"] for s in suggestions)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", normalize_numbers(text))


def judge(turn: dict[str, Any], result: TurnResult) -> None:
    text = _texts(result.suggestions).lower()
    sources = {
        src.get("id") for s in result.suggestions for src in s.get("sources") or () if src.get("type") == "article"
    }
    expect = turn.get("expect")
    if isinstance(expect, dict):
        problems = []
        for needle in expect.get("contains", []):
            if str(needle).lower() not in text:
                problems.append(f"missing {needle!r}")
        anyof = expect.get("any", [])
        if anyof and not any(str(n).lower() in text for n in anyof):
            problems.append(f"none of {anyof!r}")
        article = expect.get("article")
        if article:
            result.article_hit = article in sources
        if article and article not in sources:
            problems.append(f"no article {article!r} (got {sorted(sources)})")
        result.relevant = not problems
        result.problems += problems
    for needle in turn.get("never", []):
        if str(needle).lower() in text:
            result.relevant = False
            result.problems.append(f"says {needle!r}")
    for needle in turn.get("stale", []):
        if str(needle).lower() in text:
            result.stale.append(str(needle))
            result.problems.append(f"stale {needle!r}")
    result.pii_total += len(turn.get("pii", []))
    judge_pii(turn, result)
    raw = extract_entities(result.said)
    after = extract_entities(result.heard)
    kept = [*raw.order_numbers, *(f"{a.value:.2f}" for a in raw.amounts)]
    left = {*after.order_numbers, *(f"{a.value:.2f}" for a in after.amounts)}
    result.kept_total += len(kept)
    result.kept_lost = [k for k in kept if k not in left]
    if result.kept_lost:
        result.problems.append(f"redacted {result.kept_lost}")


def judge_pii(turn: dict[str, Any], result: TurnResult) -> None:
    """The PII is gone from what was published (and from what was suggested)."""
    heard = _squash(result.heard)
    suggested = _squash(_texts(result.suggestions))
    for digits in turn.get("pii", []):
        if str(digits) in heard or str(digits) in suggested:
            result.pii_leaked += 1
            result.problems.append(f"PII {digits} not redacted")


async def play(
    store: Store,
    knowledge: KnowledgeBase,
    scenario: dict[str, Any],
    transcribe: _Transcriber,
    settings: AssistSettings,
    window_s: float = COVERAGE_WINDOW_S,
    gap_s: float = TURN_GAP_S,
) -> list[TurnResult]:
    customer_id = await _customer_id(store, scenario.get("caller", {}))
    async with store.write() as session:
        call = Call(customer_id=customer_id, state="active", reason=scenario.get("reason", ""))
        session.add(call)
    redactor = CallRedactor()
    published: list[tuple[float, dict[str, Any]]] = []

    async def publish(event: dict[str, Any]) -> dict[str, Any]:
        published.append((time.perf_counter(), event))
        return event

    assistant = CallAssistant(
        call_id=call.id,
        customer_id=customer_id,
        store=store,
        settings=settings,
        engine=LocalSuggestionEngine(knowledge),
        knowledge=knowledge,
        publish=publish,
        customer_speaking=lambda: False,  # the VAD heard the end of each turn
    )
    await assistant.on_accept()
    results: list[TurnResult] = []
    clock = 0
    try:
        for n, turn in enumerate(scenario["turns"]):
            speaker = "agent" if "agent" in turn else "customer"
            said = turn.get("agent") or turn.get("say") or ""
            if "audio" in turn:
                said = await asyncio.to_thread(transcribe, turn["audio"])
            event = {
                "type": "transcript",
                "call_id": call.id,
                "speaker": speaker,
                "segment_id": f"seg{n}",
                "text": said,
                "final": True,
                "start_ms": clock,
                "end_ms": clock + 2000,
            }
            clock += 2500
            redacted = redactor.transcript(event)
            started = time.perf_counter()
            mark = len(published)
            assistant.on_transcript(redacted.event)
            redactor.published(redacted.event, said)
            if redacted.revised is not None:
                assistant.on_transcript(redacted.revised)
                # The earlier turn's published text is now the revised one.
                for earlier in results:
                    if f"seg{earlier.index}" == redacted.revised["segment_id"]:
                        earlier.heard = redacted.revised["text"]
                        earlier.pii_leaked = 0
                        earlier.problems = [p for p in earlier.problems if not p.startswith("PII")]
                        judge_pii(scenario["turns"][earlier.index], earlier)
            await assistant.idle(timeout=5.0)
            if speaker != "customer":
                continue
            mine = [e for _, e in published[mark:] if e["type"] == "ai_suggestion"]
            first = next((t for t, e in published[mark:] if e["type"] == "ai_suggestion"), None)
            result = TurnResult(
                scenario=scenario["name"],
                index=n,
                said=said,
                heard=redacted.event["text"],
                needs=turn.get("expect") != "none",
                suggestions=[e for e in mine if e.get("done") and not e.get("stopped")],
                latency_ms=(first - started) * 1000 if first is not None else None,
                window_s=window_s,
            )
            judge(turn, result)
            results.append(result)
            await asyncio.sleep(0 if turn.get("quick") else gap_s)
    finally:
        await assistant.close()
    return results


async def run_scenarios(
    scenarios: list[dict[str, Any]] | None = None,
    *,
    store: Store | None = None,
    settings: AssistSettings | None = None,
    coverage_window_s: float = COVERAGE_WINDOW_S,
    turn_gap_s: float = TURN_GAP_S,
) -> Report:
    scenarios = scenarios if scenarios is not None else load_scenarios()
    settings = settings or AssistSettings()
    transcribe = _Transcriber()
    with tempfile.TemporaryDirectory() as tmp:
        own = store is None
        if store is None:
            store = Store(f"sqlite+aiosqlite:///{Path(tmp) / 'scenarios.db'}")
            await store.create_schema()
            await load_demo(store)
        try:
            knowledge = KnowledgeBase()
            await knowledge.refresh(store)
            turns: list[TurnResult] = []
            for scenario in scenarios:
                turns += await play(
                    store, knowledge, scenario, transcribe, settings, coverage_window_s, turn_gap_s
                )
            return Report(turns, len(scenarios))
        finally:
            if own:
                await store.close()


def print_report(report: Report, *, verbose: bool = False) -> None:
    f = report.figures()
    print(
        f"{f['conversations']} conversations, {f['customer_turns']} customer turns "
        f"({f['needing']} asking/complaining/closing, {f['judged']} with expectations)"
    )
    print(f"  coverage (suggestion within {COVERAGE_WINDOW_S:.0f} s)  {f['coverage']:.1%}   aim >= 95%")
    print(f"  relevance                           {f['relevance']:.1%}   aim >= 90%")
    print(f"  right article cited                 {f['article_hits']:.1%}   (knowledge retrieval)")
    print(f"  stale suggestions                   {f['stale']}        aim 0")
    print(
        f"  final transcript -> first suggestion p50 {f['latency_p50_ms']} ms, "
        f"p95 {f['latency_p95_ms']} ms   aim p95 < 100 ms"
    )
    print(
        f"  redaction recall                    {f['redaction_recall']:.1%}  "
        f"({f['pii_items']} PII items)   aim 100%"
    )
    print(
        f"  false redactions                    {f['false_redactions']}  "
        f"(of {f['kept_items']} order numbers and amounts)   aim 0"
    )
    failing = [t for t in report.turns if t.failed]
    print(f"failing turns: {len(failing)}")
    for t in failing if not verbose else report.turns:
        print(f"- {t.scenario} #{t.index}: {t.said!r}")
        if t.heard != t.said:
            print(f"    heard: {t.heard!r}")
        reasons = list(t.problems)
        if t.needs and not t.covered:
            reasons.append("no suggestion" if t.latency_ms is None else f"late ({t.latency_ms:.0f} ms)")
        print(f"    {'; '.join(reasons) or 'ok'}")
        for s in t.suggestions:
            print(f"    [{s['kind']}] {s['text']}")


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print every turn")
    args = parser.parse_args(argv)
    scenarios = load_scenarios()
    if args.only:
        scenarios = [s for s in scenarios if args.only in s["name"]]
    report = await run_scenarios(scenarios)
    print_report(report, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
