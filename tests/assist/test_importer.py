import argparse
import json
from pathlib import Path

import pytest
from sqlmodel import select

from server.assist.cli import add_commands, is_assist_command, run_command
from server.assist.importer import ImportFileError, import_customers, import_kb, import_orders
from server.assist.models import Article, Order
from server.config import Settings
from server.models import Customer
from server.store import Store


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


async def test_import_kb_front_matter_and_heading(store: Store, tmp_path: Path) -> None:
    write(
        tmp_path / "kb" / "returns.md",
        '---\ntitle: "Returns"\ntags: [Return, refund]\n---\n# Returns\n\nThirty days.\n',
    )
    write(tmp_path / "kb" / "sub" / "lost.md", "# Lost packages\n\nWe replace them.\n")
    write(
        tmp_path / "kb" / "tags.md",
        "---\ntitle: Tags as list\ntags:\n  - sla\n  - support\nid: sla-basics\n---\nBody.\n",
    )
    assert await import_kb(store, tmp_path / "kb") == 3
    async with store.session() as session:
        rows = {a.id: a for a in (await session.exec(select(Article))).all()}
    assert rows["returns"].title == "Returns" and rows["returns"].tags == ["return", "refund"]
    assert rows["returns"].body == "Thirty days."
    assert rows["lost"].title == "Lost packages" and rows["lost"].tags == []
    assert rows["sla-basics"].tags == ["sla", "support"]
    # Re-import updates in place.
    write(tmp_path / "kb" / "returns.md", "# Returns\n\nSixty days.\n")
    assert await import_kb(store, tmp_path / "kb") == 3
    async with store.session() as session:
        assert (await session.get(Article, "returns")).body == "Sixty days."


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.md": "no heading here\n"}, "no title"),
        ({"a.md": "---\ntitle: x\n"}, "never ends"),
        ({"a.md": "---\njust words\n---\n# T\n\nbody\n"}, "not 'key: value'"),
        ({"a.md": "# Title only\n"}, "no text"),
        ({"a.md": "# A\n\nx\n", "sub/a.md": "# B\n\ny\n"}, "also used by"),
        ({"Bad Name!.md": "# A\n\nx\n"}, "must be lowercase"),
        ({"notes.txt": "hello"}, "no Markdown"),
    ],
)
async def test_import_kb_errors_write_nothing(
    store: Store, tmp_path: Path, files: dict, message: str
) -> None:
    for name, text in files.items():
        write(tmp_path / "kb" / name, text)
    write(tmp_path / "kb" / "good.md", "# Good\n\nfine\n") if "notes.txt" not in files else None
    with pytest.raises(ImportFileError, match=message):
        await import_kb(store, tmp_path / "kb")
    async with store.session() as session:
        assert (await session.exec(select(Article))).all() == []


async def test_import_kb_not_a_directory(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="not a directory"):
        await import_kb(store, tmp_path / "missing")


