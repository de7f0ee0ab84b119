"""Accounts and tokens: argon2 password hashes, HS256 JWTs carrying the role."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select

from server.errors import ApiError, forbidden, unauthorized
from server.models import User, UserAccess
from server.store import Store

ROLES = ("agent", "admin")
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("callassist-timing-equaliser")
# argon2 holds a core for ~50-200 ms per hash (64 MiB, 3 passes) and releases the GIL, so
# it runs here, never on the event loop: on the loop, 50 concurrent wrong logins delayed a
# live call's data-channel ping by up to 6 s (bench/security.py). One thread, niced (argon2's
# lane threads inherit it): a login storm queues behind media instead of taking both cores.
def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


_HASH_POOL = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="argon2", initializer=_lower_priority
)


async def _off_loop(fn, *args):  # type: ignore[no-untyped-def]
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, fn, *args)


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    role: str  # customer | agent | admin
    subject: str  # username, or customer id
    customer_id: str | None = None
    issued_at_ms: int = 0

    @property
    def is_staff(self) -> bool:
        return self.role in ("agent", "admin")


class UserExists(Exception):
    pass


class Tokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s

    def issue(self, principal: Principal) -> str:
        now_s = time.time()
        now = int(now_s)
        claims: dict[str, Any] = {
            "sub": principal.subject,
            "role": principal.role,
            "iat": now,
            "iat_ms": int(now_s * 1000),  # revocation compares in ms (user disable)
            "exp": now + self._ttl_s,
        }
        if principal.customer_id:
            claims["cid"] = principal.customer_id
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise unauthorized("invalid token") from None
        role = claims.get("role")
        if role not in ("customer", "agent", "admin"):
            raise unauthorized("invalid token")
        issued = claims.get("iat_ms", int(claims.get("iat", 0)) * 1000)
        return Principal(
            role=role,
            subject=str(claims["sub"]),
            customer_id=claims.get("cid"),
            issued_at_ms=issued if isinstance(issued, int) else 0,
        )


def principal_from_header(tokens: Tokens, header: str | None) -> Principal:
    if not header:
        raise unauthorized("missing Authorization: Bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'")
    return tokens.verify(token.strip())


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"this needs the role {' or '.join(roles)}")


async def add_user(store: Store, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ValueError("username must be 1-64 letters, digits, '.', '_' or '-'")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    password_hash = await _off_loop(_hasher.hash, password)
    async with store.write() as session:
        if await session.get(User, username) is not None:
            raise UserExists(f"user {username!r} already exists")
        user = User(username=username, role=role, password_hash=password_hash)
        session.add(user)
    return user


async def authenticate(store: Store, username: str, password: str) -> User:
    """The account, if the password is right and the account is enabled. Unknown users,
    wrong passwords and disabled accounts take the same time and get the same answer."""
    async with store.session() as session:
        user = (await session.exec(select(User).where(User.username == username))).first()
        access = await session.get(UserAccess, username) if user is not None else None
    matches = await _off_loop(
        _password_matches, user.password_hash if user else _DUMMY_HASH, password
    )
    if user is None or not matches or (access is not None and access.disabled):
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    return user


async def set_disabled(store: Store, username: str, disabled: bool) -> None:
    """`user disable` ends every token of the account and refuses logins; `user enable`
    allows logins again (tokens from before the disable stay dead)."""
    async with store.write() as session:
        if await session.get(User, username) is None:
            raise LookupError(f"no user {username!r}")
        access = await session.get(UserAccess, username) or UserAccess(username=username)
        access.disabled = disabled
        if disabled:
            access.revoked_at = int(time.time() * 1000)
        session.add(access)


class Revocations:
    """Which staff tokens no longer count, read from the database at most every
    `refresh_s`: `user disable` in another process takes effect within that time."""

    def __init__(self, store: Store, refresh_s: float = 2.0) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._revoked_at: dict[str, int] = {}
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def is_revoked(self, who: Principal) -> bool:
        if not who.is_staff:
            return False
        loop = asyncio.get_running_loop()
        if loop.time() - self._loaded_at > self._refresh_s:
            async with self._lock:
                if loop.time() - self._loaded_at > self._refresh_s:
                    async with self._store.session() as session:
                        rows = (await session.exec(select(UserAccess))).all()
                    self._revoked_at = {
                        r.username: (2**62 if r.disabled else r.revoked_at) for r in rows
                    }
                    self._loaded_at = loop.time()
        return who.issued_at_ms <= self._revoked_at.get(who.subject, -1)
