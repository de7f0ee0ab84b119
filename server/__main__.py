"""Command line: `python -m server serve | user add|disable|enable | kb import | customers import | orders import`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from server.config import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        demo=True if getattr(args, "demo", False) else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import DEMO_CREDENTIALS, create_app

    settings = _settings(args)
    # Whatever the server writes (database, recordings, keys) is for its own user only.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.redact:
        from server.redaction import RedactingLogFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingLogFilter())
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    app = create_app(settings)

    async def announce(app: web.Application) -> None:
        url = f"http://{settings.host}:{settings.port}/"
        print(f"callassist listening on {url}", flush=True)
        demo = app[DEMO_CREDENTIALS]
        for role, cred in demo.items():
            print(
                f"demo {role} account: username {cred['username']} password {cred['password']}",
                flush=True,
            )

    app.on_startup.append(announce)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10)
    except (OSError, SQLAlchemyError) as exc:
        # A busy port or an unreachable database: say so plainly (compose restarts us).
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from server.auth import UserExists, add_user
    from server.store import open_store

    if not args.password_stdin:
        print("error: pass the password on standard input with --password-stdin", file=sys.stderr)
        return 2
    password = sys.stdin.read().rstrip("\r\n")
    settings = _settings(args)

    async def run() -> int:
        try:
            async with open_store(settings.sqlalchemy_url, settings.data_dir) as store:
                await add_user(store, args.name, password, args.role)
        except UserExists as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"created {args.role} {args.name}")
        return 0

    return asyncio.run(run())


def cmd_user_access(args: argparse.Namespace) -> int:
    from server.auth import set_disabled
    from server.store import open_store

    settings = _settings(args)
    disable = args.user_command == "disable"

    async def run() -> int:
        try:
            async with open_store(settings.sqlalchemy_url, settings.data_dir) as store:
                await set_disabled(store, args.name, disable)
        except LookupError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 1
        if disable:
            print(f"disabled {args.name}: its tokens stop working within seconds")
        else:
            print(f"enabled {args.name}: it can log in again")
        return 0

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (HTTP, signaling, media, assist)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.add_argument("--demo", action="store_true", help="load demo data and accounts")
    serve.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="manage staff accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create an agent or admin account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("agent", "admin"))
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--data-dir")
    add.set_defaults(func=cmd_user_add)
    for name, about in (
        ("disable", "refuse an account's logins and end its tokens (works while the server runs)"),
        ("enable", "let a disabled account log in again (its old tokens stay revoked)"),
    ):
        access = user_sub.add_parser(name, help=about)
        access.add_argument("name")
        access.add_argument("--data-dir")
        access.set_defaults(func=cmd_user_access)

    from server.assist.cli import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
