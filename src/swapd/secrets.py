"""Secrets stay in: the values swapd must never show, and a redactor that hides them.

A config's secrets are the values that came from ``${env.NAME}`` (``Config.secrets``, recorded by
the loader), every model's ``env:`` entry value, the Docker driver's ``env`` values, the API keys
and the peers' keys. Whatever swapd shows a client — ``/running``, ``/api/models``,
``/api/config``, the logs served over HTTP, ``/api/events``, error bodies — goes through
:func:`redactor` first, which replaces each such value with :data:`MASK`.

Values shorter than :data:`MIN_LENGTH` characters are not redacted in free text: a value like
``1``, ``true`` or ``8080`` would otherwise mangle every line that happens to contain it, and
is no secret worth the damage. ``/api/config`` still masks every ``env`` value, whatever its
length (it knows where they are).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from swapd.config.model import Config, ModelConfig

MASK = "***"
MIN_LENGTH = 6  # shorter values are left alone in free text (see the module docstring)


def model_env(model: ModelConfig) -> dict[str, str]:
    """A model's environment as written: ``env:`` entries plus the Docker driver's ``env``."""
    env = dict(model.env)
    options_env = getattr(model.options, "env", None)
    if options_env is None and isinstance(model.options, Mapping):  # a plugin driver's block
        options_env = model.options.get("env")
    if isinstance(options_env, Mapping):
        env.update({str(k): str(v) for k, v in options_env.items()})
    return env


def collect(config: Config) -> frozenset[str]:
    """Every secret value of ``config`` (any length)."""
    values: set[str] = set(config.secrets)
    for model in config.models.values():
        values.update(model_env(model).values())
    values.update(config.api_keys)
    values.update(k.key for k in config.keys)
    values.update(p.api_key for p in config.peers.values() if p.api_key)
    return frozenset(values)


class Redactor:
    """Replaces known secret values in text, bytes and JSON-ready values with :data:`MASK`.

    A value is also found in its JSON-escaped form (inside an encoded JSON string), so that
    an already encoded SSE frame or JSON body can be redacted as bytes.
    """

    def __init__(self, values: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in values:
            if len(value) < MIN_LENGTH:
                continue
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # escaped quotes, backslashes, non-ASCII
        ordered = sorted(forms, key=len, reverse=True)  # the longest first: no partial leaks
        self._text = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes = (
            re.compile(b"|".join(re.escape(f.encode()) for f in ordered)) if ordered else None
        )

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, text: str) -> str:
        return text if self._text is None else self._text.sub(MASK, text)

    def bytes(self, data: bytes) -> bytes:
        return data if self._bytes is None else self._bytes.sub(MASK.encode(), data)

    def value(self, value: Any) -> Any:
        """A JSON-ready value (dicts, lists, strings, numbers) with every string redacted."""
        if self._text is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


_cache: tuple[Config, Redactor] | None = None


def redactor(config: Config) -> Redactor:
    """The redactor for ``config`` (built once per config: a reload makes a new one)."""
    global _cache
    cached = _cache
    if cached is None or cached[0] is not config:
        cached = _cache = (config, Redactor(collect(config)))
    return cached[1]


def masked_config(config: Config, data: dict[str, Any]) -> dict[str, Any]:
    """``/api/config``'s view of ``config`` (``data``: its plain JSON form): every ``env`` value,
    key and peer key masked, driver options as plain data, and every other string redacted."""
    data.pop("secrets", None)
    data["api_keys"] = [MASK for _ in config.api_keys]
    if "keys" in data:
        data["keys"] = [{**k, "key": MASK} for k in data["keys"] if isinstance(k, dict)]
    for model_id, model in config.models.items():
        shown = data.get("models", {}).get(model_id)
        if not isinstance(shown, dict):
            continue
        shown["env"] = {name: MASK for name in model.env}
        as_dict = getattr(model.options, "as_dict", None)
        options: dict[str, Any] = dict(as_dict()) if callable(as_dict) else {}
        if isinstance(options.get("env"), Mapping):
            options["env"] = {str(name): MASK for name in options["env"]}
        shown["options"] = options
    for peer_id, peer in config.peers.items():
        shown = data.get("peers", {}).get(peer_id)
        if isinstance(shown, dict) and peer.api_key:
            shown["api_key"] = MASK
    result: dict[str, Any] = redactor(config).value(data)
    return result
