"""The API's one error type; server/app.py maps it (and aiohttp's own) to the JSON shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only default; subclasses set their own
    detail: str = ""
    """What went wrong inside, for staff and logs only (a customer sees `message`)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra  # more fields for the error object, e.g. the conflicting call_id


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str = "missing or invalid token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str, code: str = "not_found") -> ApiError:
    return ApiError(404, code, message)


def conflict(message: str, code: str = "conflict", **extra: Any) -> ApiError:
    return ApiError(409, code, message, **extra)
