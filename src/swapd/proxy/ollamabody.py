"""Ollama requests as OpenAI requests: ``/api/chat``, ``/api/generate``, ``/api/embed`` and
``/api/embeddings`` become ``/v1/chat/completions``, ``/v1/completions`` (``raw`` generate) and
``/v1/embeddings`` bodies that any OpenAI-compatible engine takes.

``options`` keep only what OpenAI's surface (plus ``top_k``, which llama-server, vLLM and
SGLang accept) can say: temperature, top_p, top_k, num_predict → max_tokens, stop, seed,
frequency_penalty, presence_penalty; the rest (num_ctx, repeat_penalty, mirostat, num_gpu, …)
is ignored. ``keep_alive`` is parsed here (:func:`keep_alive`); what it does is the caller's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from swapd.errors import RequestError

Kind = Literal["chat", "generate", "text", "embed", "embeddings"]
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
UNLOAD = 0.0  # keep_alive 0: unload once the request is done
FOREVER = math.inf  # a negative keep_alive: never unload for idleness

_COPIED = ("temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# first bytes of base64 image data → its MIME type (data: URLs need one)
_MAGIC = {"iVBORw0KGgo": "image/png", "/9j/": "image/jpeg", "R0lGOD": "image/gif"}


@dataclass(slots=True)
class Call:
    """One Ollama request translated: what to send where, and how to answer."""

    kind: Kind
    model: str  # as the client named it
    path: str  # the OpenAI path
    body: dict[str, Any]  # the OpenAI body ("model" still the client's name)
    stream: bool
    keep_alive: float | None = None  # seconds; UNLOAD, FOREVER, or None: not given
    load_only: bool = False  # no prompt: load (or unload) the model, generate nothing
    thinking: bool = True  # pass reasoning on as "thinking" (false: think was false)


def duration(value: Any) -> float:
    """Seconds for a keep_alive value: a number of seconds, or a Go duration (``5m``,
    ``1h30m``, ``300ms``, ``-1``); a negative one is :data:`FOREVER`."""
    if isinstance(value, bool):
        raise RequestError(f"keep_alive: expected a duration like 5m or a number, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        try:
            seconds = sign * float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                raise RequestError(
                    f"keep_alive: expected a duration like 5m, 1h or 300s, got {value!r}"
                ) from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise RequestError(f"keep_alive: expected a duration like 5m or a number, got {value!r}")
    if math.isnan(seconds):
        raise RequestError("keep_alive: not a number")
    return FOREVER if seconds < 0 else seconds


def keep_alive(request: dict[str, Any]) -> float | None:
    value = request.get("keep_alive")
    return None if value is None else duration(value)


def _model(request: dict[str, Any]) -> str:
    name = request.get("model") or request.get("name")  # "name": before Ollama 0.1.40-ish
    if not isinstance(name, str) or not name:
        raise RequestError("model is required")
    return name


def _options(request: dict[str, Any], body: dict[str, Any]) -> None:
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError("options must be an object")
    for key in _COPIED:
        if options.get(key) is not None:
            body[key] = options[key]
    predict = options.get("num_predict")
    if isinstance(predict, int) and not isinstance(predict, bool) and predict >= 0:
        body["max_tokens"] = predict  # -1 (no limit) and -2 (fill the context): none sent
    stop = options.get("stop")
    if stop:
        body["stop"] = stop


def _format(request: dict[str, Any], body: dict[str, Any]) -> None:
    fmt = request.get("format")
    if fmt in (None, ""):
        return
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        schema = {"name": "response", "schema": fmt, "strict": True}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise RequestError(f'format: expected "json" or a JSON schema object, got {fmt!r}')


def _image(data: Any) -> dict[str, Any]:
    if not isinstance(data, str) or not data:
        raise RequestError("images: expected base64-encoded image data")
    if data.startswith("data:"):
        url = data
    else:
        mime = next((m for magic, m in _MAGIC.items() if data.startswith(magic)), None)
        if mime is None:
            mime = "image/webp" if data.startswith("UklGR") else "image/jpeg"
        url = f"data:{mime};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _content(text: Any, images: Any) -> Any:
    """A message's content: the text, or text and image parts when it has images."""
    text = "" if text is None else text
    if not images:
        return text
    if not isinstance(images, list):
        raise RequestError("images must be a list")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [_image(i) for i in images]


def _tool_calls(calls: Any, first: int) -> list[dict[str, Any]]:
    """Ollama's tool calls (arguments as objects) in OpenAI's form (arguments as JSON text)."""
    if not isinstance(calls, list):
        raise RequestError("tool_calls must be a list")
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError("tool_calls: each needs function.name")
        args = fn.get("arguments", {})
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        call_id = call.get("id") or f"call_{first + i}"
        out.append(
            {"id": call_id, "type": "function", "function": {"name": fn["name"], "arguments": text}}
        )
    return out


