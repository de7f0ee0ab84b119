"""`--demo`: demo agent and admin accounts, and the assist demo data set."""

from __future__ import annotations

import json
import os
import secrets

from server.auth import UserExists, add_user
from server.config import Settings
from server.store import Store

DEMO_USERS = (("agent", "agent"), ("admin", "admin"))


async def setup_demo(settings: Settings, store: Store) -> dict[str, dict[str, str]]:
    """Create the demo accounts once (passwords kept in the data dir) and load demo data."""
    path = settings.data_dir / "demo_credentials.json"
    try:
        creds: dict[str, dict[str, str]] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        creds = {
            role: {"username": username, "password": secrets.token_urlsafe(9)}
            for username, role in DEMO_USERS
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
    for role, cred in creds.items():
        try:
            await add_user(store, cred["username"], cred["password"], role)
        except UserExists:
            pass
    from server.assist.demo import load_demo

    await load_demo(store)
    return creds
