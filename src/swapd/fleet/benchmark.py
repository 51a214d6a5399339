"""Benchmark a model: prompt-processing and generation tokens/s and time to first token, per
concurrency level, measured through swapd's scheduler.

A run first makes sure the model is ready (starting it when it is not, as any request would);
that load time is reported on its own and kept out of every figure. Then each level sends
``c`` streamed chat completions at once, each with a prompt of about ``prompt_tokens`` tokens
(a unique opening, so no prompt cache answers it) and ``max_tokens = gen_tokens`` with
``ignore_eos``. Each request holds a lease (the model cannot be swapped out under it) and is
recorded like a proxied one (in-flight table, activity, metrics; ``metadata.bench`` names the
run), so the token numbers come from :func:`swapd.observe.activity.parse_usage`: the engine's
``usage`` (the real prompt length) and llama.cpp's ``timings`` (``prompt_per_second``,
``predicted_per_second``). An engine without timings is measured by the clock: prompt tokens
over the time to the first token, generated tokens after the first over the time since it.

A level's prompt and generation tokens/s are the mean of its requests' rates (what one of ``c``
clients sees); its total tokens/s is every generated token over the level's wall time (what
the engine delivers to ``c`` clients together, queueing included); its TTFT is the mean (and
the max) over its requests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import anyio
import httpx

from swapd.errors import RequestError, SwapdError
from swapd.observe.activity import Meter, parse_usage
from swapd.observe.observer import Observer
from swapd.scheduler import Scheduler
from swapd.upstream import Upstream
from swapd.views import State

MAX_CONCURRENCY = 256
MAX_LEVELS = 16
MAX_PROMPT_TOKENS = 131072
MAX_GEN_TOKENS = 32768
CHAT_PATH = "/v1/chat/completions"
ERROR_BYTES = 2048  # of an engine's error body, kept for the message

# Short common words: about one token each in the vocabularies of current models.
WORDS = (  # noqa: SIM905 (one string reads better than 70 quoted words)
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot right "
    "study book eye job word business issue side kind head house service friend father power "
    "hour game line end member law car city community name president team minute idea"
).split()

Timing = Literal["engine", "clock"]


class BenchFailed(SwapdError):
    """A benchmark could not measure: the model did not start, or every request of a level
    failed."""

    http_status = 502
    code = "bench_failed"


@dataclass(frozen=True, slots=True)
class Params:
    concurrency: tuple[int, ...] = (1, 4, 8)
    prompt_tokens: int = 512
    gen_tokens: int = 128

    @classmethod
    def parse(cls, data: Any) -> Params:
        """Params from a JSON body (missing keys: the defaults); RequestError names a bad one."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RequestError("the body must be a JSON object")
        unknown = set(data) - {"concurrency", "prompt_tokens", "gen_tokens"}
        if unknown:
            raise RequestError(f"unknown bench parameter(s): {', '.join(sorted(unknown))}")
        default = cls()
        levels = data.get("concurrency", list(default.concurrency))
        if isinstance(levels, int):
            levels = [levels]
        if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
            raise RequestError(
                f"concurrency must be a list of 1 to {MAX_LEVELS} whole numbers, e.g. [1, 4, 16]"
            )
        return cls(
            tuple(_count("concurrency", c, MAX_CONCURRENCY) for c in levels),
            _count(
                "prompt_tokens", data.get("prompt_tokens", default.prompt_tokens), MAX_PROMPT_TOKENS
            ),
            _count("gen_tokens", data.get("gen_tokens", default.gen_tokens), MAX_GEN_TOKENS),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "concurrency": list(self.concurrency)}


def _count(name: str, value: Any, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise RequestError(f"{name} must be a whole number from 1 to {most}, got {value!r}")
    return value


def prompt_text(tokens: int, opening: str) -> str:
    """About ``tokens`` tokens of text: ``opening`` (unique per request, so that no prompt
    cache can serve it) and then common words."""
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(max(0, tokens - len(opening.split())))]
    return f"{opening} {' '.join(words)}".strip()


