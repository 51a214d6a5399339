"""Real Docker daemons for the docker driver tests (helpers; fixtures in conftest.py).

``dockerd`` (Debian's docker.io, as root) is started in a temp dir with vfs storage, no iptables,
no bridge, on its own unix socket; two daemons on two sockets are two nodes. The test image is a
``docker import`` of an empty rootfs; containers run the echo engine with the host's Python, the
virtual environment and this checkout bind-mounted read-only, on the host network.

Tests skip, printing why, only when dockerd cannot start (not root, not installed, …);
``SWAPD_REQUIRE_DOCKER=1`` (set by ``.ci/run``) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import swapd
from swapd.testing import free_port_range

IMAGE = "swapd-test/echo:1"
REPO = Path(swapd.__file__).resolve().parents[2]
START_TIMEOUT = 60.0


@dataclass
class Daemon:
    name: str
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def sock(self) -> Path:
        return self.root / "docker.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.endpoint, timeout=60)

    def containers(self) -> list[Any]:
        c = self.client()
        try:
            return list(c.containers.list(all=True, filters={"label": "swapd.model"}))
        finally:
            c.close()

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "dockerd.log").read_text().splitlines()[-n:])
        return ""


def _unavailable(reason: str) -> None:
    print(f"\nSKIP tests/docker: {reason}", file=sys.stderr)
    if os.environ.get("SWAPD_REQUIRE_DOCKER") == "1":
        pytest.fail(f"SWAPD_REQUIRE_DOCKER=1 but dockerd cannot start: {reason}")
    pytest.skip(reason)


def start(name: str) -> Daemon:
    dockerd = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None
    )
    if dockerd is None:
        _unavailable("dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        _unavailable("dockerd needs root here")
    root = Path(tempfile.mkdtemp(prefix=f"swapd-dk-{name}-", dir="/tmp"))
    argv = [
        str(dockerd),
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{root / 'docker.sock'}",
    ]
    # dockerd writes to its own copy of the descriptor; ours is closed once it answers or fails
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        daemon = Daemon(name, root, proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = daemon.log_tail()
                # An older dockerd without --ip6tables: retry without it.
                if "ip6tables" in tail and "--ip6tables=false" in argv:
                    argv.remove("--ip6tables=false")
                    proc = subprocess.Popen(
                        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                    daemon.proc = proc
                    continue
                shutil.rmtree(root, ignore_errors=True)
                _unavailable(f"dockerd exited with {proc.returncode}:\n{tail}")
            if daemon.sock.exists() and _answers(daemon):
                return daemon
            time.sleep(0.2)
    stop(daemon)
    _unavailable(f"dockerd did not answer within {START_TIMEOUT:g}s:\n{daemon.log_tail()}")
    raise AssertionError("unreachable")


def _answers(daemon: Daemon) -> bool:
    try:
        c = daemon.client()
    except Exception:
        return False
    try:
        return bool(c.ping())
    except Exception:
        return False
    finally:
        c.close()


def stop(daemon: Daemon) -> None:
    with contextlib.suppress(Exception):
        c = daemon.client()
        try:
            for container in c.containers.list(all=True):
                container.remove(force=True)
        finally:
            c.close()
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.proc.pid, signal.SIGKILL)
            daemon.proc.wait()
    # dockerd may leave mounts (netns, shm) under its roots: unmount them, then remove the rest
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if str(daemon.root) in line]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", str(daemon.root)], check=False)


def import_image(daemon: Daemon) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
    c = daemon.client()
    try:
        c.api.import_image_from_data(buf.getvalue(), repository=IMAGE.split(":")[0], tag="1")
    finally:
        c.close()


def clear(daemon: Daemon) -> None:
    """Each test starts on an empty daemon (what a test leaves behind is asserted in it)."""
    with contextlib.suppress(Exception):
        for c in daemon.containers():
            c.remove(force=True)


def mounts() -> list[str]:
    """Read-only bind mounts that let a scratch container run this Python and this checkout."""
    paths = ["/usr", "/lib", "/lib64", sys.base_prefix, sys.prefix, str(REPO)]
    out: list[str] = []
    for p in paths:
        if os.path.exists(p) and p not in [m.split(":")[0] for m in out]:
            out.append(f"{p}:{p}:ro")
    return out


def echo_block(model: str, *args: str, image: str = IMAGE) -> str:
    """A ``docker:`` block (YAML flow) running the echo engine on ``${PORT}``."""
    import json

    command = [sys.executable, "-m", "swapd.echo", "--port", "${PORT}", "--model", model, *args]
    block = {"image": image, "command": command, "volumes": mounts()}
    return json.dumps(block)


def free_run(n: int = 8) -> int:
    return free_port_range(n)
