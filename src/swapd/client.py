"""The CLI's HTTP client for a running swapd (admin API; contract in ``docs/api.md``).

Errors come back as :class:`ApiError` (the server answered with an error envelope) or
:class:`Unreachable` (nothing answered); ``swapd.cli`` maps them to exit codes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from swapd.errors import SwapdError

DEFAULT_URL = "http://127.0.0.1:8080"


class Unreachable(SwapdError):
    """No swapd answered at the URL."""


class ApiError(SwapdError):
    """swapd answered with an error status; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def base_url(url: str) -> tuple[str, str | None]:
    """swapd's address as the client uses it, and a note when it had to be corrected.

    ``127.0.0.1:8080`` gets ``http://``; an OpenAI base URL (``…/v1``, what SDKs are given)
    loses the ``/v1``: swapd's admin API lives at the root, and keeping it would make every
    call a "no route" error.
    """
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if not url.endswith("/v1"):
        return url, None
    fixed = url[: -len("/v1")]
    return fixed, f"{url} is an OpenAI base URL; using swapd's address {fixed}"


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None) -> None:
        given = url or os.environ.get("SWAPD_URL") or DEFAULT_URL
        self.url, self.note = base_url(given)  # note: a correction worth telling the user
        key = api_key if api_key is not None else os.environ.get("SWAPD_API_KEY")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach swapd at {self.url}: {_reason(exc)}") from exc
        _raise_for(response)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # ── models ──────────────────────────────────────────────────────────────────────────────

    def models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/api/models")["models"]
        return data

    def model(self, model_id: str) -> dict[str, Any]:
        """One model by id or alias; 404 ``ApiError`` naming the known ids otherwise."""
        models = self.models()
        for info in models:
            if info["id"] == model_id or model_id in info.get("aliases", ()):
                return info
        known = ", ".join(m["id"] for m in models) or "(none configured)"
        raise ApiError(404, f"model {model_id!r} not found; available models: {known}")

    def start(self, model_id: str, *, wait: bool = False) -> dict[str, Any]:
        params = {"wait": "true"} if wait else {}
        timeout = None if wait else 30.0
        info: dict[str, Any] = self._json(
            "POST", f"/api/models/{model_id}/start", params=params, timeout=timeout
        )
        return info

    def stop(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/api/models/{model_id}/stop", timeout=None)
        return result

    def stop_all(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/api/models/stop", timeout=None)
        return result

    def whoami(self) -> dict[str, Any]:
        """The API key in use: its name, scopes and model globs (``GET /api/auth``)."""
        info: dict[str, Any] = self._json("GET", "/api/auth")
        return info

    def hardware(self, *, refresh: bool = False) -> dict[str, Any]:
        """``GET /api/hardware``: the probes' snapshot and the placement view."""
        params = {"refresh": "true"} if refresh else {}
        info: dict[str, Any] = self._json("GET", "/api/hardware", params=params)
        return info

    def reload(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/api/config/reload")
        return result

    def config_sources(self) -> list[str]:
        """The config files the server reads (``GET /api/config``)."""
        sources: list[str] = self._json("GET", "/api/config")["sources"]
        return sources

    def add_recipe_model(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/recipes/models``: the server writes the entry into its config file."""
        result: dict[str, Any] = self._json("POST", "/api/recipes/models", json=body)
        return result

    def remove_recipe_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/recipes/models/{model_id}")
        return result

    # ── fleet: nodes and images ─────────────────────────────────────────────────────────────

    def nodes(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """``GET /api/nodes``: each node's Docker daemon, GPUs, disk and models."""
        params = {"refresh": "true"} if refresh else {}
        found: list[dict[str, Any]] = self._json("GET", "/api/nodes", params=params)["nodes"]
        return found

    def images(self, node: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/images``: images per node with needed / in-use / stale marks."""
        params = {"node": node} if node else {}
        found: list[dict[str, Any]] = self._json("GET", "/api/images", params=params)["nodes"]
        return found

    def pull_images(self, node: str | None = None, images: Sequence[str] = ()) -> Iterator[Any]:
        """``POST /api/images/pull``: its NDJSON lines (progress, per-image results, summary)
        as they come."""
        body = {"node": node, "images": list(images)}
        try:
            with self._http.stream("POST", "/api/images/pull", json=body, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach swapd at {self.url}: {_reason(exc)}") from exc

    def prune_images(
        self, node: str | None = None, *, dry_run: bool = False, scope: str = "engine"
    ) -> list[dict[str, Any]]:
        """``POST /api/images/prune``: per node the plan, and what was removed or failed."""
        body = {"node": node, "dry_run": dry_run, "scope": scope}
        found: list[dict[str, Any]] = self._json(
            "POST", "/api/images/prune", json=body, timeout=None
        )["nodes"]
        return found

    # ── fleet: model files ──────────────────────────────────────────────────────────────────

    def files(self) -> dict[str, Any]:
        """``GET /api/files``: model files per node, and the downloads."""
        found: dict[str, Any] = self._json("GET", "/api/files", timeout=None)
        return found

    def files_pull(self, repo: str, file: str | None, revision: str) -> dict[str, Any]:
        """``POST /api/files/pull``: start a download on the server; the job."""
        body = {"repo": repo, "file": file, "revision": revision}
        job: dict[str, Any] = self._json("POST", "/api/files/pull", json=body)
        return job

    def files_job(self, job_id: str, *, cancel: bool = False) -> dict[str, Any]:
        """A download job (``GET /api/files/pulls/{id}``), or cancel it (``…/cancel``)."""
        path = f"/api/files/pulls/{job_id}"
        job: dict[str, Any] = (
            self._json("POST", f"{path}/cancel") if cancel else self._json("GET", path)
        )
        return job

    def files_remove(self, target: str, *, force: bool = False) -> dict[str, Any]:
        body = {"target": target, "force": force}
        result: dict[str, Any] = self._json("POST", "/api/files/remove", json=body, timeout=None)
        return result

    def files_model(
        self, target: str, model_id: str | None = None, *, write: bool = False
    ) -> dict[str, Any]:
        """``POST /api/files/model``: the model entry made from a file or cached repository;
        with ``write`` also added to the server's config file and applied."""
        body = {"target": target, "id": model_id, "write": write}
        made: dict[str, Any] = self._json("POST", "/api/files/model", json=body, timeout=None)
        return made

    # ── logs and events ─────────────────────────────────────────────────────────────────────

    def log_entries(
        self, model_id: str | None = None, *, lines: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /api/logs``: ``{time, source, text}`` of swapd's and every engine's lines (or
        one model's), oldest first; the last ``lines`` only when given."""
        params: dict[str, str | int] = {}
        if model_id is not None:
            params["model"] = model_id
        if lines is not None:
            params["lines"] = max(lines, 0)
        entries: list[dict[str, Any]] = self._json("GET", "/api/logs", params=params)["lines"]
        return entries

    def logs(self, model_id: str | None = None) -> list[str]:
        """Recent log lines (``/logs``): all sources, or one model's engine without prefix."""
        lines = self._request("GET", "/logs").text.splitlines()
        if model_id is None:
            return lines
        prefix = f"[{model_id}] "
        return [line[len(prefix) :] for line in lines if line.startswith(prefix)]

    def stream_logs(self, model_id: str | None = None, *, history: bool = True) -> Iterator[str]:
        """Lines of ``/logs/stream[/{model}]``, history first; runs until the server ends it."""
        path = f"/logs/stream/{model_id}" if model_id else "/logs/stream"
        params = {} if history else {"no-history": ""}
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach swapd at {self.url}: {_reason(exc)}") from exc

    def events(self, *, logs: bool = False) -> Iterator[tuple[str, Any]]:
        """``(type, data)`` pairs from ``/api/events``."""
        params = {"logs": "true"} if logs else {}
        try:
            with self._http.stream("GET", "/api/events", params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        yield kind, json.loads(line[5:])
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach swapd at {self.url}: {_reason(exc)}") from exc

    # ── benchmarks ──────────────────────────────────────────────────────────────────────────

    def bench_start(self, model_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/models/{id}/bench``: start a server-side run; the job."""
        job: dict[str, Any] = self._json("POST", f"/api/models/{model_id}/bench", json=params)
        return job

    def bench_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json("GET", f"/api/bench/{job_id}")
        return job

    def bench_cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE /api/bench/{job}``: answers once the run and its requests stopped."""
        job: dict[str, Any] = self._json("DELETE", f"/api/bench/{job_id}")
        return job

    def bench_results(self, model_id: str) -> list[dict[str, Any]]:
        """The model's stored results, newest first."""
        results: list[dict[str, Any]] = self._json("GET", f"/api/models/{model_id}/bench")[
            "results"
        ]
        return results


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is `swapd serve` running?)"
    return text


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    message = response.text.strip() or f"HTTP {response.status_code}"
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
    except ValueError:
        pass
    raise ApiError(response.status_code, message)
