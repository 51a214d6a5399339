"""The config loader never crashes: random mutations of real configs load or fail cleanly.

The seeds are llama-swap's example configs (tests/config/data) and swapd's demo config. Each
example is mutated in the text (lines deleted, duplicated, swapped; random YAML fragments,
unicode, deep nesting spliced in) or in the tree (keys deleted, duplicated, retyped; random
scalars) and loaded as ``swapd serve`` loads it. The only acceptable outcomes are a ``Config``
or a ``ConfigError`` whose every issue points at ``file:line:col``; any other exception is a bug.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from swapd.config import load_text
from swapd.config.demo import demo_text
from swapd.errors import ConfigError
from swapd.extensions import standard

pytestmark = pytest.mark.fuzz

DATA = Path(__file__).parent.parent / "config" / "data"
SEEDS = {p.name: p.read_text(encoding="utf-8") for p in sorted(DATA.glob("*.yaml"))}
SEEDS["demo.yaml"] = demo_text()
NAMES = sorted(SEEDS)
ENV = {"HOME": "/home/u", "API_KEY_1": "k1", "API_KEY_2": "k2", "OPENROUTER_API_KEY": "sk-or"}
FILE = "fuzz.yaml"
SETTINGS = settings(
    max_examples=int(os.environ.get("SWAPD_FUZZ_EXAMPLES", "300")),
    # The same examples every run, so a CI failure reproduces locally; SWAPD_FUZZ_RANDOM=1
    # explores new ones (with SWAPD_FUZZ_EXAMPLES=5000, say).
    derandomize=not os.environ.get("SWAPD_FUZZ_RANDOM"),
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Keys and values that mean something to the loader, so mutations reach past the schema.
KEYS = [
    "models", "cmd", "proxy", "ttl", "aliases", "groups", "members", "swap", "exclusive",
    "macros", "env", "apiKeys", "startPort", "healthCheckTimeout", "logLevel", "preload",
    "hooks", "on_startup", "filters", "stripParams", "setParams", "useModelName", "driver",
    "docker", "image", "recipe", "peers", "matrix", "vars", "sets", "profiles", "selectors",
    "checkEndpoint", "concurrencyLimit", "maxBodySize", "server", "allowedHosts", "scopes",
    "key", "name", "unlisted", "name", "description", "metadata", "sendLoadingState", "cmdStop",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "${PORT}", "${MODEL_ID}", "${env.HOME}", "${env.NOPE}", "${", "${}", "${a${b}}",
            "${PORT}${PORT}", "http://", "http://127.0.0.1:${PORT}", "1h", "-5s", "1e400",
            "32MiB", "0x10", ".inf", "~", "[", "{", "*", "&a", "!!python/object:os.system",
            "inference", "admin", "read", "*glob*", "", " ", "\x00", "\ufeff",
            "\U0001d518\U0001d52b", "\ufdfa",
        ]
    ),
)  # fmt: skip
FRAGMENTS = st.sampled_from(
    [
        "models:", "models: []", "models: {a: {cmd: x}}", "  a:\n    cmd: ${PORT}", "- a",
        "? [a, b]\n: c", "&anchor x: *anchor", "<<: *nope", "a: !!binary zz", "a: !!float x",
        "a: !custom 1", "%YAML 1.1", "---", "...", "a: |\n  b\n c", "a: >-", "'", '"\\u', "\t",
        "a: b: c", "[a, {b: [c, {d", "{a: 1, a: 2}", "a:\n  - b\n  c: d", "\x85", "\u2028",
        "apiKeys: [{key: k, scopes: [nope]}]", "server: {allowedHosts: 5}", "macros: {a: ${a}}",
        "groups: {g: {members: [missing]}}", "peers: {p: {proxy: ftp://x, models: [a]}}",
        "matrix: {vars: {a: m}, sets: {s: 'a & (b'}}", "profiles: {p: [a]}",
    ]
)  # fmt: skip


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def _tree(text: str) -> Any:
    return _yaml().load(text)


def _dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


TREES = {name: _tree(text) for name, text in SEEDS.items()}


def nested(depth: int, leaf: str) -> str:
    """``depth`` levels of flow lists and maps around ``leaf``."""
    opening = "".join("[" if i % 2 else "{a: " for i in range(depth))
    closing = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    return opening + leaf + closing


@st.composite
def values(draw: st.DrawFn, depth: int = 0) -> Any:
    if depth >= 3:
        return draw(SCALARS)
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.lists(values(depth + 1), max_size=3))
    if kind == 1:
        keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
        return draw(st.dictionaries(keys, values(depth + 1), max_size=3))
    return draw(SCALARS)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node in a plain YAML tree."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def tree_mutation(draw: st.DrawFn, name: str) -> str:
    """The seed's tree with a few nodes deleted, duplicated, retyped or replaced."""
    data = _tree(SEEDS[name])  # a fresh copy to mutate
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["delete", "duplicate", "retype", "deep"]))
        if action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent[key]
        elif action == "duplicate":
            parent.append(parent[key])
        elif action == "retype":
            parent[key] = draw(values())
        else:
            deep: Any = draw(SCALARS)
            for _ in range(draw(st.integers(10, 60))):
                deep = {"a": deep} if len(str(deep)) % 2 else [deep]
            parent[key] = deep
    return _dump(data)


