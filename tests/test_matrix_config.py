"""The matrix block through the loader: errors as file:line:col, a good block fully built."""

from __future__ import annotations

import pytest

from swapd.config import load_text
from swapd.errors import ConfigError

MODELS = """
models:
  llm:
    cmd: x --port ${PORT}
    aliases: [chat]
  emb:
    cmd: x --port ${PORT}
  tts:
    cmd: x --port ${PORT}
"""


def test_every_matrix_mistake_is_reported_at_its_line() -> None:
    text = (
        MODELS
        + """
routing:
  router:
    use: matrix
    settings:
      matrix:
        vars:
          l: llm
          bad_key: emb
        evict_costs:
          l: 0
          ghost: 2
        sets:
          s1: "l & (emb | chat)"
          s2: "+s3"
          s3: "+s2 & emb"
          s4: "emb &"
          s5: "tts & +nowhere"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_text(text)
    assert str(caught.value).splitlines() == [
        'config.yaml:18:20: var key "bad_key" must be 1-32 letters, digits, "-" or "." (no "_")',
        'config.yaml:20:14: evict_cost for "l" must be a positive integer, got 0',
        'config.yaml:21:18: evict_costs: unknown var or model "ghost"',
        'config.yaml:23:15: set "s1": unknown var or model "chat" '
        '(it is an alias of "llm": use the model id or a var)',
        "config.yaml:24:15: circular reference between sets: s2 -> s3 -> s2",
        'config.yaml:26:15: set "s4": expected a model, a var, "+set" or "(" at the end',
        'config.yaml:27:15: set "s5" references undefined set "nowhere"',
    ]


def test_a_matrix_without_sets_is_an_error() -> None:
    text = MODELS + "matrix:\n  vars: {l: llm}\n"
    with pytest.raises(ConfigError, match="matrix must define at least one set"):
        load_text(text)


def test_the_legacy_top_level_matrix_builds_the_matrix_router() -> None:
    text = (
        MODELS
        + """
matrix:
  vars: {l: llm}
  evict_costs: {l: 3}
  sets:
    speech: "tts & emb"
    chat: "l & (emb | +speech)"
"""
    )
    config = load_text(text)
    assert config.router == "matrix"
    assert config.matrix is not None
    assert [s.name for s in config.matrix.sets] == ["speech", "chat"]
    assert config.matrix.sets[1].alternatives == (frozenset({"llm", "emb", "tts"}),)
    assert dict(config.matrix.evict_costs) == {"llm": 3}
    assert dict(config.matrix.vars) == {"l": "llm"}
