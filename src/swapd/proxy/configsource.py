"""The config files as the user wrote them, secrets masked, for ``GET /api/config/source``.

The web UI's Config page shows this text with line numbers and a rejected reload's
``file:line:col`` errors at their lines, so every line keeps its place: a secret is replaced by
:data:`~swapd.secrets.MASK` within its line. Masked: the scalars at the places secrets are
written (``apiKeys`` entries and their ``key``, ``peers.*.apiKey``, the values of a model's
``env`` and of its driver block's ``env``), except a value that is only ``${env.NAME}``
references (the text then holds no secret); then every secret value of the running config
(:func:`swapd.secrets.redactor`) wherever it appears, macros included. A file that does not
parse (a rejected reload) gets the second pass and ``KEY=value`` lines masked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from swapd.config.demo import DEMO_NAME, demo_text
from swapd.config.model import Config
from swapd.secrets import MASK, redactor

Span = tuple[int, int, str]  # 0-based line, 0-based column, the text written there
ONLY_REFERENCES = re.compile(r"^(\$\{env\.[A-Za-z_][A-Za-z0-9_]*\})+$")
ENV_LINE = re.compile(r"^(\s*-?\s*['\"]?[A-Za-z_][A-Za-z0-9_]*=)([^'\"\n]*)")


def sources(config: Config) -> list[dict[str, Any]]:
    """Each source file of ``config`` as ``{name, text, error}``: the text as it is on disk
    now (so after a rejected reload, the text the errors point into), masked."""
    files: list[dict[str, Any]] = []
    for name in config.sources:
        text: str | None = None
        error: str | None = None
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if name == DEMO_NAME:
                text = demo_text()
            else:
                error = f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}"
        files.append({"name": name, "text": masked(text, config) if text else text, "error": error})
    return files


def masked(text: str, config: Config) -> str:
    """``text`` with its secrets replaced by :data:`MASK`, line and line count kept."""
    lines = text.split("\n")
    try:
        spans = _secret_spans(YAML(typ="rt").load(text))
    except (YAMLError, ValueError, TypeError, RecursionError):
        lines = [
            ENV_LINE.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), x) for x in lines
        ]
        spans = []
    for line, col, written in sorted(spans, key=lambda s: (s[0], -s[1])):
        if line >= len(lines) or not written or ONLY_REFERENCES.match(written):
            continue
        here = lines[line]
        at = here.find(written, col)
        if at < 0:  # a multi-line or escaped scalar: mask the rest of its first line
            lines[line] = here[:col] + MASK
        else:
            lines[line] = here[:at] + MASK + here[at + len(written) :]
    return redactor(config).text("\n".join(lines))


def _mask_value(match: re.Match[str]) -> str:
    return match.group(1) + (MASK if match.group(2) else "")


def _secret_spans(root: Any) -> list[Span]:
    if not isinstance(root, CommentedMap):
        return []
    spans: list[Span] = []
    keys = root.get("apiKeys")
    if isinstance(keys, str):
        spans += _value(root, "apiKeys")
    elif isinstance(keys, CommentedSeq):
        for i, entry in enumerate(keys):
            if isinstance(entry, CommentedMap):
                spans += _value(entry, "key")
            elif isinstance(entry, str):
                spans.append((*keys.lc.item(i), entry))
    peers = root.get("peers")
    if isinstance(peers, CommentedMap):
        for peer in peers.values():
            if isinstance(peer, CommentedMap):
                spans += _value(peer, "apiKey")
    models = root.get("models")
    if isinstance(models, CommentedMap):
        for model in models.values():
            if not isinstance(model, CommentedMap):
                continue
            spans += _env(model.get("env"))
            for block in model.values():  # the driver's block: docker: {env: …}
                if isinstance(block, CommentedMap):
                    spans += _env(block.get("env"))
    return spans


def _value(mapping: CommentedMap, key: str) -> list[Span]:
    value = mapping.get(key)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return []
    line, col = mapping.lc.value(key)
    return [(line, col, str(value))]


def _env(env: Any) -> list[Span]:
    """The values of an ``env`` list (``KEY=value``) or mapping."""
    spans: list[Span] = []
    if isinstance(env, CommentedSeq):
        for i, item in enumerate(env):
            if isinstance(item, str) and "=" in item:
                line, col = env.lc.item(i)
                spans.append((line, col + len(item.split("=", 1)[0]) + 1, item.split("=", 1)[1]))
    elif isinstance(env, CommentedMap):
        for key in env:
            spans += _value(env, key)
    return spans
