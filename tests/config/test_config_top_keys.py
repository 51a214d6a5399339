"""Top-level keys: ``upstream``, ``captureBuffer``, ``logTimeFormat``, ``logRequests``, ``ui``,
``performance``, the router choice and the FIFO priorities."""

from __future__ import annotations

import pytest
from config_helpers import errors, load, warnings

from swapd.config import DEFAULT_GROUP, Config

M = "models:\n  m:\n    cmd: srv --port ${PORT}\n    aliases: [m1]\n  n:\n    cmd: srv ${PORT}\n"


def test_defaults() -> None:
    cfg = load(M)
    assert cfg.ignore_paths == Config().ignore_paths
    assert cfg.capture_bytes == 5 * 1024 * 1024
    assert (cfg.log_time_format, cfg.log_requests) == ("", False)
    assert (cfg.router, cfg.matrix, cfg.priorities) == ("group", None, {})


def test_every_llama_swap_top_key_is_read_without_a_warning() -> None:
    cfg = load(
        M + "upstream:\n  ignorePaths: ['^/ws$', '\\.png$']\n"
        "captureBuffer: 0\n"
        "logTimeFormat: RFC3339\n"
        "logRequests: true\n"
        "ui: {activity: {session_id: [X-Session]}}\n"
        "performance: {disabled: true, every: 1m30s}\n"
        "routing:\n  scheduler:\n    use: fifo\n    settings: {fifo: {priority: {m1: 5, n: -1}}}\n"
    )
    assert cfg.warnings == ()
    assert cfg.ignore_paths == ("^/ws$", r"\.png$")
    assert cfg.capture_bytes == 0
    assert cfg.log_time_format == "rfc3339"
    assert cfg.log_requests is True
    assert cfg.priorities == {"m": 5, "n": -1}  # an alias key counts for its model


def test_top_key_errors() -> None:
    assert errors(
        M + "upstream:\n  ignorePaths: ['ok', '(unclosed']\n"
        "captureBuffer: -1\n"
        "performance: {every: 2s}\n"
    ) == [
        'c.yaml:8:23: upstream.ignorePaths: invalid regular expression "(unclosed": '
        "missing ), unterminated subpattern at position 0",
        "c.yaml:9:16: captureBuffer must be >= 0 (MB; 0 = no captures)",
        "c.yaml:10:22: performance: every must be at least 5s, got 2s",
    ]
    assert errors(M + "performance: {every: soon}\n") == [
        "c.yaml:7:22: performance.every: invalid duration 'soon' (e.g. 5s, 1m30s)"
    ]


def test_an_unknown_log_time_format_logs_without_timestamps() -> None:
    cfg = load(M + "logTimeFormat: iso\n")
    assert cfg.log_time_format == ""
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:7:16: unknown logTimeFormat 'iso' (valid: ansic, unixdate, rubydate, rfc822, "
        "rfc822z, rfc850, rfc1123, rfc1123z, rfc3339, rfc3339nano, kitchen, stamp, stampmilli, "
        "stampmicro, stampnano); logging without timestamps"
    ]


def test_priorities_for_unknown_models_are_warnings() -> None:
    text = M + "routing:\n  scheduler:\n    settings: {fifo: {priority: {ghost: 1, m: 2}}}\n"
    assert load(text).priorities == {"m": 2}
    assert warnings(text) == [
        'c.yaml:9:34: routing.scheduler.settings.fifo.priority references unknown model "ghost" '
        "(ignored)"
    ]
    assert errors(
        M + "routing:\n  scheduler:\n    settings: {fifo: {priority: {m: 1, m1: 2}}}\n"
    ) == [
        "c.yaml:9:40: routing.scheduler.settings.fifo.priority: 'm1' and 'm' both set "
        "the priority of model m"
    ]


@pytest.mark.parametrize(
    "routing",
    [
        pytest.param(
            "routing:\n  router:\n    use: matrix\n    settings:\n      matrix:\n", id="new"
        ),
        pytest.param("", id="legacy"),
    ],
)
def test_the_matrix_router(routing: str) -> None:
    indent = "        " if routing else ""
    block = routing or "matrix:\n"
    text = M + block + f"{indent}  sets: {{both: 'm & n'}}\n{indent}  evict_costs: {{m: 3}}\n"
    cfg = load(text)
    assert cfg.router == "matrix"
    assert cfg.matrix is not None
    assert [s.alternatives for s in cfg.matrix.sets] == [(frozenset({"m", "n"}),)]
    assert cfg.matrix.cost("m") == 3
    assert cfg.groups[DEFAULT_GROUP].members == ("m", "n")
    assert {m.group for m in cfg.models.values()} == {DEFAULT_GROUP}


def test_router_errors() -> None:
    assert errors(M + "routing:\n  router: {use: matrix}\n") == [
        "c.yaml:8:17: routing.router.use is 'matrix' but routing.router.settings.matrix is not set"
    ]
    assert errors(M + "groups: {g: {members: [m]}}\nmatrix: {sets: {s: m}}\n") == [
        "c.yaml:8:1: config cannot use both 'groups' and 'matrix'"
    ]
    assert errors(M + "matrix: {sets: {s: m}}\nrouting:\n  router: {use: matrix}\n") == [
        "c.yaml:7:1: config uses both the legacy top-level 'matrix'/'groups' keys and the new "
        "'routing.router' block; please migrate the top-level keys into 'routing.router' and "
        "remove them"
    ]


def test_group_router_does_not_read_the_matrix_settings() -> None:
    cfg = load(
        M + "routing:\n  router:\n    use: group\n    settings:\n"
        "      matrix: {sets: {s: 'ghost & m'}}\n      groups: {g: {members: [m]}}\n"
    )
    assert (cfg.router, cfg.matrix) == ("group", None)
    assert cfg.groups["g"].members == ("m",)
