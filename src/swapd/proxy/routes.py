"""Which paths carry a model name, where in the request it is, and the path sent upstream."""

from __future__ import annotations

# POST endpoints whose body names the model (JSON, or a multipart form for audio/images).
MODEL_POST = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/rerank",
        "/rerank",
        "/v1/reranking",
        "/reranking",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/infill",
        "/completion",
        "/sdapi/v1/txt2img",  # stable-diffusion.cpp / A1111
        "/sdapi/v1/img2img",
        "/audioapi/v1/tasks/run",  # audio.cpp's task API; forwarded as /v1/tasks/run
        # versionless (llama-swap #728): forwarded without the /v, e.g. /chat/completions
        "/v/chat/completions",
        "/v/completions",
        "/v/responses",
        "/v/embeddings",
        "/v/rerank",
        "/v/reranking",
        "/v/messages",
        "/v/messages/count_tokens",
    }
)
# Any method; the model from a JSON body, a multipart form (transcriptions, image edits) or
# the query (GET /v1/audio/voices). Covers speech, voices, generations and what comes next.
MODEL_PREFIXES = ("/v1/audio/", "/v1/images/")
MODEL_GET = frozenset({"/v1/audio/voices", "/props", "/sdapi/v1/loras"})  # from ?model=
LOADING_STATE_PATH = "/v1/chat/completions"
_STRIPPED = (("/v/", b"/v"), ("/audioapi/", b"/audioapi"))


def is_model_route(method: str, path: str) -> bool | None:
    """True when routed by model, None when the path is a model route but the method is wrong."""
    if path in MODEL_POST:
        return True if method == "POST" else None
    if path.startswith(MODEL_PREFIXES):
        return True
    return path in MODEL_GET


def upstream_path(path: str, raw_path: bytes) -> bytes:
    """The raw path sent upstream: ``/v/…`` and ``/audioapi/…`` lose their prefix."""
    for prefix, raw_prefix in _STRIPPED:
        if path.startswith(prefix) and raw_path.startswith(raw_prefix):
            return raw_path[len(raw_prefix) :]
    return raw_path