@dataclass(frozen=True, slots=True)
class Sample:
    """One request's numbers (``error`` set when it failed)."""

    prompt_tokens: int = 0
    gen_tokens: int = 0
    ttft: float | None = None  # seconds from sending to the first generated text
    pp_rate: float | None = None  # prompt tokens/s
    tg_rate: float | None = None  # generated tokens/s
    timing: Timing = "clock"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Level:
    """One concurrency level's figures."""

    concurrency: int
    requests: int
    failed: int
    prompt_tokens: float  # per request, as the engine counted them
    gen_tokens: float
    pp_tps: float | None  # prompt-processing tokens/s of one request (mean)
    tg_tps: float | None  # generation tokens/s of one request (mean)
    total_tps: float | None  # generated tokens of all requests over the level's wall time
    ttft_ms: float | None  # mean time to first token
    ttft_max_ms: float | None
    timing: str  # engine | clock | mixed
    error: str | None = None  # the first failure's message

    @classmethod
    def of(cls, concurrency: int, samples: Sequence[Sample], wall: float) -> Level:
        """The figures of ``samples``, sent together and all ended after ``wall`` seconds."""
        good = [s for s in samples if s.error is None]
        failed = [s for s in samples if s.error is not None]
        ttfts = [s.ttft * 1000 for s in good if s.ttft is not None]
        timings = {s.timing for s in good}

        def mean(values: Sequence[float]) -> float:
            return round(sum(values) / len(values), 1) if values else 0.0

        def rate(rates: list[float | None]) -> float | None:
            known = [r for r in rates if r is not None]
            return mean(known) if known else None

        generated = sum(s.gen_tokens for s in good)

        return cls(
            concurrency=concurrency,
            requests=len(samples),
            failed=len(failed),
            prompt_tokens=mean([s.prompt_tokens for s in good]),
            gen_tokens=mean([s.gen_tokens for s in good]),
            pp_tps=rate([s.pp_rate for s in good]),
            tg_tps=rate([s.tg_rate for s in good]),
            total_tps=round(generated / wall, 1) if generated and wall > 0 else None,
            ttft_ms=mean(ttfts) if ttfts else None,
            ttft_max_ms=round(max(ttfts), 1) if ttfts else None,
            timing=timings.pop() if len(timings) == 1 else ("mixed" if timings else "-"),
            error=failed[0].error if failed else None,
        )


@dataclass(slots=True)
class Progress:
    """Where a run is: ``phase`` loading | measuring | done, the level being measured, and
    requests finished in it."""

    phase: str = "loading"
    level: int | None = None
    done: int = 0
    load_seconds: float | None = None
    levels: list[Level] = field(default_factory=list)


class Reply:
    """Reads one streamed reply: when the first generated text came, how many content frames
    (the fallback token count when the engine reports no usage)."""

    def __init__(self) -> None:
        self._rest = b""
        self.first: float | None = None
        self.frames = 0

    def feed(self, chunk: bytes) -> None:
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if not line.startswith(b"data:") or b'"content"' not in line:
                continue
            try:
                frame = json.loads(line[5:])
            except ValueError:
                continue
            for choice in frame.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content"):
                    self.frames += 1
                    if self.first is None:
                        self.first = time.monotonic()


