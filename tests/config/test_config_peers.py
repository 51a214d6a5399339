"""``peers``: remote servers, their models' reserved names ``peer/model``, and the checks."""

from __future__ import annotations

from config_helpers import errors, load

from swapd.config.model import Filters, PeerConfig, Timeouts

M = "models:\n  m:\n    cmd: srv --port ${PORT}\n"


def test_a_peer_with_every_key() -> None:
    cfg = load(
        """
        macros: {host: "10.0.0.2"}
        peers:
          box:
            proxy: http://${host}:8080
            apiKey: ${env.KEY}
            models: [a, b/c, a]
            filters:
              stripParams: "top_k, model"
              setParams: {zdr: true, model: x}
              setParamsByID: {box/a: {temperature: 0.1}}
            timeouts: {connect: 5, keepalive: 1}
        models: {}
        """,
        {"KEY": "sk-1"},
    )
    assert cfg.peers == {
        "box": PeerConfig(
            id="box",
            proxy="http://10.0.0.2:8080",
            api_key="sk-1",
            models=("a", "b/c"),  # the duplicate is dropped
            filters=Filters(
                strip_params=("top_k",),
                set_params={"zdr": True},
                set_params_by_id={"box/a": {"temperature": 0.1}},
            ),
            timeouts=Timeouts(connect=5.0, response_header=60.0, idle_read=300.0),
        )
    }
    assert cfg.warnings == ()


def test_peer_response_header_timeout_defaults_to_sixty_seconds() -> None:
    cfg = load(M + "peers:\n  p: {proxy: 'https://api.x', models: [a]}\n")
    assert cfg.peers["p"].timeouts.response_header == 60.0
    assert cfg.peers["p"].api_key == ""
    assert cfg.models["m"].timeouts.response_header == 0.0


def test_peer_errors() -> None:
    assert errors(
        M + "peers:\n"
        "  a: {models: [x]}\n"
        "  b: {proxy: 'ftp://h', models: [x]}\n"
        "  c: {proxy: 'http://h'}\n"
        "  d: {proxy: 'http://h', models: []}\n"
        "  e: {proxy: 'http://h', models: [x, '']}\n"
        "  f: {proxy: 'http://h:99999', models: [x], timeouts: {connect: -1}}\n"
    ) == [
        "c.yaml:5:3: peer a: proxy is required",
        "c.yaml:6:14: peer b: invalid peer proxy URL 'ftp://h' "
        "(expected http://host[:port][/path] or https://…)",
        "c.yaml:7:3: peer c: peer models can not be empty",
        "c.yaml:8:26: peer d: peer models can not be empty",
        "c.yaml:9:38: peer e: empty model name",
        "c.yaml:10:14: peer f: invalid peer proxy URL 'http://h:99999' "
        "(expected http://host[:port][/path] or https://…)",
        "c.yaml:10:65: peer f: timeouts.connect must be >= 0 (0 = no timeout)",
    ]


def test_fully_qualified_peer_names_are_reserved() -> None:
    assert errors(
        """
        models:
          p/x:
            cmd: srv --port ${PORT}
          m:
            cmd: srv --port ${PORT}
            aliases: [p/y]
            filters:
              setParamsByID: {p/z: {a: 1}}
        peers:
          p: {proxy: 'http://h', models: [x, y, z, w, v]}
        selectors:
          p/w: {strategy: pin, targets: [m]}
        profiles:
          coding: {pins: {p/v: m}}
        """
    ) == [
        'c.yaml:3:3: model ID "p/x" conflicts with fully qualified peer model name',
        'c.yaml:7:15: model m alias "p/y" conflicts with fully qualified peer model name',
        'c.yaml:9:23: model m alias "p/z" conflicts with fully qualified peer model name',
        'c.yaml:13:3: selector ID "p/w" conflicts with fully qualified peer model name',
        'c.yaml:15:19: profile coding pin "p/v" conflicts with fully qualified peer model name',
    ]


def test_two_peers_producing_one_name_is_ambiguous() -> None:
    assert errors(
        M + "peers:\n  a: {proxy: 'http://h', models: [b/c]}\n"
        "  a/b: {proxy: 'http://h', models: [c]}\n"
    ) == [
        'c.yaml:6:37: peer model name "a/b/c" is ambiguous between peers.a model "b/c" '
        'and peers.a/b model "c"'
    ]


def test_a_bare_peer_model_offered_once_is_a_valid_target() -> None:
    cfg = load(
        M + "peers:\n  a: {proxy: 'http://h', models: [x, both]}\n"
        "  b: {proxy: 'http://h', models: [both]}\n"
        "selectors:\n  s: {strategy: pin, targets: [x, a/both, m]}\n"
    )
    assert cfg.selectors["s"].targets == ("x", "a/both", "m")
    assert [str(w) for w in load(M.replace("m:", "both:") + "selectors: {}\n").warnings] == []
    assert errors(
        M + "peers:\n  a: {proxy: 'http://h', models: [both]}\n"
        "  b: {proxy: 'http://h', models: [both]}\n"
        "selectors:\n  s: {strategy: pin, targets: [both]}\n"
    ) == ['c.yaml:8:32: selectors.s.targets[0] references unknown model "both"']
