"""What the Ollama API says about a model: details, model_info and capabilities.

Read from the model's local GGUF file when its command names one (``-m``; found by
:func:`swapd.footprint.gguf_file`, read by :func:`swapd.gguf.read`) and from its
``capabilities:`` config; a model with neither (a vLLM folder, a peer's model) gets empty
details and ``completion`` alone. Reading a file is blocking (a big vocabulary takes a tenth of
a second to skip the first time): callers run :func:`cards` in a worker thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from swapd import footprint, gguf
from swapd.config.model import ModelConfig

# metadata keys Ollama leaves out of model_info (the template is served apart, as "")
_LEFT_OUT = ("tokenizer.chat_template",)
_POOLING_RUNNERS = (("--task", "embed"), ("--runner", "pooling"), ("--task", "embedding"))
STARTED = datetime.now(UTC)  # modified_at for a model without a file


def empty_details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


@dataclass(frozen=True, slots=True)
class Card:
    """One model as Ollama describes it (``Card()``: a model swapd knows nothing about)."""

    details: dict[str, Any] = field(default_factory=empty_details)
    model_info: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ("completion",)
    size: int = 0  # bytes of the weights file(s); 0 when unknown
    context: int = 0  # tokens; 0 when unknown
    modified: datetime = STARTED


def digest(name: str) -> str:
    """A stable stand-in for Ollama's blob digest: sha256 of the name, hex."""
    return hashlib.sha256(name.encode()).hexdigest()


def rfc3339(when: datetime) -> str:
    """``2026-12-01T20:50:45.123456Z``: what Go's time parser and pydantic both read."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _pairs(argv: list[str]) -> set[tuple[str, str]]:
    """Option/value pairs, written ``--opt value`` or ``--opt=value``."""
    pairs = set(pairwise(argv))
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq:
            pairs.add((name, value))
    return pairs


def card(model: ModelConfig) -> Card:
    """The model's card (reads its GGUF file if it has one; blocking)."""
    file = footprint.gguf_file(model)
    found: gguf.Gguf | None = None
    if file is not None:
        try:
            found = gguf.read(file)
        except (OSError, ValueError):
            found = None
    argv = footprint.engine_argv(model)
    caps = model.capabilities
    details = empty_details()
    info: dict[str, Any] = {}
    template = ""
    pooling = bool(_pairs(argv) & set(_POOLING_RUNNERS))
    modified = STARTED
    if found is not None:
        meta = found.metadata
        arch = found.architecture
        details.update(
            format="gguf",
            family=arch,
            families=[arch] if arch else None,
            parameter_size=str(meta.get("general.size_label", "")),
            quantization_level=found.file_type,
        )
        info = {
            k: v
            for k, v in sorted(meta.items())
            if not isinstance(v, tuple) and not k.startswith(_LEFT_OUT)
        }
        template = str(meta.get("tokenizer.chat_template", ""))
        pooling = pooling or f"{arch}.pooling_type" in meta
        try:
            modified = datetime.fromtimestamp(found.path.stat().st_mtime, UTC)
        except OSError:
            modified = STARTED
    context = caps.context
    if not context and found is not None:
        trained = found.arch("context_length")
        context = trained if isinstance(trained, int) else 0
    if context and found is not None and found.architecture:
        info[f"{found.architecture}.context_length"] = context
    return Card(
        details=details,
        model_info=info,
        capabilities=tuple(_capabilities(model, argv, template, pooling=pooling)),
        size=found.size if found is not None else 0,
        context=context,
        modified=modified,
    )


def _capabilities(
    model: ModelConfig, argv: list[str], template: str, *, pooling: bool
) -> Iterable[str]:
    """Ollama's words: completion (not for a pooling-only model), tools (configured, or the
    chat template takes tools), vision (image input configured, or ``--mmproj``), embedding
    (``--embedding(s)``, a pooling model or runner), thinking (the template thinks)."""
    caps = model.capabilities
    if not pooling:
        yield "completion"
    if caps.tools or "tools" in template:
        yield "tools"
    if "image" in caps.inputs or any(a.startswith("--mmproj") for a in argv):
        yield "vision"
    if pooling or "--embedding" in argv or "--embeddings" in argv:
        yield "embedding"
    if "<think>" in template or "enable_thinking" in template:
        yield "thinking"


def cards(models: Iterable[ModelConfig]) -> dict[str, Card]:
    """Cards by model id (blocking: run in a worker thread)."""
    return {m.id: card(m) for m in models}
