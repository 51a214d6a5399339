"""A stand-in for the Hugging Face Hub: the HTTP surface ``huggingface_hub`` uses to download
(``HF_ENDPOINT=http://127.0.0.1:PORT``), so the real client is tested without the network.

- ``GET /api/models/{org}/{name}/revision/{rev}[?blobs=true]``: the repository's commit
  (``sha``) and files (``siblings`` with sizes and LFS hashes), as ``HfApi.model_info`` reads;
- ``HEAD`` and ``GET /{org}/{name}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` (the
  sha256, as the Hub gives for LFS files), ``Content-Length``; ``Range`` is honoured;
- unknown repositories and files: 404 with ``X-Error-Code: RepoNotFound`` / ``EntryNotFound``;
  with ``token`` set, a request without ``Authorization: Bearer TOKEN`` gets 401 and
  ``X-Error-Code: GatedRepo``.

Every request is recorded (method, path, ``Authorization``). A file is bytes, or an int: that
many zero bytes, sent in 256 KiB pieces ``delay`` seconds apart (a slow download to watch).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from swapd.testing import serve_http

PIECE = 256 * 1024
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/?]+)")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+)")


@dataclass
class Hub:
    repos: dict[str, dict[str, bytes | int]]
    token: str | None = None
    delay: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def sha(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()  # a 40-hex commit id

    @staticmethod
    def size(content: bytes | int) -> int:
        return content if isinstance(content, int) else len(content)

    @staticmethod
    def digest(content: bytes | int) -> str:
        if isinstance(content, int):
            h = hashlib.sha256()
            for start in range(0, content, PIECE):
                h.update(bytes(min(PIECE, content - start)))
            return h.hexdigest()
        return hashlib.sha256(content).hexdigest()

    def info(self, repo: str) -> dict[str, Any]:
        siblings = []
        for name, content in self.repos[repo].items():
            digest, size = self.digest(content), self.size(content)
            lfs = {"sha256": digest, "size": size, "pointerSize": 134}
            siblings.append({"rfilename": name, "size": size, "blobId": digest[:40], "lfs": lfs})
        return {
            "_id": repo,
            "id": repo,
            "modelId": repo,
            "sha": self.sha(repo),
            "private": False,
            "siblings": siblings,
        }


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _fail(self, status: int, code: str, message: str, repo: str = "") -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if repo in hub.repos:
                self.send_header("X-Repo-Commit", hub.sha(repo))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _allowed(self) -> bool:
            auth = self.headers.get("Authorization")
            hub.requests.append((self.command, self.path, auth))
            if hub.token and auth != f"Bearer {hub.token}":
                self._fail(401, "GatedRepo", "Access to this model is restricted.")
                return False
            return True

        def do_GET(self) -> None:
            if not self._allowed():
                return
            if m := _INFO.match(self.path):
                repo = m.group("repo")
                if repo not in hub.repos:
                    self._fail(404, "RepoNotFound", "Repository not found")
                    return
                body = json.dumps(hub.info(repo)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._resolve(send_body=True)

        def do_HEAD(self) -> None:
            if self._allowed():
                self._resolve(send_body=False)

        def _resolve(self, *, send_body: bool) -> None:
            m = _RESOLVE.match(self.path)
            if m is None or m.group("repo") not in hub.repos:
                self._fail(404, "RepoNotFound", "Repository not found")
                return
            repo, name = m.group("repo"), m.group("file")
            content = hub.repos[repo].get(name)
            if content is None:
                self._fail(404, "EntryNotFound", f"{name} does not exist", repo)
                return
            size = hub.size(content)
            start = 0
            if (ranged := re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")) and send_body:
                start = int(ranged.group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", hub.sha(repo))
            self.send_header("ETag", f'"{hub.digest(content)}"')
            self.send_header("Content-Length", str(size - start))
            self.send_header("Content-Type", "application/octet-stream")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not send_body:
                return
            if isinstance(content, bytes):
                self.wfile.write(content[start:])
                return
            for offset in range(start, size, PIECE):
                try:
                    self.wfile.write(bytes(min(PIECE, size - offset)))
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away (a cancelled download)
                time.sleep(hub.delay)

    return Handler


@contextlib.contextmanager
def serve_hub(
    repos: dict[str, dict[str, bytes | int]], *, token: str | None = None, delay: float = 0.0
) -> Iterator[Hub]:
    """Run the stand-in on a free loopback port until the block exits; ``hub.url`` is its
    ``HF_ENDPOINT``."""
    hub = Hub(repos, token=token, delay=delay)
    with serve_http(_handler(hub)) as port:
        hub.url = f"http://127.0.0.1:{port}"
        yield hub
