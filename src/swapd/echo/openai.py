"""The OpenAI surface: chat, completions, responses, embeddings, rerank, audio, images."""

from __future__ import annotations

import asyncio
import time

from swapd.echo.base import (
    BadRequest,
    EchoBase,
    Scope,
    Send,
    dumps,
    last_user_text,
    prompt_words,
    vector,
    word_count,
)

# A 1x1 transparent PNG, for image generation replies.
_PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


class OpenAISurface(EchoBase):
    """Handlers for OpenAI's routes (mixed into :class:`~swapd.echo.app.EchoApp`)."""

    async def _chat(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        messages = req.get("messages")
        reply = f"echo {self.model}: {last_user_text(messages)}"
        pieces = self._pieces(reply, req)
        prompt_n, completion_n = prompt_words(messages), len(pieces)
        delay = self._chunk_delay(req)
        cid = f"chatcmpl-echo{self.requests}"
        created = int(time.time())
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "echo",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces)},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self._usage(prompt_n, completion_n),
                    "timings": self._timings(prompt_n, completion_n, delay),
                    "request": req,
                },
            )
            return
        head = dumps(
            {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        )[:-1].encode()  # without the closing brace
        send = await self._start_sse(scope, send)
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            await self._chunk(
                send, b"data: " + head + b',"choices":[' + dumps(choice).encode() + b"]}\n\n"
            )
            if delay:
                await asyncio.sleep(delay)
        final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        timings = dumps(self._timings(prompt_n, completion_n, delay)).encode()
        await self._chunk(
            send,
            b"data: "
            + head
            + b',"choices":['
            + dumps(final).encode()
            + b'],"timings":'
            + timings
            + b"}\n\n",
        )
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = dumps(self._usage(prompt_n, completion_n)).encode()
            await self._chunk(send, b"data: " + head + b',"choices":[],"usage":' + usage + b"}\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _completions(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        prompt = req.get("prompt", "")
        text = prompt[-1] if isinstance(prompt, list) and prompt else prompt
        text = text if isinstance(text, str) else str(text)
        pieces = self._pieces(f"echo {self.model}: {text}", req)
        prompt_n, completion_n = word_count(text), len(pieces)
        delay = self._chunk_delay(req)
        cid, created = f"cmpl-echo{self.requests}", int(time.time())
        if not req.get("stream"):
            choice = {
                "index": 0,
                "text": "".join(pieces),
                "logprobs": None,
                "finish_reason": "stop",
            }
            await self._json(
                send,
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": self._usage(prompt_n, completion_n),
                    "timings": self._timings(prompt_n, completion_n, delay),
                    "request": req,
                },
            )
            return
        send = await self._start_sse(scope, send)
        base = {"id": cid, "object": "text_completion", "created": created, "model": model}
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            choice = {
                "index": 0,
                "text": piece,
                "logprobs": None,
                "finish_reason": "stop" if last else None,
            }
            await self._chunk(
                send, b"data: " + dumps({**base, "choices": [choice]}).encode() + b"\n\n"
            )
            if delay and not last:
                await asyncio.sleep(delay)
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            frame = {**base, "choices": [], "usage": self._usage(prompt_n, completion_n)}
            await self._chunk(send, b"data: " + dumps(frame).encode() + b"\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _responses(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        inp = req.get("input", "")
        if isinstance(inp, list):
            text = last_user_text([m for m in inp if isinstance(m, dict)] or [])
            prompt_n = prompt_words(inp)
        else:
            text, prompt_n = str(inp), word_count(str(inp))
        reply = f"echo {self.model}: {text}"
        out_n = len(self._pieces(reply, {}))
        rid = f"resp_echo{self.requests}"
        await self._json(
            send,
            {
                "id": rid,
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": str(req.get("model") or self.model),
                "output": [
                    {
                        "type": "message",
                        "id": f"msg_echo{self.requests}",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": reply, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": prompt_n,
                    "output_tokens": out_n,
                    "total_tokens": prompt_n + out_n,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
                "request": req,
            },
        )

    async def _embeddings(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        inp = req.get("input", "")
        items = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
        texts = [i if isinstance(i, str) else dumps(i) for i in items]
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)
        ]
        tokens = sum(word_count(t) for t in texts)
        await self._json(
            send,
            {
                "object": "list",
                "data": data,
                "model": str(req.get("model") or self.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _rerank(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        query = set(str(req.get("query", "")).lower().split())
        docs = req.get("documents", [])
        if not isinstance(docs, list):
            raise BadRequest("documents must be a list")
        results = []
        for i, doc in enumerate(docs):
            text = doc.get("text", "") if isinstance(doc, dict) else str(doc)
            words = text.lower().split()
            overlap = sum(1 for w in words if w in query)
            score = round(overlap / (len(words) + 1) + vector(text, 1)[0] * 1e-3, 6)
            results.append({"index": i, "relevance_score": score})
        results.sort(key=lambda r: -float(r["relevance_score"]))
        top_n = req.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            results = results[:top_n]
        tokens = len(query) + sum(word_count(str(d)) for d in docs)
        await self._json(
            send,
            {
                "id": f"rerank-echo{self.requests}",
                "model": str(req.get("model") or self.model),
                "object": "list",
                "results": results,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _transcriptions(self, scope: Scope, body: bytes, send: Send) -> None:
        ctype = ""
        for name, value in scope["headers"]:
            if name.lower() == b"content-type":
                ctype = value.decode("latin-1")
        fields = _multipart_fields(ctype, body)
        form_model = fields.get("model", "")
        await self._json(send, {"text": f"echo {self.model}: model={form_model}"})

    async def _images(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        n = req.get("n", 1)
        n = n if isinstance(n, int) and 0 < n <= 10 else 1
        prompt = f"echo {self.model}: {req.get('prompt', '')}"
        await self._json(
            send,
            {
                "created": int(time.time()),
                "data": [{"b64_json": _PNG_1X1, "revised_prompt": prompt} for _ in range(n)],
            },
        )


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The plain (non-file) fields of a multipart/form-data body."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return {}
    fields: dict[str, str] = {}
    for part in body.split(b"--" + boundary.encode()):
        head, sep, raw = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = head.decode("latin-1")
        if "filename=" in disposition or 'name="' not in disposition:
            continue
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        fields[name] = raw.removesuffix(b"\r\n").decode("utf-8", errors="replace")
    return fields
