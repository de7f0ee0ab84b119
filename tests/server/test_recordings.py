"""Per-call recordings, when enabled, are kept in the data dir for the agent and admins only."""

from __future__ import annotations

import asyncio
import io
import wave

import numpy as np

from tests.conftest import make_settings, serving
from tests.server.test_auth import assert_error


async def test_recordings_are_kept_and_guarded(tmp_path, tone_packets) -> None:
    settings = make_settings(
        tmp_path / "data", CALLASSIST_STT_ENGINE="local", CALLASSIST_RECORD_AUDIO="true"
    )
    async with serving(settings) as run:
        http = run.http
        agent = await run.agent()
        admin = await run.agent("root", role="admin")
        cust = await run.customer("Ann", phone="+15550001111")
        call_id = await run.new_call(cust["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", agent)
        customer = run.participant(cust["token"], "customer", packets=tone_packets(440, 2.0))
        await customer.connect(call_id)
        await asyncio.sleep(3.0)
        await run.api.call("POST", f"/api/calls/{call_id}/end", agent)

        for token in (agent, admin):
            async with http.get(
                f"{run.url}/api/calls/{call_id}/recordings/customer",
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
                body = await r.read()
        with wave.open(io.BytesIO(body)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        assert 1.8 <= len(pcm) / 16000 <= 4.0
        spectrum = np.abs(np.fft.rfft(pcm[8000:24000].astype(float)))
        assert abs(np.fft.rfftfreq(16000, 1 / 16000)[int(np.argmax(spectrum))] - 440) < 5

        status, body = await run.api.call("GET", f"/api/calls/{call_id}/recordings/customer", cust["token"])
        assert_error(status, body, 403)
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/recordings/agent", agent)
        assert_error(status, body, 404)  # the agent sent no audio
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/recordings/..%2Fx", agent)
        assert status in (400, 404) and "error" in body


async def test_no_recordings_by_default(tmp_path, tone_packets) -> None:
    settings = make_settings(tmp_path / "data", CALLASSIST_STT_ENGINE="local")
    async with serving(settings) as run:
        agent = await run.agent()
        cust = await run.customer("Ann", phone="+15550001111")
        call_id = await run.new_call(cust["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", agent)
        customer = run.participant(cust["token"], "customer", packets=tone_packets(440, 1.0))
        await customer.connect(call_id)
        await asyncio.sleep(1.5)
        await run.api.call("POST", f"/api/calls/{call_id}/end", agent)
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/recordings/customer", agent)
        assert_error(status, body, 404)
        assert not (settings.data_dir / "recordings").exists()
