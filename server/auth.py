"""Accounts and tokens: argon2 password hashes, HS256 JWTs carrying the role."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select

from server.errors import ApiError, forbidden, unauthorized
from server.models import User
from server.store import Store

ROLES = ("agent", "admin")
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("callassist-timing-equaliser")


@dataclass(frozen=True)
class Principal:
    role: str  # customer | agent | admin
    subject: str  # username, or customer id
    customer_id: str | None = None

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
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": principal.subject,
            "role": principal.role,
            "iat": now,
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
        return Principal(role=role, subject=str(claims["sub"]), customer_id=claims.get("cid"))


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
    async with store.write() as session:
        if await session.get(User, username) is not None:
            raise UserExists(f"user {username!r} already exists")
        user = User(username=username, role=role, password_hash=_hasher.hash(password))
        session.add(user)
    return user


async def authenticate(store: Store, username: str, password: str) -> User:
    async with store.session() as session:
        user = (await session.exec(select(User).where(User.username == username))).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise ApiError(401, "invalid_credentials", "wrong username or password") from None
    if user is None:
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    return user
