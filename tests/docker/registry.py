"""A tiny Docker Registry (HTTP API v2, read-only) for pull tests: no registry image can be had
here, so this serves images built in memory — one gzip layer with a file, an image config and
a schema-2 manifest — on 127.0.0.1, which dockerd treats as an insecure (plain HTTP) registry
by default. The daemon under test pulls through its real registry client; requests are recorded.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from swapd.testing import serve_http

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass
class Registry:
    port: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, repo: str, tag: str, payload: bytes) -> str:
        """Serve ``repo:tag``, an image with one file ``/payload`` (its bytes and this
        registry's address make it unique: a daemon never has its layer already); the full
        reference to pull."""
        tar = layer_tar("payload", payload + f" from {self.host}".encode())
        layer = gzip.compress(tar, mtime=0)
        config = json.dumps(
            {
                "architecture": ARCH,
                "os": "linux",
                "config": {"Cmd": ["/payload"]},
                "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
                "history": [{"created_by": f"swapd test registry {repo}:{tag}"}],
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "size": len(config), "digest": _digest(config)},
                "layers": [{"mediaType": LAYER, "size": len(layer), "digest": _digest(layer)}],
            }
        ).encode()
        self.blobs[_digest(layer)] = layer
        self.blobs[_digest(config)] = config
        self.manifests[(repo, tag)] = manifest
        self.manifests[(repo, _digest(manifest))] = manifest
        return f"{self.host}/{repo}:{tag}"


def _handler(registry: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, digest: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            registry.requests.append(f"{self.command} {self.path}")
            path = self.path.split("?", 1)[0]
            if path in ("/v2/", "/v2"):
                return self._send(200, b"{}", "application/json")
            if "/manifests/" in path:
                repo, _, ref = path[len("/v2/") :].rpartition("/manifests/")
                manifest = registry.manifests.get((repo, ref))
                if manifest is not None:
                    return self._send(200, manifest, MANIFEST, _digest(manifest))
            elif "/blobs/" in path:
                blob = registry.blobs.get(path.rpartition("/blobs/")[2])
                if blob is not None:
                    return self._send(200, blob, "application/octet-stream", _digest(blob))
            error = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": f"unknown: {path}"}]}
            return self._send(404, json.dumps(error).encode(), "application/json")

        do_HEAD = do_GET

    return Handler


@contextlib.contextmanager
def serving() -> Iterator[Registry]:
    registry = Registry()
    with serve_http(_handler(registry)) as port:
        registry.port = port
        yield registry
