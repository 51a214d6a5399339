"""OpenAI answers as Ollama answers: SSE chunks → NDJSON lines, a whole response → one object.

A :class:`Translation` follows one request. Streaming, each OpenAI chunk gives zero or more
Ollama lines (``done: false``) with the content delta (``message.content`` for chat,
``response`` for generate) and the reasoning delta as ``thinking``; tool calls, streamed by
OpenAI as argument fragments, are gathered and sent in one line once complete, with their
arguments as objects (Ollama's form). :meth:`Translation.final` is the ``done: true`` line:
``done_reason`` and the durations in nanoseconds (``load_duration``: waiting for the model;
``prompt_eval_duration``/``eval_duration`` from llama-server's ``timings`` when present, else
measured) and token counts from ``usage``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from swapd.proxy.modelcard import rfc3339
from swapd.proxy.ollamabody import Kind

NS = 1_000_000_000
_REASONS = {"tool_calls": "stop", "function_call": "stop", "content_filter": "stop"}


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def arguments(text: Any) -> dict[str, Any]:
    """OpenAI's JSON-text arguments as Ollama's object; text that is not a JSON object is
    kept under ``"arguments"``."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) and text.strip() else {}
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _reasoning(part: dict[str, Any]) -> str:
    value = part.get("reasoning_content") or part.get("reasoning") or ""
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class Translation:
    kind: Kind  # chat | generate | text (a raw generate: /v1/completions)
    model: str  # the name the client sent, echoed in every line
    began: float  # time.monotonic() when the request arrived
    load: float = 0.0  # seconds spent waiting for the model
    thinking: bool = True  # pass reasoning on
    reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    first_token: float | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # index → gathered call
    sent_calls: bool = False

    def _line(
        self, text: str = "", thinking: str = "", calls: list[Any] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": rfc3339(datetime.now(UTC))}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = calls
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        out["done"] = False
        return out

    def _stats(self, data: dict[str, Any]) -> None:
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        if isinstance(data.get("timings"), dict):
            self.timings = data["timings"]

    # -- streaming ---------------------------------------------------------------------------

    def chunk(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The Ollama lines for one OpenAI stream chunk."""
        self._stats(data)
        out: list[dict[str, Any]] = []
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if self.kind == "text":
                text, thinking = choice.get("text") or "", ""
            else:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                thinking = _reasoning(delta) if self.thinking else ""
                for call in delta.get("tool_calls") or ():
                    self._gather(call)
            if (text or thinking) and self.first_token is None:
                self.first_token = time.monotonic()
            if text or thinking:
                out.append(self._line(text, thinking))
            if choice.get("finish_reason"):
                self.reason = choice["finish_reason"]
                out.extend(self._calls_line())
        return out

    def _gather(self, call: dict[str, Any]) -> None:
        index = call.get("index", len(self.calls))
        held = self.calls.setdefault(index, {"name": "", "arguments": ""})
        fn = call.get("function") or {}
        if fn.get("name"):
            held["name"] = fn["name"]
        if fn.get("arguments"):
            held["arguments"] += fn["arguments"]

    def _calls_line(self) -> list[dict[str, Any]]:
        if not self.calls or self.sent_calls:
            return []
        self.sent_calls = True
        calls = [
            {"function": {"name": c["name"], "arguments": arguments(c["arguments"])}}
            for _, c in sorted(self.calls.items())
        ]
        return [self._line(calls=calls)]

    def final(self) -> dict[str, Any]:
        """The ``done: true`` line that ends a stream."""
        pending = self._calls_line()  # an engine that never said why it stopped
        out = pending[0] if pending else self._line()
        out.update(self._done())
        return out

    def _done(self) -> dict[str, Any]:
        end = time.monotonic()
        reason = self.reason or "stop"
        prompt_n = self.usage.get("prompt_tokens", self.timings.get("prompt_n"))
        eval_n = self.usage.get("completion_tokens", self.timings.get("predicted_n"))
        started = self.began + self.load
        prompt_ms = self.timings.get("prompt_ms")
        eval_ms = self.timings.get("predicted_ms")
        first = self.first_token if self.first_token is not None else end
        out: dict[str, Any] = {
            "done": True,
            "done_reason": _REASONS.get(reason, reason),
            "total_duration": int((end - self.began) * NS),
            "load_duration": int(self.load * NS),
        }
        if isinstance(prompt_n, int):
            out["prompt_eval_count"] = prompt_n
        out["prompt_eval_duration"] = (
            int(prompt_ms * 1e6)
            if isinstance(prompt_ms, int | float)
            else int((first - started) * NS)
        )
        if isinstance(eval_n, int):
            out["eval_count"] = eval_n
        out["eval_duration"] = (
            int(eval_ms * 1e6) if isinstance(eval_ms, int | float) else int((end - first) * NS)
        )
        return out

    # -- a whole response ----------------------------------------------------------------------

    def whole(self, data: dict[str, Any]) -> dict[str, Any]:
        """One Ollama object for a whole OpenAI response."""
        self._stats(data)
        choices = data.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        self.reason = choice.get("finish_reason")
        if self.kind == "text":
            out = self._line(choice.get("text") or "")
        else:
            message = choice.get("message") or {}
            calls = [
                {
                    "function": {
                        "name": (c.get("function") or {}).get("name", ""),
                        "arguments": arguments((c.get("function") or {}).get("arguments")),
                    }
                }
                for c in message.get("tool_calls") or ()
                if isinstance(c, dict)
            ]
            thinking = _reasoning(message) if self.thinking else ""
            out = self._line(message.get("content") or "", thinking, calls)
        if self.first_token is None:
            self.first_token = time.monotonic()
        out.update(self._done())
        return out

    def embedded(self, data: dict[str, Any]) -> dict[str, Any]:
        """``/api/embed``'s answer (``embeddings``: one vector per input, in order), or the
        legacy ``/api/embeddings``' (``embedding``: the one vector)."""
        items = [d for d in data.get("data") or () if isinstance(d, dict)]
        vectors = [d.get("embedding") for d in sorted(items, key=lambda d: d.get("index", 0))]
        if self.kind == "embeddings":
            return {"embedding": vectors[0] if vectors else []}
        out: dict[str, Any] = {"model": self.model, "embeddings": vectors}
        out["total_duration"] = int((time.monotonic() - self.began) * NS)
        out["load_duration"] = int(self.load * NS)
        usage = data.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            out["prompt_eval_count"] = usage["prompt_tokens"]
        return out

    def loaded(self, reason: str) -> dict[str, Any]:
        """The answer to a request without a prompt: the model was loaded (or unloaded)."""
        if self.kind == "embeddings":
            return {"embedding": []}
        if self.kind == "embed":
            return {"model": self.model, "embeddings": []}
        out = self._line()
        out.update(done=True, done_reason=reason)
        return out
