"""Calls relayed through a real coturn on loopback, started the way compose.yaml starts it.

Debian's `turnserver` runs through coturn/entrypoint.sh (the secret comes from the
environment) with a loopback config; the server and both QA participants use TURN relay
candidates only, so every packet of the call goes through coturn.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import RTCPeerConnection

from server.qa import Participant, QaError
from signaling.ice import rtc_configuration, turn_rest_credentials
from tests.conftest import Running, dominant_frequency, make_settings, rms, serving, wait_for_audio

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "coturn" / "entrypoint.sh"
TURN_SECRET = "test-turn-secret-5f1c9a"
REALM = "callassist.test"
ALLOCATED = "ALLOCATE processed, success"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def _stun_binding_ok(port: int, timeout: float = 0.2) -> bool:
    """Send a STUN Binding request; True once a Binding success response comes back."""
    txid = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data, _ = sock.recvfrom(2048)
        except OSError:  # timeout, or ICMP port unreachable before it listens
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == txid


class Coturn:
    """Debian's turnserver started by coturn/entrypoint.sh from a shipped config + overrides."""

    def __init__(self, base: Path, shipped: str, *, tls: bool = False) -> None:
        self.base = base
        self.port = _free_port()
        self.tls_port = _free_port() if tls else None
        # Relay ports below Linux's ephemeral range (32768+), where aiortc binds its sockets.
        low = random.randrange(20000, 30000, 100)
        self.log_path = base / "turnserver.log"
        self.config = base / "turnserver.conf"
        text = (ROOT / "coturn" / shipped).read_text().replace("/certs/", f"{base}/")
        overrides = [
            "# test overrides (later lines win): loopback only, files in the temporary dir",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"listening-port={self.port}",
            f"tls-listening-port={self.tls_port or _free_port()}",
            f"min-port={low}",
            f"max-port={low + 99}",
            f"userdb={base / 'turndb'}",
            f"pidfile={base / 'turnserver.pid'}",
            f"log-file={self.log_path}",
            "simple-log",
            "no-stdout-log",
            "verbose",
        ]
        self.config.write_text(text + "\n" + "\n".join(overrides) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def allow_loopback_peers(self) -> None:
        # Relay addresses are 127.0.0.1 here; never in production (docs/admin.md).
        with self.config.open("a") as config:
            config.write("allow-loopback-peers\n")

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TURN_SECRET": TURN_SECRET,
            "TURN_CONFIG": str(self.config),
            "TURN_REALM": REALM,
            "TURN_RUNTIME_DIR": str(self.base),
        }
        self.process = subprocess.Popen(
            ["sh", str(ENTRYPOINT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while not _stun_binding_ok(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(
                    f"turnserver exited ({self.process.returncode}): {err}\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not answer STUN on {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def url(self, transport: str = "udp") -> str:
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def log(self, since: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[since:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


def _need_turnserver() -> None:
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (apt-get install coturn)")


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn/turnserver.conf on loopback."""
    _need_turnserver()
    server = Coturn(tmp_path_factory.mktemp("coturn"), "turnserver.conf")
    server.allow_loopback_peers()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def turn_settings(tmp_path: Path, coturn: Coturn, secret: str = TURN_SECRET, **env: str):
    return make_settings(
        tmp_path / "data",
        CALLASSIST_TURN_URLS=coturn.url(),
        CALLASSIST_TURN_SECRET=secret,
        CALLASSIST_ICE_TRANSPORT_POLICY="relay",
        **env,
    )


class RewrittenIce(Participant):
    """A participant whose `iceServers` are rewritten: forged TURN credentials, or none."""

    def __init__(
        self, *args: Any, rewrite: Callable[[list[dict]], list[dict]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._rewrite = rewrite

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await super().request(method, path, **kwargs)
        if path == "/api/webrtc/ice-servers":
            body["iceServers"] = self._rewrite(body["iceServers"])
        return body


def forge(username: str, credential: str) -> Callable[[list[dict]], list[dict]]:
    def rewrite(servers: list[dict]) -> list[dict]:
        return [
            {**s, "username": username, "credential": credential} if "credential" in s else s
            for s in servers
        ]

    return rewrite


def candidate_types(sdp: str) -> set[str]:
    return {
        line.split(" typ ")[1].split()[0]
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    }


async def _talk(run: Running, call_id: str, customer: Participant, tone_packets) -> None:
    """Connect the agent to an accepted call and check that both sides hear each other."""
    agent_token = await run.agent()
    status, body = await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert status == 200, body
    agent = run.participant(agent_token, "agent", packets=tone_packets(880), relay_only=True)
    await agent.connect(call_id)
    await wait_for_audio(agent)
    await wait_for_audio(customer)
    for who, freq in ((agent, 440), (customer, 880)):
        assert who.pc is not None
        assert candidate_types(who.pc.localDescription.sdp) == {"relay"}
        assert candidate_types(who.pc.remoteDescription.sdp) == {"relay"}
        pcm = who.received.pcm(since_s=0.5)
        assert rms(pcm) > 2000, f"{who.role} heard silence"
        assert abs(dominant_frequency(pcm) - freq) < 10


async def test_call_is_relayed_through_coturn(coturn: Coturn, tmp_path: Path, tone_packets) -> None:
    mark = coturn.mark()
    async with serving(turn_settings(tmp_path, coturn)) as run:
        cust = await run.customer("Ann", phone="+15550003333")
        call_id = await run.new_call(cust["token"])  # a customer gets TURN for its open call
        status, ice = await run.api.call("GET", "/api/webrtc/ice-servers", cust["token"])
        assert status == 200 and ice["iceServers"][0]["urls"] == [coturn.url()]
        expiry, _, user = ice["iceServers"][0]["username"].partition(":")
        assert user == cust["customer_id"] and int(expiry) > time.time()

        customer = run.participant(
            cust["token"], "customer", packets=tone_packets(440), relay_only=True
        )
        await customer.connect(call_id)
        await _talk(run, call_id, customer, tone_packets)

    log = coturn.log(mark)
    # Two participants and the server's two peers each allocated a relay on coturn.
    assert log.count(ALLOCATED) >= 4, log
    assert f"realm <{REALM}>" in log
    assert ":callassist-server>: incoming packet ALLOCATE processed, success" in log
    assert f":{cust['customer_id']}>: incoming packet ALLOCATE processed, success" in log
    # ICE chose relay-to-relay pairs: the media flows on channels bound through coturn.
    assert log.count("CHANNEL_BIND processed, success") >= 2, log


async def test_bad_credentials_fail_clearly_then_the_call_works(
    coturn: Coturn, tmp_path: Path, tone_packets
) -> None:
    async with serving(turn_settings(tmp_path, coturn)) as run:
        http = run.http
        cust = await run.customer("Bob", email="bob@example.com")
        call_id = await run.new_call(cust["token"])
        forged = {
            "a wrong secret": turn_rest_credentials("not-the-secret", "bob", 600),
            "an expired credential": turn_rest_credentials(
                TURN_SECRET, "bob", 600, now=time.time() - 3600
            ),
        }
        for what, (username, credential) in forged.items():
            mark = coturn.mark()
            bad = RewrittenIce(
                *(run.url, cust["token"], "customer"),
                relay_only=True,
                http=http,
                rewrite=forge(username, credential),
            )
            started = time.monotonic()
            try:
                with pytest.raises(QaError, match="gathered no ICE candidates"):
                    await bad.connect(call_id)
            finally:
                await bad.close()
            # coturn refuses at once; aiortc then offers no candidates (and logs nothing).
            assert time.monotonic() - started < 3, what
            assert "error 401: Unauthorized" in coturn.log(mark), what
            assert ALLOCATED not in coturn.log(mark), what

        # The server is fine and the same customer, with the server's credentials, connects.
        status, body = await run.api.call("GET", "/health")
        assert (status, body["status"]) == (200, "ok")
        customer = run.participant(
            cust["token"], "customer", packets=tone_packets(440), relay_only=True
        )
        await customer.connect(call_id)
        await _talk(run, call_id, customer, tone_packets)


async def test_server_with_wrong_secret_answers_503(coturn: Coturn, tmp_path: Path) -> None:
    async with serving(turn_settings(tmp_path, coturn, secret="not-the-secret")) as run:
        cust = await run.customer("Cy", phone="+15550004444")
        call_id = await run.new_call(cust["token"])
        # Host candidates on loopback: the client gathers; only the server's relay fails.
        for _attempt in range(2):
            customer = run.participant(cust["token"], "customer")
            started = time.monotonic()
            with pytest.raises(QaError, match="503") as failure:
                await customer.connect(call_id)
            assert time.monotonic() - started < 3
            assert "ice_gathering_failed" in str(failure.value)
            await customer.close()
        status, body = await run.api.call("GET", "/health")
        assert (status, body["status"]) == (200, "ok")
        status, body = await run.api.call("GET", f"/api/calls/{call_id}", cust["token"])
        assert (status, body["state"]) == (200, "waiting")


async def test_unreachable_turn_server_times_out_with_503(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    settings = make_settings(
        tmp_path / "data",
        CALLASSIST_TURN_URLS=f"turn:127.0.0.1:{port}?transport=udp",
        CALLASSIST_TURN_SECRET=TURN_SECRET,
        CALLASSIST_ICE_TRANSPORT_POLICY="relay",
        CALLASSIST_ICE_GATHER_TIMEOUT="1",
    )
    async with serving(settings) as run:
        http = run.http
        cust = await run.customer("Di", phone="+15550005555")
        call_id = await run.new_call(cust["token"])
        # The client offers host candidates only: aiortc would spend 5 s on the dead TURN too.
        customer = RewrittenIce(
            run.url, cust["token"], "customer", http=http, rewrite=lambda servers: []
        )
        started = time.monotonic()
        try:
            with pytest.raises(QaError, match="ice_gathering_timeout"):
                await customer.connect(call_id)
        finally:
            await customer.close()
        assert time.monotonic() - started < 3
        status, _ = await run.api.call("GET", "/health")
        assert status == 200


@pytest.fixture
def prod_coturn(tmp_path: Path) -> Iterator[Coturn]:
    """coturn/turnserver.prod.conf on loopback, with a self-signed certificate for 127.0.0.1."""
    _need_turnserver()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
        check=True,
        capture_output=True,
    )
    server = Coturn(tmp_path, "turnserver.prod.conf", tls=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_production_config_serves_tls_and_denies_private_peers(
    prod_coturn: Coturn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """coturn/turnserver.prod.conf: TURN over TLS (turns:) works; relaying to 127.0.0.1 is refused."""
    coturn = prod_coturn
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "fullchain.pem"))  # trust the test cert
    username, credential = turn_rest_credentials(TURN_SECRET, "probe", 600)
    servers = [
        {
            "urls": [f"turns:127.0.0.1:{coturn.tls_port}?transport=tcp"],
            "username": username,
            "credential": credential,
        }
    ]
    offerer = RTCPeerConnection(rtc_configuration(servers, "relay"))
    answerer = RTCPeerConnection(rtc_configuration(servers, "relay"))
    try:
        assert f"TLS/TCP listener opened on : 127.0.0.1:{coturn.tls_port}" in coturn.log()
        offerer.createDataChannel("events")
        await offerer.setLocalDescription(await offerer.createOffer())
        assert candidate_types(offerer.localDescription.sdp) == {"relay"}
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        # Both relays sit on 127.0.0.1, a denied peer range: coturn refuses the permissions.
        deadline = time.monotonic() + 10
        while "403: Forbidden IP" not in coturn.log():
            assert time.monotonic() < deadline, coturn.log()
            await asyncio.sleep(0.1)
        assert ALLOCATED in coturn.log() and f"realm <{REALM}>" in coturn.log()
        assert offerer.connectionState != "connected"
    finally:
        await offerer.close()
        await answerer.close()


# -- what every shipped config lets a relay reach, and how much one credential may hold -------

PRIVATE_PEERS = ["10.1.2.3", "172.16.5.6", "192.168.1.10", "169.254.169.254", "100.64.0.7"]


async def _turn_client(coturn: Coturn, user: str) -> Any:
    username, credential = turn_rest_credentials(TURN_SECRET, user, 600)
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", coturn.port), username, credential
    )
    return transport


async def _permission_refused(transport: Any, address: str, channel: int) -> bool:
    inner = transport._TurnTransport__inner_protocol
    try:
        await inner.channel_bind(channel, (address, 9))
    except stun.TransactionFailed as exc:
        assert exc.response.error_code == 403, exc.response.attributes
        return True
    return False


@pytest.mark.parametrize("shipped", ["turnserver.conf", "turnserver.prod.conf"])
async def test_shipped_configs_deny_private_peers_and_cap_allocations(
    shipped: str, tmp_path: Path
) -> None:
    """Both configs refuse relaying to private, link-local (cloud metadata) and CGNAT
    addresses, allow public ones, and stop one credential at its allocation quota."""
    _need_turnserver()
    if shipped.endswith("prod.conf"):
        # Its certificate is only needed for the TLS listener, which this test does not use.
        await asyncio.to_thread(
            subprocess.run,
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
            check=True, capture_output=True,
        )  # fmt: skip
    server = Coturn(tmp_path, shipped, tls=shipped.endswith("prod.conf"))
    server.start()
    clients: list[Any] = []
    try:
        client = await _turn_client(server, "probe")
        clients.append(client)
        for n, address in enumerate(PRIVATE_PEERS):
            assert await _permission_refused(client, address, 0x4000 + n), address
        assert not await _permission_refused(client, "8.8.8.8", 0x4100)

        # user-quota=12 allocations per credential; the next one is refused (486).
        username, credential = turn_rest_credentials(TURN_SECRET, "hog", 600)

        refused = None
        for _ in range(13):
            try:
                transport, _ = await create_turn_endpoint(
                    asyncio.DatagramProtocol, ("127.0.0.1", server.port), username, credential
                )
            except stun.TransactionFailed as exc:
                refused = exc.response.error_code
                break
            clients.append(transport)
        assert len(clients) == 1 + 12 and refused == 486
    finally:
        for client in clients:
            client.close()
        await asyncio.sleep(0.1)
        server.stop()
