"""The echo engine: a fast, fake OpenAI/Anthropic/llama.cpp-compatible inference server.

It answers every inference route with ``"echo <model>: <last user text>"`` in the right shape
(streaming or not), so the demo (``swapd serve`` with no config) and the tests have an engine that
starts in a fraction of a second, and the benchmarks have an upstream whose own cost is small.

Run it as ``python -m swapd.echo --port P [--model NAME] ...`` (see ``--help``), or embed the ASGI
app: ``create_app(model="m")`` returns an :class:`EchoApp`.

Routes (every response carries ``x-engine-pid`` and ``x-engine-model``):

- ``GET /health``: 503 ``{"status":"loading"}`` during ``--health-delay``, then 200
  ``{"status":"ok"}``
- ``GET /v1/models``
- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/responses``, ``/v1/embeddings``,
  ``/v1/rerank`` ``/rerank`` ``/v1/reranking``, ``/v1/messages``, ``/v1/messages/count_tokens``,
  ``/v1/audio/transcriptions`` (multipart), ``/v1/images/generations``, ``/completion``, ``/infill``
- ``POST /crash``: the process exits at once with status 3 (only when crashing is allowed)
- ``POST /slow``: sleeps ``delay`` seconds (body field or query, default 2) then echoes
- ``GET /_echo/stats``: request counters (requests, in_flight, disconnects)
- with ``--sleep-mode``, vLLM's sleep API: ``POST /sleep?level=N``, ``POST /wake_up[?tags=…]``,
  ``POST /collective_rpc`` (``reload_weights``), ``GET /is_sleeping`` (``{"is_sleeping": bool}``);
  while asleep, inference routes answer 503; after level 2 they answer garbage until the weights
  are reloaded (see ``swapd.echo.app``). ``--fail-wake`` makes ``/wake_up`` answer 500
- anything else: 200 JSON echo of method, path, query, headers and body
- WebSocket on any path: a hello message (path, query, headers, subprotocol), then every text
  and binary message echoed; the text ``close <code> [reason]`` closes with that code;
  ``/ws/refuse`` refuses the upgrade with 403 (see ``swapd.echo.websocket``)

Body fields understood on inference routes: ``stream``, ``stream_options.include_usage``,
``chunks`` (number of streamed pieces; the reply is extended by repeating its words when more
pieces than words are asked for; ``max_tokens`` with ``ignore_eos`` asks for that many, as real
engines then generate exactly ``max_tokens``), ``chunk_delay`` (seconds between pieces) and
``delay`` (seconds before answering). Token counts are deterministic: prompt tokens =
whitespace words of the input, completion tokens = pieces of the reply.

Modules: ``base`` (state, helpers), ``openai``, ``anthropic``, ``llamacpp``, ``websocket`` (the
surfaces), ``app`` (dispatch and the ASGI app), ``server`` (the process). Only the standard
library is imported at module level; uvicorn is imported by :func:`main`.
"""

from swapd.echo.app import EchoApp, app, create_app
from swapd.echo.server import main

__all__ = ["EchoApp", "app", "create_app", "main"]