class Benchmark:
    """One run against one model (``run`` does it; ``progress`` says where it is)."""

    def __init__(
        self,
        scheduler: Scheduler,
        observer: Observer,
        model_id: str,
        params: Params,
        *,
        run_id: str,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.scheduler = scheduler
        self.observer = observer
        self.model_id = model_id
        self.params = params
        self.run_id = run_id
        self.changed = changed  # called after every step (for progress events)
        self.progress = Progress()

    async def run(self) -> Progress:
        """Load (when needed), then measure every level; BenchFailed says why it could not."""
        self.progress.load_seconds = await self._load()
        self.progress.phase = "measuring"
        model = self.scheduler.config.models[self.model_id]
        name = model.use_model_name or self.model_id
        limits = httpx.Limits(max_keepalive_connections=0)  # engines may drop kept-alive ones
        timeout = httpx.Timeout(30.0, read=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
            for index, concurrency in enumerate(self.params.concurrency):
                self.progress.level, self.progress.done = index, 0
                self.changed()
                samples: list[Sample] = []
                began = time.monotonic()

                async def one(n: int, c: int = concurrency, out: list[Sample] = samples) -> None:
                    out.append(await self._request(http, name, f"{c}.{n}"))
                    self.progress.done += 1
                    self.changed()

                async with anyio.create_task_group() as tg:
                    for n in range(concurrency):
                        tg.start_soon(one, n)
                level = Level.of(concurrency, samples, time.monotonic() - began)
                if level.failed == level.requests:
                    raise BenchFailed(
                        f"benchmark of {self.model_id}: every request at concurrency "
                        f"{concurrency} failed: {level.error}"
                    )
                self.progress.levels.append(level)
        self.progress.phase = "done"
        self.changed()
        return self.progress

    async def _load(self) -> float | None:
        """Seconds it took to make the model ready; None when it already was."""
        if self.scheduler.state(self.model_id) is State.READY:
            return None
        self.changed()
        began = time.monotonic()
        error = await self.scheduler.start(self.model_id).settled()
        if error is not None:
            raise BenchFailed(f"{self.model_id} failed to start: {error}") from error
        return round(time.monotonic() - began, 3)

    def _body(self, name: str, tag: str) -> bytes:
        opening = f"Benchmark {self.run_id} request {tag} {uuid.uuid4().hex[:8]}:"
        text = prompt_text(self.params.prompt_tokens, opening)
        return json.dumps(
            {
                "model": name,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": self.params.gen_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
                "ignore_eos": True,  # llama.cpp, vLLM, SGLang: generate all max_tokens
                "cache_prompt": False,  # llama.cpp: process the whole prompt every time
                "temperature": 0,
            }
        ).encode()

    async def _request(self, http: httpx.AsyncClient, name: str, tag: str) -> Sample:
        """One streamed request under a lease, recorded as a proxied one; its Sample."""
        body = self._body(name, tag)
        req = self.observer.request_start(
            self.model_id, CHAT_PATH, body=body, metadata={"bench": self.run_id}
        )
        status, sample = 499, Sample(error="cancelled")  # ended before an answer
        try:
            async with self.scheduler.lease(self.model_id) as upstream:
                status, sample = await self._exchange(http, upstream, body, req.meter)
        except SwapdError as exc:
            status, sample = exc.http_status, Sample(error=str(exc))
        except httpx.HTTPError as exc:
            status, sample = 502, Sample(error=f"engine: {exc!r}")
        except anyio.get_cancelled_exc_class():
            if (cancelled := req.cancellation()) is None:
                raise
            status, sample = cancelled.http_status, Sample(error=str(cancelled))
        finally:
            self.observer.request_end(req, status)  # synchronous: no checkpoint to cancel
        return sample

    async def _exchange(
        self, http: httpx.AsyncClient, upstream: Upstream, body: bytes, meter: Meter
    ) -> tuple[int, Sample]:
        reply = Reply()
        began = time.monotonic()
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        url = upstream.base_url + CHAT_PATH
        async with http.stream("POST", url, content=body, headers=headers) as response:
            meter.start(response.status_code, list(response.headers.raw))
            if response.status_code >= 400:
                text = (await response.aread())[:ERROR_BYTES].decode("utf-8", "replace")
                meter.feed(text.encode())
                return response.status_code, Sample(
                    error=f"engine answered {response.status_code}: {text.strip()}"
                )
            async for chunk in response.aiter_raw():
                meter.feed(chunk)
                reply.feed(chunk)
        ended = time.monotonic()
        return response.status_code, measure(meter, reply, began, ended)


def measure(meter: Meter, reply: Reply, began: float, ended: float) -> Sample:
    usage = parse_usage(meter)
    prompt = usage.prompt_tokens or 0
    gen = usage.completion_tokens if usage.completion_tokens is not None else reply.frames
    ttft = reply.first - began if reply.first is not None else None
    timing: Timing = "engine"
    pp: float | None
    tg: float | None
    if usage.prompt_per_second is not None and usage.tokens_per_second is not None:
        pp, tg = usage.prompt_per_second, usage.tokens_per_second
    else:
        pp = prompt / ttft if ttft and prompt else None
        after = ended - reply.first if reply.first is not None else 0.0
        tg = (gen - 1) / after if gen > 1 and after > 0 else None
        timing = "clock"
    return Sample(
        prompt_tokens=prompt,
        gen_tokens=gen,
        ttft=ttft,
        pp_rate=round(pp, 2) if pp is not None else None,
        tg_rate=round(tg, 2) if tg is not None else None,
        timing=timing,
    )