@st.composite
def text_mutation(draw: st.DrawFn, name: str) -> str:
    """The seed's text with lines deleted, duplicated, indented or replaced by fragments."""
    lines = SEEDS[name].splitlines()
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        action = draw(st.sampled_from(["delete", "duplicate", "indent", "insert", "splice"]))
        if not lines:
            lines.append("")
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "indent":
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        elif action == "insert":
            indent = " " * draw(st.sampled_from([0, 2, 4, 6]))
            fragment = draw(st.one_of(FRAGMENTS, st.text(max_size=40)))
            if draw(st.booleans()):
                fragment = (
                    f"{draw(st.sampled_from(KEYS))}: {nested(draw(st.integers(1, 200)), 'x')}"
                )
            lines.insert(i, indent + fragment)
        else:
            line = lines[i]
            start = draw(st.integers(0, len(line)))
            end = draw(st.integers(start, len(line)))
            lines[i] = line[:start] + draw(st.text(max_size=12)) + line[end:]
    return "\n".join(lines) + "\n"


def mutated() -> st.SearchStrategy[str]:
    return st.sampled_from(NAMES).flatmap(
        lambda name: st.one_of(text_mutation(name), tree_mutation(name))
    )


def loads_or_fails_cleanly(text: str) -> None:
    """Load ``text`` as ``swapd serve`` would; only a positioned ``ConfigError`` may come out."""
    try:
        load_text(text, FILE, env=ENV, extensions=standard())
    except ConfigError as exc:
        assert exc.issues, "a ConfigError with no issues"
        for issue in exc.issues:
            assert issue.file == FILE, str(issue)
            assert issue.line >= 1 and issue.col >= 1, str(issue)
            assert issue.message.strip(), str(issue)


def test_the_seeds_load() -> None:
    for name in NAMES:
        load_text(SEEDS[name], name, env=ENV, extensions=standard())


@pytest.mark.parametrize("depth", [1000, 5000])
def test_yaml_nested_too_deeply_is_a_positioned_config_error(depth: int) -> None:
    text = f"models:\n  a:\n    cmd: x\n    metadata: {nested(depth, 'x')}\n"
    with pytest.raises(ConfigError) as caught:
        load_text(text, FILE, env=ENV, extensions=standard())
    (issue,) = caught.value.issues
    assert (issue.line, issue.message) == (4, "YAML nested too deeply")
    assert issue.col > 15


def test_moderately_nested_yaml_loads() -> None:
    text = f"models:\n  a:\n    cmd: x\n    metadata: {nested(60, 'x')}\n"
    assert load_text(text, FILE, env=ENV, extensions=standard()).models["a"].metadata


@given(mutated())
@SETTINGS
def test_mutated_configs_load_or_fail_with_positions(text: str) -> None:
    loads_or_fails_cleanly(text)


@given(st.text(max_size=300))
@SETTINGS
def test_random_text_loads_or_fails_with_positions(text: str) -> None:
    loads_or_fails_cleanly(text)


@given(st.sampled_from(NAMES), st.data())
@SETTINGS
def test_random_values_at_random_places_load_or_fail_with_positions(
    name: str, data: st.DataObject
) -> None:
    tree = _tree(SEEDS[name])
    models = tree.get("models") if isinstance(tree, dict) else None
    if isinstance(models, dict) and models:
        model = data.draw(st.sampled_from(sorted(models)))
        if isinstance(models[model], dict):
            models[model][data.draw(st.sampled_from(KEYS))] = data.draw(values())
    tree[data.draw(st.sampled_from(KEYS))] = data.draw(values())
    loads_or_fails_cleanly(_dump(tree))
