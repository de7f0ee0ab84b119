"""What admins run: compose.yaml validates, the image and coturn configs keep their promises.

docs/admin.md describes these files; the TURN configs are started for real in
tests/signaling/test_turn.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from server.config import ConfigError, load_settings
from tests.conftest import Running

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("docker-compose is not installed (apt-get install docker-compose)")


def run_compose(tmp_path: Path, *args: str, env_file: Path | None = None, **env: str):
    """`docker-compose -f compose.yaml [--env-file F] ARGS` with only the given environment.

    An empty env file by default, so that a developer's own .env does not change the result.
    """
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("profile", "env_file"),
    [([], None), (["--profile", "postgres"], ROOT / ".env.example")],
    ids=["defaults", "postgres-with-env-example"],
)
def test_compose_config_is_valid(tmp_path: Path, profile: list[str], env_file: Path | None) -> None:
    result = run_compose(
        tmp_path, *profile, "config", "-q", env_file=env_file, TURN_SECRET="0123abcd"
    )
    assert result.returncode == 0, result.stderr


def test_compose_services(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "--profile", "postgres", "config", TURN_SECRET="0123abcd")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    # Only the server and coturn run without a profile (compose v1 lists every service).
    assert {name for name, svc in services.items() if not svc.get("profiles")} == {"server", "coturn"}
    assert "postgres" in services

    server = services["server"]
    assert Path(server["build"]["context"]) == ROOT
    assert server["network_mode"] == "host"
    env = server["environment"]
    assert env["CALLASSIST_TURN_SECRET"] == "0123abcd"
    assert env["CALLASSIST_DATA_DIR"] == "/data"
    assert env["CALLASSIST_TURN_URLS"].startswith("turn:")
    assert env["DATABASE_URL"] == ""  # SQLite unless .env says otherwise
    assert any(v.startswith("callassist-data:/data") for v in server["volumes"])

    coturn = services["coturn"]
    assert coturn["image"].startswith("coturn/coturn")
    assert coturn["network_mode"] == "host"
    assert coturn["entrypoint"] == ["/bin/sh", "/etc/callassist/entrypoint.sh"]
    # The secret reaches coturn through the environment, never its command line.
    assert coturn["environment"]["TURN_SECRET"] == "0123abcd"
    assert "0123abcd" not in " ".join(coturn.get("command", []))
    assert "healthcheck" in coturn

    postgres = services["postgres"]
    assert postgres["profiles"] == ["postgres", "cluster"]
    assert "healthcheck" in postgres
    assert all(p.startswith("127.0.0.1:") for p in postgres["ports"])
    assert any(v.startswith("postgres-data:") for v in postgres["volumes"])
    # The server can't depend on a service that is only there with a profile.
    assert "postgres" not in server.get("depends_on", {})
    assert {"callassist-data", "coturn-data", "postgres-data"} <= set(config["volumes"])


def test_compose_cluster_profile(tmp_path: Path) -> None:
    """Two nodes behind a real reverse proxy (Caddy), over Redis and PostgreSQL."""
    result = run_compose(
        tmp_path,
        *("--profile", "cluster", "config"),
        TURN_SECRET="0123abcd",
        CALLASSIST_SECRET_KEY="k" * 40,
        DATABASE_URL="postgresql+asyncpg://callassist:pw@127.0.0.1:5432/callassist",
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"node1", "node2", "proxy", "redis", "postgres", "coturn"} <= set(services)
    nodes = [services["node1"], services["node2"]]
    urls = [n["environment"]["CALLASSIST_NODE_URL"] for n in nodes]
    assert urls == ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]
    for node in nodes:
        env = node["environment"]
        assert node["profiles"] == ["cluster"] and node["network_mode"] == "host"
        assert env["CALLASSIST_REDIS_URL"] == "redis://127.0.0.1:6379/0"
        assert env["CALLASSIST_STT_THREADS"] in (1, "1")  # one node per core
        assert {"redis", "postgres", "coturn"} <= set(node["depends_on"])
        # Every setting a node reads is valid: what compose gives it loads.
        loaded = load_settings(env={k: str(v) for k, v in env.items() if v is not None})
        assert loaded.clustered and loaded.own_url == env["CALLASSIST_NODE_URL"]
    assert nodes[0]["volumes"] != nodes[1]["volumes"]

    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert proxy["environment"]["CALLASSIST_NODES"].split() == ["127.0.0.1:8081", "127.0.0.1:8082"]
    caddyfile = (ROOT / "proxy" / "Caddyfile").read_text()
    assert "{$CALLASSIST_NODES" in caddyfile and "health_uri /health" in caddyfile
    assert "flush_interval -1" in caddyfile  # SSE unbuffered; Caddy passes WebSockets as is
    redis = services["redis"]
    assert all(p.startswith("127.0.0.1:") for p in redis["ports"])
    assert redis["command"][:3] == ["redis-server", "--save", ""]


def test_compose_without_a_secret_validates_but_nothing_runs_without_one(tmp_path: Path) -> None:
    # `config -q` accepts the file as it is; the secret is checked where it is used: coturn's
    # entrypoint refuses to start (test_coturn_entrypoint_needs_the_secret) and so does the
    # server when it has TURN URLs but no secret.
    result = run_compose(tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr
    result = run_compose(tmp_path, "config")
    env = yaml.safe_load(result.stdout)["services"]["server"]["environment"]
    assert env["CALLASSIST_TURN_URLS"] and not env["CALLASSIST_TURN_SECRET"]
    with pytest.raises(ConfigError, match="CALLASSIST_TURN_SECRET"):
        load_settings(env={k: str(v) for k, v in env.items() if v is not None})


def test_env_example_documents_every_compose_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    documented = set(
        re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert used - documented == set()
    assert "TURN_SECRET" in used


def test_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install \.$", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


async def test_dockerfile_healthcheck_command(running: Running, tmp_path: Path) -> None:
    """The image's HEALTHCHECK one-liner, run as Docker would, against a real server."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    command = re.search(r"^HEALTHCHECK .*?\bCMD (.+)$", dockerfile, re.MULTILINE)
    assert command is not None
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    port = running.server.port

    async def check(**env: str) -> int:
        process = await asyncio.create_subprocess_exec(
            *("/bin/sh", "-c", command.group(1)),
            env={"PATH": path, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(process.wait(), 30)

    assert await check(CALLASSIST_HOST="0.0.0.0", CALLASSIST_PORT=str(port)) == 0
    assert await check(CALLASSIST_HOST="127.0.0.1", CALLASSIST_PORT=str(port)) == 0
    await running.server.close()  # nothing listens on the port any more
    assert await check(CALLASSIST_HOST="0.0.0.0", CALLASSIST_PORT=str(port)) != 0


def _conf(name: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in (ROOT / "coturn" / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            options.setdefault(key, []).append(value)
    return options


@pytest.mark.parametrize("name", ["turnserver.conf", "turnserver.prod.conf"])
def test_coturn_configs(name: str) -> None:
    conf = _conf(name)
    assert "static-auth-secret" not in conf  # the secret comes from the environment
    for flag in ("use-auth-secret", "fingerprint", "no-cli", "no-multicast-peers"):
        assert flag in conf, flag
    assert "realm" in conf and conf["listening-port"] == ["3478"]
    assert int(conf["min-port"][0]) < int(conf["max-port"][0])
    assert "allow-loopback-peers" not in conf


def test_coturn_production_config() -> None:
    conf = _conf("turnserver.prod.conf")
    denied = conf["denied-peer-ip"]
    for private in (
        "10.0.0.0-10.255.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "100.64.0.0-100.127.255.255",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::1",
    ):
        assert private in denied, private
    assert conf["tls-listening-port"] == ["5349"]
    assert conf["cert"] and conf["pkey"]
    assert "no-tlsv1" in conf and "no-tlsv1_1" in conf
    assert int(conf["user-quota"][0]) > 0 and int(conf["total-quota"][0]) > 0


def test_coturn_entrypoint_needs_the_secret(tmp_path: Path) -> None:
    entrypoint = ROOT / "coturn" / "entrypoint.sh"
    base = {"PATH": "/usr/bin:/bin", "TURN_CONFIG": str(ROOT / "coturn" / "turnserver.conf")}
    result = subprocess.run(["sh", str(entrypoint)], env=base, capture_output=True, text=True)
    assert result.returncode != 0 and "TURN_SECRET" in result.stderr
    result = subprocess.run(
        ["sh", str(entrypoint)], env={**base, "TURN_SECRET": "a b"}, capture_output=True, text=True
    )
    assert result.returncode != 0 and "whitespace" in result.stderr
    result = subprocess.run(
        ["sh", str(entrypoint)],
        env={**base, "TURN_SECRET": "x", "TURN_CONFIG": str(tmp_path / "missing.conf")},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "missing.conf" in result.stderr
