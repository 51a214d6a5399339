from __future__ import annotations

import pytest
from config_helpers import errors, load

from swapd.config import parse_command


def test_reference_example() -> None:
    text = (
        "python model1.py \\\n"
        "  -a \"double quotes\" --arg2 'single quotes'\n"
        "  # comment\n"
        "  --arg4 '\"string in string\"'"
    )
    assert parse_command(text) == (
        "python",
        "model1.py",
        "-a",
        "double quotes",
        "--arg2",
        "single quotes",
        "--arg4",
        '"string in string"',
    )


def test_continuation_and_newlines_are_whitespace() -> None:
    assert parse_command("a \\\nb\nc   \\   \n d") == ("a", "b", "c", "d")


def test_comment_lines_only_when_first_non_blank() -> None:
    assert parse_command("  # all\nsrv --x '#not-a-comment'\n#c") == (
        "srv",
        "--x",
        "#not-a-comment",
    )


def test_empty_and_unbalanced() -> None:
    assert parse_command("# only a comment\n  \n") == ()
    with pytest.raises(ValueError):
        parse_command("srv 'open")


def test_cmd_in_config_uses_parse_command() -> None:
    cfg = load(
        """
        models:
          m:
            proxy: http://127.0.0.1:9000
            cmd: |
              srv --a "b c" \\
                --d
              # --commented ${UNDEFINED}
        """
    )
    assert cfg.models["m"].cmd == ("srv", "--a", "b c", "--d")


def test_cmd_errors() -> None:
    assert errors(
        """
        models:
          a:
            proxy: http://127.0.0.1:1
          b:
            proxy: http://127.0.0.1:2
            cmd: "# nothing"
          c:
            proxy: http://127.0.0.1:3
            cmd: srv 'open
        """
    ) == [
        "c.yaml:3:3: model a: cmd is required",
        "c.yaml:7:10: model b: cmd is empty",
        "c.yaml:10:10: model c: cannot parse cmd: No closing quotation",
    ]


def test_cmd_stop_keeps_pid_literal() -> None:
    cfg = load(
        """
        models:
          m:
            cmd: srv --port ${PORT}
            cmdStop: |
              # stop it ${IGNORED}
              kill -TERM ${PID} --port ${PORT}
        """
    )
    assert cfg.models["m"].cmd_stop == ("kill", "-TERM", "${PID}", "--port", "5800")
