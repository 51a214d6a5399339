"""swapd's OpenAPI document (admin, inference and llama-swap routes), served at
``/openapi.json`` (prose: ``docs/api.md``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_MODEL = {"$ref": "#/components/schemas/ModelInfo"}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], *, params: list[Any] | None = None, **errors: str) -> Any:
    responses: dict[str, Any] = {"200": ok}
    for code, text in errors.items():
        responses[code.lstrip("e")] = _json(_ERROR, text)
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return op


def _accepted(op: Any) -> Any:
    """``op`` answering 202 (a job started) instead of 200."""
    op["responses"]["202"] = op["responses"].pop("200")
    return op


_STOPPED = _json(
    {
        "type": "object",
        "properties": {
            "stopped": {"type": "array", "items": {"type": "string"}},
            "message": {"type": "string"},
        },
    }
)
_NULLABLE_NUM = {"type": ["number", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_HEADERS = {"type": "object", "additionalProperties": {"type": "string"}}
_JOB = [{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}]
_BENCH = {  # a benchmark job (swapd.proxy.fleet.bench)
    "type": "object",
    "required": ["id", "model", "state", "params", "phase", "levels"],
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "time": {"type": "number"},
        "ended": _NULLABLE_NUM,
        "state": {"enum": ["running", "done", "failed", "cancelled"]},
        "error": {"type": ["string", "null"]},
        "params": {"type": "object"},
        "phase": {"enum": ["loading", "measuring", "done"]},
        "level": _NULLABLE_INT,
        "done": {"type": "integer"},
        "load_seconds": _NULLABLE_NUM,
        "levels": {"type": "array", "items": {"type": "object"}},
    },
}

_TEXT = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
_MESSAGES = {"type": "array", "items": {"type": "object"}}


def _inference(summary: str, required: list[str], **properties: Any) -> dict[str, Any]:
    """A POST routed by its body's ``model``; the engine's answer comes back untouched."""
    body = {
        "type": "object",
        "required": ["model", *required],
        "properties": {"model": {"type": "string"}, **properties},
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "the engine's answer (JSON, or an SSE stream)"},
                "400": _json(_ERROR, "invalid body, or no model named"),
                "404": _json(_ERROR, "unknown model"),
                "413": _json(_ERROR, "body larger than maxBodySize"),
                "429": _json(_ERROR, "too many requests queued for the model"),
                "502": _json(_ERROR, "the engine could not be reached"),
                "503": _json(_ERROR, "the engine failed to start, or swapd is shutting down"),
            },
        }
    }


_UNLOADED = _json(
    {
        "type": "object",
        "properties": {
            "msg": {"const": "ok"},
            "stopped": {"type": "array", "items": {"type": "string"}},
        },
    }
)
# The inference routes and llama-swap's routes (paths outside /api/ included).
_INFERENCE: dict[str, Any] = {
    "/health": {"get": {"summary": "Liveness (no key needed)", "responses": {"200": _TEXT}}},
    "/v1/models": {
        "get": _op(
            "The models a client may use (OpenAI's list)",
            _json(
                {
                    "type": "object",
                    "properties": {
                        "object": {"const": "list"},
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "object": {"const": "model"},
                                    "created": {"type": "integer"},
                                    "owned_by": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            ),
        )
    },
    "/running": {
        "get": _op(
            "The models not stopped (llama-swap's /running)",
            _json({"type": "object", "properties": {"running": _MESSAGES}}),
        )
    },
    "/unload": {"get": {"summary": "Stop every model (llama-swap)", "responses": {"200": _TEXT}}},
    "/api/models/unload": {"post": _op("Stop every model (llama-swap)", _UNLOADED)},
    "/api/models/unload/{id}": {
        "post": _op("Stop one model (llama-swap)", _UNLOADED, params=_ID, e404="unknown model")
    },
    "/api/profiles": {
        "get": _op(
            "The profiles and the active one",
            _json(
                {
                    "type": "object",
                    "properties": {"active": {"type": ["string", "null"]}, "profiles": _MESSAGES},
                }
            ),
        )
    },
    "/api/profiles/active": {
        "put": {
            **_op(
                "Make a profile active (null: none)",
                _json({"type": "object", "properties": {"active": {"type": ["string", "null"]}}}),
                e400="invalid request",
                e404="unknown profile",
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": ["string", "null"]}},
                        }
                    }
                },
            },
        }
    },
    "/v1/chat/completions": _inference(
        "OpenAI chat completion",
        ["messages"],
        messages=_MESSAGES,
        stream={"type": "boolean"},
        max_tokens={"type": "integer"},
    ),
    "/v1/completions": _inference(
        "OpenAI text completion", ["prompt"], prompt={"type": "string"}, stream={"type": "boolean"}
    ),
    "/v1/embeddings": _inference("OpenAI embeddings", ["input"], input={"type": "string"}),
    "/v1/responses": _inference(
        "OpenAI Responses API", ["input"], input={"type": "string"}, stream={"type": "boolean"}
    ),
    "/v1/rerank": _inference(
        "Rerank documents",
        ["query", "documents"],
        query={"type": "string"},
        documents={"type": "array", "items": {"type": "string"}},
    ),
    "/v1/messages": _inference(
        "Anthropic Messages API (errors in Anthropic's shape)",
        ["messages", "max_tokens"],
        messages=_MESSAGES,
        max_tokens={"type": "integer"},
        stream={"type": "boolean"},
    ),
    "/v1/messages/count_tokens": _inference(
        "Anthropic token count", ["messages"], messages=_MESSAGES
    ),
    "/upstream/{id}/{path}": {
        "get": {
            "summary": "Straight to one model's engine (started if needed), path and all",
            "parameters": [
                *_ID,
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "the engine's answer"},
                "404": _json(_ERROR, "no such model"),
                "503": _json(_ERROR, "the engine failed to start"),
            },
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "swapd API", "version": "1"},
    "paths": {
        "/api/models": {
            "get": _op(
                "Every configured model",
                _json(
                    {"type": "object", "properties": {"models": {"type": "array", "items": _MODEL}}}
                ),
            )
        },
        "/api/models/{id}/start": {
            "post": _op(
                "Start a model (?wait=true blocks until ready or failed)",
                _json(_MODEL),
                params=[
                    *_ID,
                    {"name": "wait", "in": "query", "schema": {"type": "boolean"}},
                ],
                e404="unknown model",
                e503="the model failed to start",
            )
        },
        "/api/models/{id}/stop": {
            "post": _op("Stop a model", _STOPPED, params=_ID, e404="unknown model")
        },
        "/api/models/stop": {"post": _op("Stop every model", _STOPPED)},
        "/api/models/{id}/sleep": {
            "post": _op(
                "Sleep a model",
                _json(_MODEL),
                params=_ID,
                e404="unknown model",
                e409="cannot sleep now",
            )
        },
        "/api/models/{id}/wake": {
            "post": _op(
                "Wake a model", _json(_MODEL), params=_ID, e404="unknown model", e409="not sleeping"
            )
        },
        "/api/config": {"get": _op("Effective config, sources, last reload errors", _json({}))},
        "/api/config/reload": {"post": _op("Reload the config", _json({}))},
        "/api/config/source": {
            "get": _op("The config files as written, secrets masked (admin)", _json({}))
        },
        "/api/config/errors": {"get": _op("The last rejected reload's errors", _json({}))},
        "/api/recipes": {
            "get": _op(
                "The recipe catalog and the main config's models made from recipes", _json({})
            )
        },
        "/api/recipes/{name}": {
            "get": _op(
                "One recipe: its file, placeholders and rendered docker run line",
                _json({}),
                params=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "set", "in": "query", "schema": {"type": "string"}},
                    {"name": "id", "in": "query", "schema": {"type": "string"}},
                ],
                e400="unknown recipe or bad set",
            )
        },
        "/api/recipes/models": {
            "post": _op(
                "Write a model made from a recipe into the config file, then reload (admin)",
                _json({}),
                e400="the edited config would not load (file:line:col issues)",
                e409="the id exists, or lives in another file, or no config file",
            )
        },
        "/api/recipes/models/{id}": {
            "delete": _op(
                "Remove a model from the config file, then reload (admin)",
                _json({}),
                params=_ID,
                e404="no such model in the main config file",
            )
        },
        # model files (swapd.proxy.fleet.files, docs/files.md); the POST bodies are not
        # described, so a fuzzer never starts a download or names a file to delete
        "/api/files": {"get": _op("Model files per node and the downloads", _json({}))},
        "/api/files/pull": {
            "post": _accepted(
                _op(
                    "Download a Hugging Face repository or files of it: a job (admin)",
                    _json({}),
                    e400="the body lacks repo, or it is not org/name",
                    e409="four downloads are running",
                )
            )
        },
        "/api/files/pulls": {"get": _op("Downloads: running and recent", _json({}))},
        "/api/files/pulls/{id}": {
            "get": _op("One download", _json({}), params=_ID, e404="no such download")
        },
        "/api/files/pulls/{id}/cancel": {
            "post": _op("Cancel a download (admin)", _json({}), params=_ID, e404="no such download")
        },
        "/api/files/remove": {
            "post": _op(
                "Delete a listed cached repository or GGUF file (admin)",
                _json({}),
                e400="the body lacks target",
                e404="not a listed model file",
                e409="configured models use it (without force), or it is being downloaded",
            )
        },
        "/api/files/model": {
            "post": _op(
                "A model entry made from a file or cached repository; with write, added (admin)",
                _json({}),
                e400="no target, nothing to serve, or (write) the config would not load",
                e404="no such path or cached repository",
                e409="the id is configured already",
            )
        },
        # nodes and images (swapd.proxy.fleet.nodes/images, docs/fleet.md); prune without a
        # body is a dry run, so a fuzzer never removes an image
        "/api/nodes": {"get": _op("Every node: Docker daemon, GPUs, disk, models", _json({}))},
        "/api/images": {
            "get": _op(
                "Images per node: needed, kept, in use, stale; the needed ones missing",
                _json({}),
                params=[{"name": "node", "in": "query", "schema": {"type": "string"}}],
                e404="no such node",
            )
        },
        "/api/images/pull": {
            "post": _op(
                "Pull images (the needed ones missing by default): NDJSON progress (admin)",
                {"description": "NDJSON lines", "content": {"application/x-ndjson": {}}},
                e400="images is not a list of references",
                e404="no such node",
            )
        },
        "/api/images/prune": {
            "post": _op(
                "Remove stale images, or with dry_run (the default) only plan it (admin)",
                _json({}),
                e400="unknown scope",
                e404="no such node",
            )
        },
        "/api/activity": {
            "get": _op(
                "Recent requests, newest first",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "activity": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Activity"},
                            }
                        },
                    }
                ),
                params=[{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
            )
        },
        "/api/captures/{id}": {
            "get": _op(
                "One request's captured request and response (bodies in base64)",
                _json({"$ref": "#/components/schemas/Capture"}),
                params=_ID,
                e400="invalid capture ID",
                e404="capture not found",
            )
        },
        "/api/inflight": {
            "get": _op(
                "Requests being proxied now",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "requests": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Inflight"},
                            }
                        },
                    }
                ),
            )
        },
        "/api/inflight/{id}/cancel": {
            "post": _op(
                "Cancel a request being proxied (its client gets a 503 request_cancelled)",
                _json({"type": "object", "properties": {"msg": {"const": "ok"}}}),
                params=_ID,
                e404="inflight request not found",
            )
        },
        "/api/models/{id}/bench": {
            "post": {
                "summary": "Start a benchmark of a model: a job (docs/bench.md)",
                "parameters": _ID,
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "concurrency": {
                                        "type": "array",
                                        "items": {"type": "integer", "minimum": 1, "maximum": 256},
                                        "minItems": 1,
                                        "maxItems": 16,
                                    },
                                    "prompt_tokens": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 131072,
                                    },
                                    "gen_tokens": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 32768,
                                    },
                                },
                                "additionalProperties": False,
                            }
                        }
                    }
                },
                "responses": {
                    "202": _json(_BENCH, "Started"),
                    "400": _json(_ERROR, "a bad parameter, or concurrency above concurrencyLimit"),
                    "404": _json(_ERROR, "unknown model"),
                    "409": _json(_ERROR, "the model is being benchmarked already"),
                },
            },
            "get": _op(
                "A model's stored benchmark results, newest first, and its running job",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "results": {"type": "array", "items": _BENCH},
                            "running": {"oneOf": [_BENCH, {"type": "null"}]},
                        },
                    }
                ),
                params=_ID,
                e404="unknown model",
            ),
        },
        "/api/bench/{job}": {
            "get": _op("A benchmark job", _json(_BENCH), params=_JOB, e404="no such job"),
            "delete": _op(
                "Cancel a benchmark job and its requests",
                _json(_BENCH),
                params=_JOB,
                e404="no such job",
            ),
        },
        "/api/bench/{job}/cancel": {
            "post": _op(
                "Cancel a benchmark job and its requests",
                _json(_BENCH),
                params=_JOB,
                e404="no such job",
            )
        },
        "/api/auth": {
            "get": _op(
                "The presented API key: its name, scopes and model globs (never the key)",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": ["string", "null"]},
                            "scopes": {
                                "type": "array",
                                "items": {"enum": ["inference", "read", "admin"]},
                            },
                            "models": {"type": "array", "items": {"type": "string"}},
                            "keys_required": {"type": "boolean"},
                        },
                    }
                ),
                e401="missing or invalid API key",
            )
        },
        "/api/version": {
            "get": _op(
                "swapd's version, and its commit and build date when known",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "version": {"type": "string"},
                            "commit": {"type": ["string", "null"]},
                            "build_date": {"type": ["string", "null"]},
                        },
                    }
                ),
            )
        },
        "/api/hardware": {
            "get": _op(
                "GPUs, CPU and RAM as swapd sees them, and how each source answered",
                _json({"$ref": "#/components/schemas/Hardware"}),
                params=[{"name": "refresh", "in": "query", "schema": {"type": "boolean"}}],
                e503="hardware detection unavailable (no source answered)",
            )
        },
        "/api/logs": {
            "get": _op(
                "Recent lines of swapd's log and every engine's (or one model's), oldest "
                "first, each with its source and time (Unix seconds); text as written",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "lines": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "time": {"type": "number"},
                                        "source": {"type": "string"},
                                        "text": {"type": "string"},
                                    },
                                },
                            }
                        },
                    }
                ),
                params=[
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {"name": "lines", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                e400="lines is not a whole number",
                e404="model not found",
            )
        },
        "/api/events": {
            "get": {
                "summary": "Server-Sent Events: snapshot, model, request, inflight, queue, "
                "log (?logs=true)",
                "responses": {"200": {"description": "text/event-stream"}},
            }
        },
        "/logs/stream": {
            "get": {
                "summary": "All logs, history then live",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
        "/logs/stream/proxy": {
            "get": {
                "summary": "swapd's own log, history then live",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
        "/logs/stream/upstream": {
            "get": {
                "summary": "Every engine's output, each line prefixed [model], history then live",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
        "/logs/stream/{id}": {
            "get": {
                "summary": "One model's engine log, history then live",
                "parameters": _ID,
                "responses": {
                    "200": {"description": "text/plain"},
                    "400": _json(_ERROR, "invalid logger (not proxy, upstream or a model)"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
        **_INFERENCE,
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "code": {"type": "string"},
                        },
                    }
                },
            },
            "ModelInfo": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "aliases": {"type": "array", "items": {"type": "string"}},
                    "group": {"type": "string"},
                    "driver": {"type": "string"},
                    "state": {
                        "enum": ["stopped", "starting", "ready", "stopping", "failed"],
                    },
                    "node": {"type": "string"},
                    "pid": _NULLABLE_INT,
                    "container": {"type": ["string", "null"]},
                    "port": _NULLABLE_INT,
                    "uptime": _NULLABLE_NUM,
                    "inflight": {"type": "integer"},
                    "queued": {"type": "integer"},
                    "last_use": _NULLABLE_NUM,
                    "ttl": {"type": "number"},
                    "ttl_left": _NULLABLE_NUM,
                    "progress": {
                        "type": ["object", "null"],
                        "properties": {
                            "phase": {"type": "string"},
                            "elapsed": {"type": "number"},
                            "detail": {"type": ["string", "null"]},
                        },
                    },
                    "error": {"type": ["string", "null"]},
                    "unlisted": {"type": "boolean"},
                    "placement": {"$ref": "#/components/schemas/ModelPlacement"},
                },
            },
            "ModelPlacement": {
                "type": ["object", "null"],
                "description": "where memory-aware placement put the model (docs/api.md)",
                "properties": {
                    "node": {"type": ["string", "null"]},
                    "devices": {"type": "array", "items": {"type": "integer"}},
                    "need_bytes": {"type": "integer"},
                    "held_bytes": {"type": "integer"},
                    "measured_bytes": {"type": "integer"},
                    "source": {"enum": ["learned", "declared", "estimated", "unknown", None]},
                    "detail": {"type": "string"},
                    "blocked_by": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Activity": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "time": {"type": "number"},
                    "model": {"type": "string"},
                    "path": {"type": "string"},
                    "status": {"type": "integer"},
                    "duration": {"type": "number"},
                    "ttfb": _NULLABLE_NUM,
                    "prompt_tokens": _NULLABLE_INT,
                    "completion_tokens": _NULLABLE_INT,
                    "cached_tokens": _NULLABLE_INT,
                    "tokens_per_second": _NULLABLE_NUM,
                    "has_capture": {"type": "boolean"},
                },
            },
            "Capture": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "req_path": {"type": "string"},
                    "req_headers": _HEADERS,
                    "req_body": {"type": "string", "contentEncoding": "base64"},
                    "resp_headers": _HEADERS,
                    "resp_body": {"type": "string", "contentEncoding": "base64"},
                    "req_truncated": {"type": "boolean"},
                    "resp_truncated": {"type": "boolean"},
                },
            },
            "Inflight": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "model": {"type": "string"},
                    "req_path": {"type": "string"},
                    "method": {"type": "string"},
                    "remote_ip": {"type": "string"},
                    "req_headers": _HEADERS,
                    "status": _NULLABLE_INT,
                    "resp_headers": _HEADERS,
                    "resp_bytes": {"type": "integer"},
                    "elapsed_ms": {"type": "integer"},
                },
            },
            "Hardware": {
                "type": "object",
                "properties": {
                    "captured_at": {"type": "number"},
                    "devices": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "index": {"type": "integer"},
                                "vendor": {"enum": ["nvidia", "amd"]},
                                "name": {"type": "string"},
                                "total_bytes": _NULLABLE_INT,
                                "free_bytes": _NULLABLE_INT,
                                "uuid": {"type": ["string", "null"]},
                                "source": {"type": "string"},
                            },
                        },
                    },
                    "memory": {
                        "type": ["object", "null"],
                        "properties": {
                            "total_bytes": {"type": "integer"},
                            "available_bytes": _NULLABLE_INT,
                            "cgroup_limit_bytes": _NULLABLE_INT,
                        },
                    },
                    "cpu": {
                        "type": ["object", "null"],
                        "properties": {
                            "model": {"type": ["string", "null"]},
                            "logical_cpus": _NULLABLE_INT,
                            "usable_cpus": _NULLABLE_INT,
                            "architecture": {"type": "string"},
                        },
                    },
                    "sources": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "ok": {"type": "boolean"},
                                "error": {"type": ["string", "null"]},
                            },
                        },
                    },
                    "placement": {
                        "type": "object",
                        "description": "every node's devices as placement sees them",
                        "properties": {
                            "active": {"type": "boolean"},
                            "headroom": {"type": "integer"},
                            "captured_at": _NULLABLE_NUM,
                            "nodes": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        }
    },
}
