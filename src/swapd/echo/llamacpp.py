"""The llama.cpp native surface: ``/completion`` and ``/infill`` (with ``timings``)."""

from __future__ import annotations

import asyncio
from typing import Any

from swapd.echo.base import EchoBase, Scope, Send, dumps, word_count


class LlamaCppSurface(EchoBase):
    """Handlers for llama-server's native routes (mixed into :class:`~swapd.echo.app.EchoApp`)."""

    async def _completion_native(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        prompt = req.get("prompt", "")
        await self._native(scope, req, prompt if isinstance(prompt, str) else dumps(prompt), send)

    async def _infill(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        text = f"{req.get('input_prefix', '')}{req.get('prompt', '')}{req.get('input_suffix', '')}"
        await self._native(scope, req, text, send)

    async def _native(self, scope: Scope, req: dict[str, Any], text: str, send: Send) -> None:
        await self._maybe_delay(req)
        pieces = self._pieces(f"echo {self.model}: {text}", req)
        prompt_n, completion_n = word_count(text), len(pieces)
        delay = self._chunk_delay(req)
        timings = self._timings(prompt_n, completion_n, delay)
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "content": "".join(pieces),
                    "model": self.model,
                    "stop": True,
                    "stop_type": "eos",
                    "tokens_predicted": completion_n,
                    "tokens_evaluated": prompt_n,
                    "timings": timings,
                },
            )
            return
        send = await self._start_sse(scope, send)
        for piece in pieces:
            await self._chunk(
                send, b"data: " + dumps({"content": piece, "stop": False}).encode() + b"\n\n"
            )
            if delay:
                await asyncio.sleep(delay)
        final = {"content": "", "stop": True, "model": self.model, "timings": timings}
        await send(
            {"type": "http.response.body", "body": b"data: " + dumps(final).encode() + b"\n\n"}
        )