async def test_import_customers_json_and_csv_upsert(store: Store, tmp_path: Path) -> None:
    data = [
        {
            "id": "cus_1",
            "name": "Ann Lee",
            "email": "ANN@example.com",
            "phone": "+12025550199",
            "tier": "Gold",
        },
        {"name": "Bo Chen", "phone": "+12025550198"},
    ]
    assert (
        await import_customers(store, write(tmp_path / "c.json", json.dumps({"customers": data})))
        == 2
    )
    csv_text = "name,email,phone,notes\nBo Chen-Li,,+12025550198,VIP\nCy Dee,cy@example.com,,\n"
    assert await import_customers(store, write(tmp_path / "c.csv", csv_text)) == 2
    async with store.session() as session:
        rows = {c.name: c for c in (await session.exec(select(Customer))).all()}
    assert set(rows) == {"Ann Lee", "Bo Chen-Li", "Cy Dee"}  # Bo matched by phone and renamed
    assert rows["Ann Lee"].email == "ann@example.com" and rows["Ann Lee"].tier == "gold"
    assert rows["Bo Chen-Li"].notes == "VIP"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.json", '[{"email": "x@example.com"}]', "'name' is required"),
        ("c.json", "{not json", "invalid JSON at line 1"),
        ("c.json", '{"people": []}', "expected a JSON list"),
        ("c.csv", "name,email\nAnn,not-an-email\n", "line 2: email 'not-an-email'"),
        ("c.csv", "name,phone\nAnn,12\n", "too few digits"),
        ("c.xml", "<x/>", "unsupported file type"),
    ],
)
async def test_import_customers_errors(
    store: Store, tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        await import_customers(store, write(tmp_path / name, text))


async def test_import_orders(store: Store, tmp_path: Path) -> None:
    await import_customers(
        store,
        write(
            tmp_path / "c.json",
            json.dumps([{"id": "cus_1", "name": "Ann Lee", "email": "ann@example.com"}]),
        ),
    )
    orders = [
        {
            "order_id": "12345",
            "customer_id": "cus_1",
            "status": "delivered",
            "items": [{"name": "Lamp", "qty": 2, "price": 20}],
            "created_at": "2025-01-02",
            "delivered_at": 1736000000,
        }
    ]
    assert await import_orders(store, write(tmp_path / "o.json", json.dumps(orders))) == 1
    csv_text = (
        "id,customer_email,items,amount,status,carrier,delivered_at\n"
        "54321,ann@example.com,Desk x1 @429; Mat x2 @10,$449.00,shipped,UPS,\n"
    )
    assert await import_orders(store, write(tmp_path / "o.csv", csv_text)) == 1
    async with store.session() as session:
        first = await session.get(Order, "12345")
        second = await session.get(Order, "54321")
    assert (
        first.amount == 40.0
        and first.created_at == 1735776000000
        and first.delivered_at == 1736000000000
    )
    assert second.customer_id == "cus_1" and second.amount == 449.0
    assert second.items[1] == {"name": "Mat", "qty": 2, "price": 10.0}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "1", "customer_id": "nobody"}, "no customer 'nobody'"),
        ({"id": "1"}, "customer_id .* is required"),
        ({"id": "1", "customer_id": "cus_1", "status": "lost"}, "status 'lost'"),
        ({"id": "1", "customer_id": "cus_1", "amount": "lots"}, "'amount' must be a number"),
        ({"id": "1", "customer_id": "cus_1", "created_at": "yesterday"}, "ISO date"),
        ({"customer_id": "cus_1"}, "'order_id' is required"),
    ],
)
async def test_import_orders_errors_leave_db_untouched(
    store: Store, tmp_path: Path, record: dict, message: str
) -> None:
    await import_customers(
        store, write(tmp_path / "c.json", json.dumps([{"id": "cus_1", "name": "Ann"}]))
    )
    good = {"id": "99999", "customer_id": "cus_1"}
    with pytest.raises(ImportFileError, match=message):
        await import_orders(store, write(tmp_path / "o.json", json.dumps([good, record])))
    async with store.session() as session:
        assert (await session.exec(select(Order))).all() == []


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="server")
    add_commands(main.add_subparsers(dest="command", required=True))
    return main


async def test_cli_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    write(tmp_path / "kb" / "a.md", "# A\n\ntext\n")
    write(tmp_path / "c.csv", "id,name\ncus_9,Zed\n")
    write(tmp_path / "o.json", json.dumps([{"id": "11111", "customer_id": "cus_9"}]))
    for argv in (
        ["kb", "import", str(tmp_path / "kb")],
        ["customers", "import", str(tmp_path / "c.csv")],
        ["orders", "import", str(tmp_path / "o.json"), "--data-dir", str(tmp_path / "data")],
    ):
        args = parser().parse_args(argv)
        assert is_assist_command(args)
        assert await run_command(args, settings) == 0
    out = capsys.readouterr().out
    assert (
        "imported 1 article from" in out
        and "imported 1 customer from" in out
        and "imported 1 order from" in out
    )
    assert (tmp_path / "data" / "callassist.db").exists()
    args = parser().parse_args(["orders", "import", str(tmp_path / "missing.csv")])
    assert await run_command(args, settings) == 1
    assert "missing.csv: no such file" in capsys.readouterr().err