def messages(given: Any) -> list[dict[str, Any]]:
    """Ollama chat messages as OpenAI's: images become image parts, tool calls get ids and
    JSON-text arguments, a tool result names the call it answers (by ``tool_call_id``, or the
    latest unanswered call of its ``tool_name``)."""
    if given is None:
        return []
    if not isinstance(given, list):
        raise RequestError("messages must be a list")
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (function name, call id) not answered yet
    count = 0
    for msg in given:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError("messages: each needs a role")
        role = msg["role"]
        item: dict[str, Any] = {
            "role": role,
            "content": _content(msg.get("content"), msg.get("images")),
        }
        if msg.get("tool_calls"):
            calls = _tool_calls(msg["tool_calls"], count)
            count += len(calls)
            item["tool_calls"] = calls
            pending += [(c["function"]["name"], c["id"]) for c in calls]
        if role == "tool":
            call_id = msg.get("tool_call_id")
            name = msg.get("tool_name") or msg.get("name")
            if not call_id:
                match = [p for p in pending if p[0] == name] or pending
                call_id = match[-1][1] if match else None
            if call_id:
                item["tool_call_id"] = call_id
                pending = [p for p in pending if p[1] != call_id]
            if isinstance(name, str) and name:
                item["name"] = name
        out.append(item)
    return out


def _common(request: dict[str, Any], body: dict[str, Any]) -> None:
    _options(request, body)
    _format(request, body)
    think = request.get("think")
    if isinstance(think, str) and think in ("low", "medium", "high"):
        body["reasoning_effort"] = think


def _stream(request: dict[str, Any]) -> bool:
    stream = request.get("stream", True)  # Ollama streams unless told not to
    return stream is not False


def chat(request: dict[str, Any]) -> Call:
    model = _model(request)
    msgs = messages(request.get("messages"))
    body: dict[str, Any] = {"model": model, "messages": msgs}
    _common(request, body)
    tools = request.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise RequestError("tools must be a list")
        body["tools"] = tools  # Ollama's tool definitions are OpenAI's
    return _call("chat", CHAT, model, body, request, load_only=not msgs)


def generate(request: dict[str, Any]) -> Call:
    model = _model(request)
    if request.get("suffix"):
        raise RequestError("suffix (fill-in-the-middle) is not supported by swapd's Ollama API")
    prompt = request.get("prompt") or ""
    if not isinstance(prompt, str):
        raise RequestError("prompt must be a string")
    images = request.get("images")
    load_only = not prompt and not images
    if request.get("raw"):  # no template: a plain completion
        if images:
            raise RequestError("raw prompts cannot carry images")
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        _common(request, body)
        return _call("text", COMPLETIONS, model, body, request, load_only=load_only)
    msgs: list[dict[str, Any]] = []
    system = request.get("system")
    if isinstance(system, str) and system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": _content(prompt, images)})
    body = {"model": model, "messages": msgs}
    _common(request, body)
    return _call("generate", CHAT, model, body, request, load_only=load_only)


def embed(request: dict[str, Any]) -> Call:
    model = _model(request)
    given = request.get("input", "")
    inputs = given if isinstance(given, list) else [given]
    if not all(isinstance(i, str) for i in inputs):
        raise RequestError("input must be a string or a list of strings")
    body: dict[str, Any] = {"model": model, "input": inputs}
    dims = request.get("dimensions")
    if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0:
        body["dimensions"] = dims
    return _call("embed", EMBEDDINGS, model, body, request, load_only=not any(inputs), stream=False)


def embeddings(request: dict[str, Any]) -> Call:
    """The legacy ``/api/embeddings``: one ``prompt``, one ``embedding``."""
    model = _model(request)
    prompt = request.get("prompt") or ""
    if not isinstance(prompt, str):
        raise RequestError("prompt must be a string")
    body: dict[str, Any] = {"model": model, "input": prompt}
    return _call("embeddings", EMBEDDINGS, model, body, request, load_only=not prompt, stream=False)


def _call(
    kind: Kind,
    path: str,
    model: str,
    body: dict[str, Any],
    request: dict[str, Any],
    *,
    load_only: bool,
    stream: bool | None = None,
) -> Call:
    streaming = _stream(request) if stream is None else stream
    if streaming and path != EMBEDDINGS:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    elif path != EMBEDDINGS:
        body["stream"] = False
    return Call(
        kind=kind,
        model=model,
        path=path,
        body=body,
        stream=streaming,
        keep_alive=keep_alive(request),
        load_only=load_only,
        thinking=request.get("think") is not False,
    )
