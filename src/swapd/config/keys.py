"""``apiKeys``: plain strings (full access) or mappings with a name, scopes and model globs.

A plain string keeps llama-swap's meaning: the key may do everything. A mapping
``{key, name, scopes, models}`` (swapd) narrows it: ``scopes`` is a list of ``inference``,
``read`` and ``admin`` (default ``[inference]``, the safe choice for a key handed to a client;
``admin`` includes ``read``), ``models`` a list of globs (``fnmatch``: ``small-*``) the key's
inference requests may name (default: every model). ``name`` (default ``key-N``, N counted
from 1 over all entries) is what logs and activity records show instead of the key.

Also here: ``upstream.adminPaths`` / ``readPaths`` (the ``/upstream`` paths that need more
than the inference scope).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from swapd.config.model import ALL_SCOPES, ApiKey, KeyScope
from swapd.config.names import Names
from swapd.config.schema import RawApiKey, RawTop, suggest, validate
from swapd.config.tree import Path

if TYPE_CHECKING:
    from swapd.config.build import Builder

DEFAULT_SCOPES: frozenset[KeyScope] = frozenset({"inference"})
SCOPE_ORDER: tuple[KeyScope, ...] = ("inference", "read", "admin")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}\Z")


def build_keys(builder: Builder, top: RawTop) -> dict[str, Any]:
    """``keys`` (every entry) and ``api_keys`` (their values) for ``Config``."""
    keys = []
    values: dict[str, int] = {}  # key value -> entry index that had it first
    names: dict[str, int] = {}
    for i, entry in enumerate(top.api_keys):
        path: Path = ("apiKeys", i)
        key = _entry(builder, path, i, entry)
        if key is None:
            continue
        value, name, scopes, models = key
        if value in values:
            first = values[value]
            message = f"apiKeys[{i}]: the same key as apiKeys[{first}]"
            if isinstance(entry, dict) or isinstance(top.api_keys[first], dict):
                builder.error((*path, "key") if isinstance(entry, dict) else path, message)
            else:  # a repeated plain key changes nothing (llama-swap accepts it)
                builder.warn(path, f"{message} (ignored)")
            continue
        if name in names:
            builder.error(
                (*path, "name"),
                f"apiKeys[{i}]: name {name!r} is already used by apiKeys[{names[name]}]",
            )
            continue
        values[value] = i
        names[name] = i
        keys.append((value, name, scopes, models))
    built = tuple(ApiKey(v, n, s, m) for v, n, s, m in keys)
    return {"keys": built, "api_keys": tuple(k.key for k in built)}


def _entry(
    builder: Builder, path: Path, i: int, entry: Any
) -> tuple[str, str, frozenset[KeyScope], tuple[str, ...]] | None:
    default_name = f"key-{i + 1}"
    if isinstance(entry, int | float) and not isinstance(entry, bool):
        entry = str(entry)
    if isinstance(entry, str):
        return (entry, default_name, ALL_SCOPES, ()) if _value(builder, path, i, entry) else None
    if not isinstance(entry, dict):
        builder.error(
            path, f"apiKeys[{i}]: expected a key or a mapping {{key, name, scopes, models}}"
        )
        return None
    written = entry.get("key") is not None  # before validate drops a wrongly typed one
    raw = validate(RawApiKey, dict(entry), builder.root, path, builder.issues)
    if not written:
        builder.error(path, f"apiKeys[{i}]: key is required")
        return None
    if "key" not in raw.model_fields_set:  # not a string: validate reported it
        return None
    if not _value(builder, (*path, "key"), i, raw.key):
        return None
    name = raw.name or default_name
    if not NAME.match(name):
        builder.error(
            (*path, "name"),
            f"apiKeys[{i}]: invalid name {name!r} (letters, digits and . _ @ : + -, "
            "at most 64, starting with a letter or digit)",
        )
        return None
    scopes = _scopes(builder, path, i, raw)
    models = _models(builder, path, i, raw)
    if scopes is None or models is None:
        return None
    return raw.key, name, scopes, models


def _value(builder: Builder, path: Path, i: int, value: str) -> bool:
    if not value:
        builder.error(path, "empty api key found in apiKeys")
        return False
    if any(c.isspace() for c in value):
        builder.error(path, f"apiKeys[{i}]: api key cannot contain spaces")
        return False
    return True


def _scopes(builder: Builder, path: Path, i: int, raw: RawApiKey) -> frozenset[KeyScope] | None:
    if raw.scopes is None:
        return DEFAULT_SCOPES
    if not raw.scopes:
        builder.error((*path, "scopes"), f"apiKeys[{i}]: scopes is empty; a key needs a scope")
        return None
    scopes: set[KeyScope] = set()
    for j, scope in enumerate(raw.scopes):
        known = next((s for s in SCOPE_ORDER if s == scope.strip().lower()), None)
        if known is None:
            hint = suggest(scope, list(SCOPE_ORDER)) or f" (valid: {', '.join(SCOPE_ORDER)})"
            builder.error((*path, "scopes", j), f"apiKeys[{i}]: unknown scope {scope!r}{hint}")
            return None
        scopes.add(known)
    if "admin" in scopes:
        scopes.add("read")  # what an admin changes it may also see
    return frozenset(scopes)


def _models(builder: Builder, path: Path, i: int, raw: RawApiKey) -> tuple[str, ...] | None:
    if raw.models is None:
        return ()
    if not raw.models:
        builder.error(
            (*path, "models"),
            f"apiKeys[{i}]: models is empty; leave it out to allow every model",
        )
        return None
    for j, glob in enumerate(raw.models):
        if not glob.strip():
            builder.error((*path, "models", j), f"apiKeys[{i}]: empty model pattern")
            return None
    return tuple(dict.fromkeys(raw.models))


def scope_names(scopes: frozenset[KeyScope]) -> list[str]:
    """Scopes in their usual order (for answers and messages)."""
    return [s for s in SCOPE_ORDER if s in scopes]


def build_control_paths(builder: Builder, top: RawTop) -> dict[str, Any]:
    """``upstream.adminPaths`` and ``readPaths``: regexes, each compiled once to check it."""
    out: dict[str, Any] = {}
    for field, key, alias in (
        ("upstream_admin_paths", top.upstream.admin_paths, "adminPaths"),
        ("upstream_read_paths", top.upstream.read_paths, "readPaths"),
    ):
        if key is None:
            continue
        patterns: list[str] = []
        for j, pattern in enumerate(key):
            try:
                re.compile(pattern)
            except re.error as exc:
                builder.error(
                    ("upstream", alias, j),
                    f'upstream.{alias}: invalid regular expression "{pattern}": {exc}',
                )
            else:
                patterns.append(pattern)
        out[field] = tuple(patterns)
    return out


def warn_unmatched(builder: Builder, top: RawTop, names: Names, extra: Iterable[str]) -> None:
    """A key's model glob that matches no name a request could use (model id, alias, peer
    model, selector or profile pin: ``extra``) is probably a typo: a warning."""
    known = [*names.model_ids, *names.aliases, *names.peer_models, *names.bare, *extra]
    for i, entry in enumerate(top.api_keys):
        globs = entry.get("models") if isinstance(entry, dict) else None
        where: list[tuple[Path, Any]] = []
        if isinstance(globs, str):
            where = [(("apiKeys", i, "models"), globs)]
        elif isinstance(globs, list):
            where = [(("apiKeys", i, "models", j), glob) for j, glob in enumerate(globs)]
        for path, glob in where:
            if not isinstance(glob, str) or not glob.strip():
                continue
            if not any(fnmatchcase(name, glob) for name in known):
                builder.warn(path, f"apiKeys[{i}]: model pattern {glob!r} matches no model")
