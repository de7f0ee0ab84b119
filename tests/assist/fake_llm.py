"""A small OpenAI-compatible chat-completions server (aiohttp), for the engine tests.

It plays a model that calls tools: first it asks for `get_order_details` and
`check_policy` on the order our context names, then it answers from what our server's
tools returned. Other modes fail, hang or stream slowly.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class FakeLLM:
    def __init__(self) -> None:
        self.mode = "tools"
        self.requests: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "error":
            return web.json_response(
                {"error": {"message": "model overloaded", "type": "server_error"}}, status=500
            )
        if self.mode == "hang":
            await self.release.wait()
            return web.json_response({"error": {"message": "too late"}}, status=504)
        if not body.get("stream"):
            return web.json_response(self.summary(body))
        if self.mode == "slow":
            return await self.stream(
                request,
                [chunk({"content": "[reply] "})]
                + [chunk({"content": f"w{i} "}) for i in range(300)],
                delay=0.02,
            )
        if self.mode == "broken":
            return await self.stream(
                request,
                [
                    chunk({"content": "[reply]\nLet me check"}),
                    {"error": {"message": "stream interrupted"}},
                ],
            )
        if not any(m["role"] == "tool" for m in body["messages"]):
            if not re.search(r"seems to mean order \d{5}", body["messages"][1]["content"]):
                # No order to look up yet: a real model asks for one instead of guessing.
                ask = "[reply]\nCould you give me the five-digit order number, please?"
                return await self.stream(
                    request, [chunk({"content": ask}), chunk({}, finish="stop")]
                )
            return await self.stream(request, self.tool_calls(body))
        return await self.stream(request, self.answer(body))

    async def stream(
        self, request: web.Request, payloads: list[dict[str, Any]], delay: float = 0
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            for payload in payloads:
                await response.write(f"data: {json.dumps(payload)}\n\n".encode())
                if delay:
                    await asyncio.sleep(delay)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            self.disconnected.set()
        except asyncio.CancelledError:  # the test server cancels handlers whose client left
            self.disconnected.set()
            raise
        return response

    @staticmethod
    def tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
        context = body["messages"][1]["content"]
        order = re.search(r"seems to mean order (\d{5})", context)
        order_id = order.group(1) if order else "00000"
        args = json.dumps({"order_id": order_id})
        policy = json.dumps({"topic": "refund", "order_id": order_id})
        return [
            chunk(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_order",
                            "type": "function",
                            "function": {"name": "get_order_details", "arguments": ""},
                        }
                    ],
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[:9]}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[9:]}}]}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_policy",
                            "type": "function",
                            "function": {"name": "check_policy", "arguments": policy},
                        }
                    ]
                }
            ),
            chunk({}, finish="tool_calls"),
        ]

    @staticmethod
    def answer(body: dict[str, Any]) -> list[dict[str, Any]]:
        results = {
            m["tool_call_id"]: json.loads(m["content"])
            for m in body["messages"]
            if m["role"] == "tool"
        }
        order, policy = results["call_order"], results["call_policy"]
        text = (
            f"[reply]\nI can see order {order['order_id']} — the {order['items'][0]['name']}, "
            f"{order['amount_text']}, delivered on {order['delivered_at_date']}. It was {policy['reason']}, "
            f"so under our {policy['policy']['title']} I can refund it in full.\n\n"
            f"[action]\nStart a return for order {order['order_id']} and refund {order['amount_text']}."
        )
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        return [chunk({"content": piece}) for piece in pieces] + [chunk({}, finish="stop")]

    @staticmethod
    def summary(body: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(body["messages"][1]["content"])
        orders = ", ".join(data["computed"]["orders"])
        content = json.dumps(
            {
                "reason": "Refund request",
                "outcome": "resolved",
                "text": f"LLM: customer asked for a refund of order {orders}.",
                "follow_up": ["Check the return arrives"],
            }
        )
        return {
            "id": "chatcmpl-sum",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
        }
