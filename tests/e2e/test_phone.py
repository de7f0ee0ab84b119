"""A phone caller's conversation with a browser agent, transcribed by the local Whisper.

The same lines as tests/e2e/test_transcription.py, the customer's over Twilio Media Streams
(8 kHz μ-law, sent in real time by the simulator) and the agent's over WebRTC. 8 kHz costs
accuracy: the customer's word error rate is printed next to the bound it must stay under
(the WebRTC figure for the same fixtures is in that test's output). The caller hangs up at
the end: the call ends and its summary is written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from media.wer import wer as word_error_rate
from server.qa import encode_wav_to_opus
from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
from tests.conftest import serving
from tests.e2e.test_transcription import CONVERSATION, finals
from tests.media.speech import fixture
from tests.phone.conftest import AUTH_TOKEN, PUBLIC_URL, phone_settings

pytestmark = pytest.mark.slow


async def test_phone_caller_is_transcribed_and_hang_up_writes_the_summary(tmp_path: Path) -> None:
    settings = phone_settings(
        tmp_path / "data", CALLASSIST_STT_ENGINE="local", CALLASSIST_ASSIST_ENGINE="local"
    )
    async with serving(settings) as run:
        agent_token = await run.agent()
        caller = TwilioCaller(run.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=run.http)
        try:
            await caller.dial()
            call_id = caller.call_id
            await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
            agent = run.participant(agent_token, "agent")
            await agent.connect(call_id)

            for name in CONVERSATION:
                before = len(finals(agent, "customer" if name.startswith("customer") else "agent"))
                if name.startswith("customer"):
                    frames = wav_to_mulaw_frames(fixture(name).path)
                    caller.play(frames)
                    seconds = len(frames) * 0.02
                    speaker = "customer"
                else:
                    packets = encode_wav_to_opus(fixture(name).path)
                    agent.track.replace(packets)
                    seconds = len(packets) * 0.02
                    speaker = "agent"
                await agent.wait_for(
                    lambda e, s=speaker, b=before: e["type"] == "transcript" and e["final"]
                    and e["speaker"] == s and len(finals(agent, s)) > b,
                    timeout=seconds + 10,
                )
                await asyncio.sleep(1.5)

            wers = {}
            for role in ("customer", "agent"):
                refs = " ".join(fixture(n).text for n in CONVERSATION if n.startswith(role))
                hyp = " ".join(e["text"] for e in finals(agent, role))
                wers[role] = word_error_rate(refs, hyp)
                print(f"{role} ({'phone, 8 kHz' if role == 'customer' else 'WebRTC'}): "
                      f"WER {wers[role]:.1%}\n  ref: {refs}\n  hyp: {hyp}")
            assert wers["customer"] <= 0.25, wers
            assert wers["agent"] <= 0.15, wers
            # The agent heard the caller all along, and the caller heard the agent.
            assert agent.received.packets > 500
            assert len(caller.heard.payloads) > 500
            # Suggestions came as in any call.
            assert [e for e in agent.events if e["type"] == "ai_suggestion" and e["done"]]

            await caller.stop()  # the caller hangs up
            await agent.wait_for(lambda e: e["type"] == "summary", timeout=20)
            status, body = await run.api.call("GET", f"/api/calls/{call_id}/summary", agent_token)
            assert status == 200 and body["summary"]["text"]
            status, call = await run.api.call("GET", f"/api/calls/{call_id}", agent_token)
            assert call["state"] == "ended" and call["customer"]["channel"] == "phone"
        finally:
            await caller.close()


