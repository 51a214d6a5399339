"""Which paths carry a model name, and where in the request it is."""

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
    }
)
MODEL_PREFIXES = ("/v1/audio/", "/v1/images/")  # any method; model from body, form or query
MODEL_GET = frozenset({"/v1/audio/voices", "/props"})  # model from ?model=
LOADING_STATE_PATH = "/v1/chat/completions"


def is_model_route(method: str, path: str) -> bool | None:
    """True when routed by model, None when the path is a model route but the method is wrong."""
    if path in MODEL_POST:
        return True if method == "POST" else None
    if path.startswith(MODEL_PREFIXES):
        return True
    return path in MODEL_GET
