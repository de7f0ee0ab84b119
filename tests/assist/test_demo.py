from sqlmodel import func, select

from server.assist import create_assistant_factory
from server.assist.demo import load_demo
from server.assist.models import Article, Order, Ticket
from server.config import AssistSettings
from server.models import Customer
from server.store import Store

from .conftest import Recorder, new_call, transcript


async def count(store: Store, model: type) -> int:
    async with store.session() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


async def test_demo_is_realistic_and_idempotent(store: Store) -> None:
    await load_demo(store)
    counts = [await count(store, m) for m in (Customer, Order, Ticket, Article)]
    await load_demo(store)
    assert [await count(store, m) for m in (Customer, Order, Ticket, Article)] == counts
    customers, orders, tickets, articles = counts
    assert customers >= 30 and orders >= customers and tickets >= 10 and articles >= 15
    async with store.session() as session:
        order = await session.get(Order, "78901")
        owner = await session.get(Customer, order.customer_id)
        phones = (await session.exec(select(Customer.phone))).all()
    assert order.status == "delivered" and order.amount == 149.0
    assert "Headphones" in order.items[0]["name"] and order.delivered_at is not None
    assert owner.name == "Maria Garcia" and owner.email == "maria.garcia@example.com"
    assert all(p and p.startswith("+1") for p in phones) and len(set(phones)) == len(phones)


async def test_assistant_factory(demo_store: Store) -> None:
    factory, close = await create_assistant_factory(AssistSettings(debounce_ms=0), demo_store)
    recorder = Recorder(demo_store)
    assistant = factory(
        call_id=await new_call(demo_store, "cus_demo_01"),
        customer_id="cus_demo_01",
        publish=recorder,
        verified=True,  # an unverified caller's first suggestion is "verify" (test_verification.py)
    )
    try:
        await assistant.on_accept()
        assistant.on_transcript(transcript("refund for order seven eight nine zero one", "s1"))
        finals = await recorder.wait_for(lambda: recorder.finals())
        assert "78901" in finals[0]["text"]
    finally:
        await assistant.close()
        await close()
        await close()
