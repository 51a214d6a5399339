from __future__ import annotations

import pytest
from config_helpers import errors, load

from swapd.config import load_text


def test_substituted_before_parsing_even_in_flow_lists() -> None:
    cfg = load(
        """
        apiKeys: [${env.KEY}, "${env.KEY}-2"]
        models:
          m:
            cmd: srv --port ${PORT} --home ${env.HOME}
        """,
        {"KEY": "sk-1", "HOME": "/home/me"},
    )
    assert cfg.api_keys == ("sk-1", "sk-1-2")
    assert cfg.models["m"].cmd[-1] == "/home/me"


def test_unset_is_an_error_at_its_location() -> None:
    assert errors(
        """
        apiKeys:
          - ok
          - "${env.NOPE}"
        """
    ) == ["c.yaml:4:6: environment variable 'NOPE' is not set"]


def test_all_unset_variables_are_reported_and_parsing_stops() -> None:
    assert errors("apiKeys: [${env.A}, ${env.B}]\nmodels: [broken\n") == [
        "c.yaml:1:11: environment variable 'A' is not set",
        "c.yaml:1:21: environment variable 'B' is not set",
    ]


def test_comments_are_ignored() -> None:
    cfg = load(
        """
        # ${env.NOT_SET_ANYWHERE}
        logLevel: debug  # ${env.ALSO_NOT_SET}
        """
    )
    assert cfg.log_level == "debug"


def test_quoting_context() -> None:
    env = {"V": 'a"b\\c', "Q": "it's"}
    cfg = load(
        """
        apiKeys:
          - "${env.V}"
          - '${env.Q}'
          - ${env.Q}
        """,
        env,
    )
    assert cfg.api_keys == ('a"b\\c', "it's")  # the repeated key is dropped with a warning


def test_newline_in_value_is_rejected() -> None:
    assert errors("logLevel: ${env.X}\n", {"X": "a\nb"}) == [
        "c.yaml:1:11: environment variable 'X' contains a newline or NUL"
    ]


def test_columns_after_a_substitution_point_at_the_original_text() -> None:
    # ${env.LONG} becomes "x": the bad value after it is still reported where it was written
    assert errors(
        "models:\n  m: {cmd: '${env.LONG}', ttl: abc, proxy: 'http://h:1'}\n", {"LONG": "x"}
    ) == ["c.yaml:2:32: models.m.ttl: expected a number, got 'abc'"]


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPD_TEST_LEVEL", "warn")
    assert load_text("logLevel: ${env.SWAPD_TEST_LEVEL}\n").log_level == "warn"
