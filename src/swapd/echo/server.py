"""``python -m swapd.echo``: the echo engine as a process (flags, signals, uvicorn, one socket)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from swapd.echo.app import EchoApp, create_app

DESCRIPTION = (
    "The echo engine: a fast, fake OpenAI/Anthropic/llama.cpp-compatible inference server."
)
_release: Callable[[], None] | None = None  # drops the fake GPU allocation (--allocate)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m swapd.echo", description=DESCRIPTION)
    p.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="echo", help="model name used in replies and headers")
    p.add_argument("--health-delay", type=float, default=0.0, help="GET /health is 503 this long")
    p.add_argument("--start-delay", type=float, default=0.0, help="sleep before binding")
    p.add_argument("--exit-after", type=float, default=None, help="exit after S seconds")
    p.add_argument("--exit-code", type=int, default=1, help="status for --exit-after")
    p.add_argument("--chunks", type=int, default=None, help="streamed pieces per reply")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between pieces")
    p.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    p.add_argument("--sleep-mode", action="store_true", help="serve vLLM's /sleep /wake_up API")
    p.add_argument("--fail-wake", action="store_true", help="/wake_up answers 500")
    p.add_argument(
        "--served-model-name",
        nargs="+",
        default=(),
        metavar="NAME",
        help="answer only to these model names (404 otherwise, like vLLM)",
    )
    p.add_argument(
        "--allocate",
        type=_size,
        default=None,
        metavar="SIZE",
        help="take SIZE (e.g. 8GiB, split over the visible devices) of the fake GPUs named by "
        "SWAPD_FAKE_GPUS before binding; exit 1 with a CUDA-like error when it does not fit",
    )
    p.add_argument(
        "--allocate-delay", type=float, default=0.0, help="seconds of 'loading' before --allocate"
    )
    return p


def _size(text: str) -> int:
    from swapd.config.schema import parse_size

    value = parse_size(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a size like 8GiB, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import signal
    import threading

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    if args.exit_after is not None:
        if args.exit_after <= 0:
            sys.stdout.flush()
            os._exit(args.exit_code)
        timer = threading.Timer(args.exit_after, _hard_exit, (args.exit_code,))
        timer.daemon = True
        timer.start()
    if args.start_delay > 0:
        time.sleep(args.start_delay)
    if args.allocate is not None:
        _allocate(args.allocate, args.allocate_delay)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"echo engine: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]

    echo = create_app(
        args.model,
        health_delay=args.health_delay,
        chunks=args.chunks,
        chunk_delay=args.chunk_delay,
        allow_crash=True,
        sleep_mode=args.sleep_mode,
        fail_wake=args.fail_wake,
    )
    banner = f"echo engine {args.model} listening on http://{args.host}:{port}"
    _serve(echo, sock, banner, args.served_model_name)


def _allocate(total: int, delay: float) -> None:
    """Like an engine loading weights: take fake GPU memory (see swapd.echo.gpu), or fail."""
    import atexit

    from swapd.echo import gpu
    from swapd.placement import RAM

    if delay > 0:
        time.sleep(delay)
    try:
        spec, allocation = gpu.allocate_from_env(total)
    except gpu.OutOfMemory as exc:
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(1) from exc
    except gpu.FakeGpuError as exc:
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
    global _release
    _release = functools.partial(gpu.release, spec, allocation.pid)
    atexit.register(_release)
    where = ",".join("RAM" if i == RAM else str(i) for i in allocation.devices)
    print(
        f"fake GPU: allocated {gpu.size(allocation.bytes_per_device)} on each of "
        f"{allocation.node}:{where} (pid {allocation.pid})",
        flush=True,
    )


def _release_allocation() -> None:
    if _release is not None:
        _release()


def _exit_now(signum: int, frame: object) -> None:
    _release_allocation()
    sys.stdout.flush()
    os._exit(0)


def _hard_exit(code: int) -> None:
    _release_allocation()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve(echo: EchoApp, sock: socket.socket, banner: str, names: Sequence[str] = ()) -> None:
    import contextlib
    import importlib.util

    import uvicorn

    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    from swapd.echo.names import ServedNames

    config = uvicorn.Config(
        ServedNames(echo, names) if names else echo,
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        backlog=2048,
    )

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # our own handlers exit at once
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                echo.started_at = time.monotonic()
                print(banner, flush=True)

    server = _Server(config)

    if has_uvloop:
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))
