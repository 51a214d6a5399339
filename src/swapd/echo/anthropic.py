"""The Anthropic surface: ``/v1/messages`` (plain and streamed) and token counting."""

from __future__ import annotations

import asyncio
from typing import Any

from swapd.echo.base import (
    EchoBase,
    Scope,
    Send,
    dumps,
    last_user_text,
    prompt_words,
    text_of,
    word_count,
)


class AnthropicSurface(EchoBase):
    """Handlers for Anthropic's routes (mixed into :class:`~swapd.echo.app.EchoApp`)."""

    @staticmethod
    def _anthropic_prompt_words(req: dict[str, Any]) -> int:
        return word_count(text_of(req.get("system"))) + prompt_words(req.get("messages"))

    async def _count_tokens(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._json(send, {"input_tokens": self._anthropic_prompt_words(req)})

    async def _messages(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        reply = f"echo {self.model}: {last_user_text(req.get('messages'))}"
        pieces = self._pieces(reply, req)
        input_n, output_n = self._anthropic_prompt_words(req), len(pieces)
        delay = self._chunk_delay(req)
        mid = f"msg_echo{self.requests}"
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(pieces)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_n, "output_tokens": output_n},
                    "request": req,
                },
            )
            return

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + dumps(data).encode() + b"\n\n"

        send = await self._start_sse(scope, send)
        message: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_n, "output_tokens": 0},
        }
        await self._chunk(
            send, event("message_start", {"type": "message_start", "message": message})
        )
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        await self._chunk(send, event("content_block_start", block))
        for piece in pieces:
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            await self._chunk(send, event("content_block_delta", delta))
            if delay:
                await asyncio.sleep(delay)
        await self._chunk(
            send, event("content_block_stop", {"type": "content_block_stop", "index": 0})
        )
        done = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_n},
        }
        await self._chunk(send, event("message_delta", done))
        await send(
            {
                "type": "http.response.body",
                "body": event("message_stop", {"type": "message_stop"}),
                "more_body": False,
            }
        )
