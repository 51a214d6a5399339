"""Helpers shared by the config tests."""

from __future__ import annotations

from textwrap import dedent

import pytest

from swapd.config import Config, load_text
from swapd.errors import ConfigError


def load(text: str, env: dict[str, str] | None = None, *, previous: Config | None = None) -> Config:
    return load_text(dedent(text), "c.yaml", env=env or {}, previous=previous)


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return [str(i) for i in info.value.issues]


def warnings(text: str, env: dict[str, str] | None = None) -> list[str]:
    return [str(w) for w in load(text, env).warnings]
