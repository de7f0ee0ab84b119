"""Command-line imports: `kb import DIR`, `customers import FILE`, `orders import FILE`.

server/__main__.py adds these with `add_commands(subparsers)`; a parsed command's
`args.func(args)` runs it (settings from the environment and `--data-dir`) and returns
the exit code. `run_command(args, settings)` is the same with settings given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.assist.importer import ImportFileError, import_customers, import_kb, import_orders

if TYPE_CHECKING:
    from server.config import Settings

_IMPORTERS = {
    "kb-import": (import_kb, "articles"),
    "customers-import": (import_customers, "customers"),
    "orders-import": (import_orders, "orders"),
}


def add_commands(subparsers: Any) -> None:
    """Add the `kb`, `customers` and `orders` commands to the main parser's subparsers."""
    for noun, help_text, arg, arg_help in (
        ("kb", "knowledge base articles", "directory", "folder of Markdown (*.md) articles"),
        ("customers", "customer records", "file", "a .json or .csv file of customers"),
        ("orders", "order records", "file", "a .json or .csv file of orders (customers first)"),
    ):
        parser = subparsers.add_parser(noun, help=help_text)
        verbs = parser.add_subparsers(dest=f"{noun}_command", required=True, metavar="import")
        imp = verbs.add_parser("import", help=f"import {help_text}; existing records are updated")
        imp.add_argument("path", type=Path, metavar=arg.upper(), help=arg_help)
        imp.add_argument(
            "--data-dir",
            default=None,
            help="data directory (default: CALLASSIST_DATA_DIR or ./data)",
        )
        imp.set_defaults(assist_command=f"{noun}-import", func=main)


def is_assist_command(args: argparse.Namespace) -> bool:
    return getattr(args, "assist_command", None) in _IMPORTERS


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one parsed assist command against the settings' database; returns the exit code."""
    from server.store import open_store

    importer, noun = _IMPORTERS[args.assist_command]
    try:
        async with open_store(settings.sqlalchemy_url, settings.data_dir) as store:
            count = await importer(store, args.path)
    except ImportFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"imported {count} {noun if count != 1 else noun[:-1]} from {args.path}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Synchronous entry: settings from the environment and `--data-dir`, then run."""
    from server.config import ConfigError, load_settings

    try:
        settings = load_settings(data_dir=getattr(args, "data_dir", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_command(args, settings))
