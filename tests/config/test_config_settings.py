"""Top-level and per-model keys: defaults, types, validation, unknown keys."""

from __future__ import annotations

import dataclasses

import pytest
from config_helpers import errors, load, warnings

from swapd.config import Config, ModelConfig, Timeouts
from swapd.config.options import PluginOptions, ProcessOptions

M = "models:\n  m:\n    cmd: srv --port ${PORT}\n"


def test_defaults() -> None:
    cfg = load(M)
    assert (cfg.health_check_timeout, cfg.log_level, cfg.log_to_stdout) == (120, "info", "proxy")
    assert (cfg.start_port, cfg.global_ttl, cfg.unload_timeout) == (5800, 0, 10)
    assert (cfg.api_keys, cfg.preload, cfg.max_body_bytes) == ((), (), 32 * 1024 * 1024)
    assert not cfg.send_loading_state and not cfg.include_aliases_in_list
    m = cfg.models["m"]
    assert m.proxy == "http://127.0.0.1:5800" and m.check_endpoint == "/health"
    assert (m.ttl, m.unload_timeout, m.health_check_timeout, m.concurrency_limit) == (
        0,
        10,
        120,
        10,
    )
    assert (m.driver, m.options, m.group, m.env, m.aliases) == (
        "process",
        ProcessOptions(),
        "(default)",
        {},
        (),
    )
    assert cfg.warnings == ()


def test_top_level_values() -> None:
    cfg = load(
        "healthCheckTimeout: 5\nlogLevel: ' WARN '\nlogToStdout: both\nstartPort: 6000\n"
        "globalTTL: 300\nunloadTimeout: 0\nsendLoadingState: true\nincludeAliasesInList: true\n"
        "apiKeys: [a, b]\n" + M
    )
    assert cfg.health_check_timeout == 5  # swapd: not raised to 15
    assert cfg.models["m"].health_check_timeout == 5
    assert (cfg.log_level, cfg.log_to_stdout, cfg.start_port) == ("warn", "both", 6000)
    assert (cfg.global_ttl, cfg.unload_timeout) == (300, 10)
    assert cfg.send_loading_state and cfg.include_aliases_in_list
    assert cfg.models["m"].send_loading_state is True
    assert cfg.models["m"].ttl == 300
    assert cfg.api_keys == ("a", "b")


def test_unknown_log_level_is_info_with_a_warning() -> None:
    assert warnings("logLevel: loud\n") == [
        "c.yaml:1:11: unknown logLevel 'loud' (valid: debug, info, warn, error); using info"
    ]


def test_top_level_errors_are_all_reported() -> None:
    assert errors(
        "healthCheckTimeout: 0\nlogToStdout: stderr\nstartPort: 0\nglobalTTL: -1\n"
        "unloadTimeout: -2\napiKeys: ['', 'a b', ok]\nmaxBodySize: lots\n"
    ) == [
        "c.yaml:1:21: healthCheckTimeout must be >= 1",
        "c.yaml:2:14: logToStdout must be one of: proxy, upstream, both, none",
        "c.yaml:3:12: startPort must be between 1 and 65535",
        "c.yaml:4:12: globalTTL must be >= 0",
        "c.yaml:5:16: unloadTimeout must be >= 0",
        "c.yaml:6:11: empty api key found in apiKeys",
        "c.yaml:6:15: apiKeys[1]: api key cannot contain spaces",
        "c.yaml:7:14: maxBodySize: expected a size in bytes like 33554432, 32MiB or 10MB, "
        "got 'lots'",
    ]


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1048576", 1048576),
        ("32MiB", 32 * 2**20),
        ("10MB", 10_000_000),
        ("512k", 512 * 1024),
        ("1.5GiB", int(1.5 * 2**30)),
        ("'2 mb'", 2_000_000),
        ("100b", 100),
    ],
)
def test_max_body_size(value: str, size: int) -> None:
    assert load(f"maxBodySize: {value}\n").max_body_bytes == size


def test_wrong_types_point_at_the_value() -> None:
    assert errors(
        """
        startPort: abc
        sendLoadingState: maybe
        models:
          m:
            cmd: srv --port ${PORT}
            ttl: abc
            unlisted: sure
            aliases: {a: 1}
            env: [A=1, [x]]
            concurrencyLimit: 1.5
            unloadTimeout: true
            filters: {setParams: [1]}
        groups:
          g: {swap: nah, members: [m]}
        """
    ) == [
        "c.yaml:2:12: startPort: expected an integer, got 'abc'",
        "c.yaml:3:19: sendLoadingState: expected true or false, got 'maybe'",
        "c.yaml:7:10: models.m.ttl: expected a number, got 'abc'",
        "c.yaml:8:15: models.m.unlisted: expected true or false, got 'sure'",
        "c.yaml:9:14: models.m.aliases: expected a list",
        "c.yaml:10:16: models.m.env.1: expected a string",
        "c.yaml:11:23: models.m.concurrencyLimit: expected a whole number, got 1.5",
        "c.yaml:12:20: models.m.unloadTimeout: expected a number, not true/false",
        "c.yaml:13:26: models.m.filters.setParams: expected a mapping (key: value)",
        "c.yaml:15:13: groups.g.swap: expected true or false, got 'nah'",
    ]


def test_model_settings() -> None:
    cfg = load(
        """
        globalTTL: 60
        unloadTimeout: 20
        sendLoadingState: true
        models:
          m:
            cmd: srv --port ${PORT}
            cmdStop: stop ${PID}
            proxy: https://example.com:8443/base
            env: ["A=1", "B=x=y", "A=2", "EMPTY="]
            checkEndpoint: " none "
            ttl: 0
            unloadTimeout: 5
            unlisted: true
            useModelName: org/model
            name: "  Pretty  "
            description: A model
            concurrencyLimit: 3
            sendLoadingState: false
            metadata: {a: [1, 2]}
            filters:
              strip_params: "top_k, model"
              stripParams: " temperature, top_p,temperature,, "
              setParams: {model: nope, temperature: 0.5, nested: {x: 1}}
          n:
            cmd: srv --port ${PORT}
            ttl: -1
            checkEndpoint: /ready
            concurrencyLimit: 0
        """
    )
    m, n = cfg.models["m"], cfg.models["n"]
    assert m.cmd_stop == ("stop", "${PID}") and m.proxy == "https://example.com:8443/base"
    assert m.env == {"A": "2", "B": "x=y", "EMPTY": ""}
    assert m.check_endpoint is None and n.check_endpoint == "/ready"
    assert (m.ttl, n.ttl, m.unload_timeout, n.unload_timeout) == (0, 60, 5, 20)
    assert m.unlisted and m.use_model_name == "org/model"
    assert (m.name, m.description) == ("Pretty", "A model")
    assert (m.concurrency_limit, n.concurrency_limit) == (3, 10)
    assert (m.send_loading_state, n.send_loading_state) == (False, True)
    assert m.metadata == {"a": [1, 2]}
    assert m.filters.strip_params == ("temperature", "top_k", "top_p")
    assert m.filters.set_params == {"temperature": 0.5, "nested": {"x": 1}}
    assert (m.port, n.port) == (5800, 5801)  # cmd uses ${PORT}, even with a fixed proxy


def test_model_errors() -> None:
    assert errors(
        """
        models:
          m:
            cmd: srv --port ${PORT}
            proxy: "ftp://host:1"
            env: ["NOEQUALS", "=x", "OK=1"]
            ttl: -5
            unloadTimeout: -1
          n:
            cmd: srv
            proxy: "http://host:99999"
        """
    ) == [
        "c.yaml:5:12: model m: invalid proxy URL 'ftp://host:1' (expected http://host:port or "
        "https://…)",
        "c.yaml:6:11: model m: env entry must be KEY=VALUE, got 'NOEQUALS'",
        "c.yaml:6:23: model m: env entry must be KEY=VALUE, got '=x'",
        "c.yaml:7:10: model m: invalid TTL value -5",
        "c.yaml:8:20: model m: unloadTimeout must be >= 0",
        "c.yaml:11:12: model n: invalid proxy URL 'http://host:99999' (expected http://host:port "
        "or https://…)",
    ]


def test_aliases() -> None:
    cfg = load(M + "    aliases: [a, b]\n  n:\n    cmd: srv ${PORT}\n    aliases: [c]\n")
    assert cfg.aliases == {"a": "m", "b": "m", "c": "n"}
    assert cfg.resolve("b") is cfg.models["m"]
    assert errors(
        M + "    aliases: [a, n, a]\n  n:\n    cmd: srv ${PORT}\n    aliases: [a, m]\n"
    ) == [
        "c.yaml:4:18: alias 'n' of model m is the id of a model",
        "c.yaml:4:21: duplicate alias a found in model: m (already used by model: m)",
        "c.yaml:7:15: duplicate alias a found in model: n (already used by model: m)",
        "c.yaml:7:18: alias 'm' of model n is the id of a model",
    ]


def test_preload_resolves_aliases_and_drops_unknown_names() -> None:
    cfg = load(
        M + "    aliases: [al]\n  n:\n    cmd: srv ${PORT}\n"
        "hooks:\n  on_startup:\n    preload: [n, al, ' ', ghost, m]\n"
    )
    assert cfg.preload == ("n", "m")
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:9:27: hooks.on_startup.preload: unknown model 'ghost' (ignored)"
    ]


def test_unknown_keys_are_warnings_with_a_suggestion() -> None:
    assert warnings(
        """
        colour: blue
        logLevl: debug
        routing:
          other: 1
        hooks:
          on_shutdown: []
        models:
          m:
            cmd: srv --port ${PORT}
            ttll: 5
            filters:
              dropParams: x
              setParamByID: {}
            capabilities: {tool: true}
            gpu: 0
        """
    ) == [
        "c.yaml:2:1: unknown key 'colour' (ignored)",
        "c.yaml:3:1: unknown key 'logLevl' (ignored); did you mean 'logLevel'?",
        "c.yaml:5:3: unknown key 'other' (ignored)",
        "c.yaml:7:3: unknown key 'on_shutdown' (ignored)",
        "c.yaml:11:5: unknown key 'ttll' (ignored); did you mean 'ttl'?",
        "c.yaml:13:7: unknown key 'dropParams' (ignored); did you mean 'stripParams'?",
        "c.yaml:14:7: unknown key 'setParamByID' (ignored); did you mean 'setParamsByID'?",
        "c.yaml:15:20: unknown key 'tool' (ignored); did you mean 'tools'?",
        "c.yaml:16:5: unknown key 'gpu' (ignored)",
    ]


def test_unknown_keys_in_swapd_blocks_are_errors_with_a_suggestion() -> None:
    assert errors("store: {pth: /x}\nlogs: {ringbytes: 4096}\n") == [
        "c.yaml:1:9: store.pth: unknown key; did you mean 'path'?",
        "c.yaml:2:8: logs.ringbytes: unknown key; did you mean 'ringBytes'?",
    ]


def test_routing_errors() -> None:
    assert errors("routing:\n  router: {use: magic}\n  scheduler: {use: lifo}\n") == [
        'c.yaml:2:17: routing.router.use: unknown router "magic" (valid: group, matrix)',
        'c.yaml:3:20: routing.scheduler.use: unknown scheduler "lifo" (valid: fifo)',
    ]


def test_driver_and_options() -> None:
    cfg = load(
        """
        models:
          m:
            driver: inproc
            inproc: {weights: /w, layers: [1, 2]}
          n:
            cmd: srv --port ${PORT}
            process: {}
        """
    )
    assert (cfg.models["m"].driver, cfg.models["m"].options) == (
        "inproc",
        PluginOptions("inproc", {"weights": "/w", "layers": [1, 2]}),
    )
    assert cfg.models["m"].options == {"weights": "/w", "layers": [1, 2]}  # a plain mapping
    assert cfg.models["m"].cmd == ()  # cmd is optional for drivers other than process
    assert cfg.models["n"].options == ProcessOptions()
    assert errors("models:\n  m:\n    driver: x\n    x: [1]\n") == [
        "c.yaml:4:8: models.m.x: the 'x' driver options must be a mapping"
    ]


def test_null_model_and_models_shape() -> None:
    assert errors("models:\n  m:\n") == ["c.yaml:2:3: model m: cmd is required"]
    assert errors("models: [a]\n") == [
        "c.yaml:1:9: models: expected a mapping of model id to settings"
    ]
    assert errors("models:\n  m: 1\n") == ["c.yaml:2:6: models.m: expected a mapping of settings"]


def test_every_issue_is_reported_at_once() -> None:
    found = errors(
        """
        logToStdout: x
        models:
          a:
            cmd: srv ${PORT} ${nope}
            ttl: x
          b:
            cmd: srv
        groups:
          g: {members: [zz]}
        """
    )
    assert len(found) == 3, found  # b's missing ${PORT} and g's zz are warnings


def test_timeouts_default_to_llama_swaps_with_an_idle_read_limit() -> None:
    assert load(M).models["m"].timeouts == Timeouts(
        connect=30.0, response_header=0.0, idle_read=300.0
    )


def test_timeouts_are_read_and_take_macros() -> None:
    cfg = load(
        """
        macros: {slow: 120}
        models:
          m:
            cmd: srv --port ${PORT}
            timeouts:
              connect: 5
              responseHeader: ${slow}
              idleRead: 0.5
        """
    )
    assert cfg.models["m"].timeouts == Timeouts(connect=5, response_header=120, idle_read=0.5)


def test_llama_swap_pool_timeouts_are_accepted_without_warnings() -> None:
    text = M + "    timeouts: {keepalive: 0, tlsHandshake: 10, expectContinue: 1, idleConn: 90}\n"
    cfg = load(text)
    assert cfg.warnings == ()
    assert cfg.models["m"].timeouts == Timeouts()


def test_timeouts_do_not_restart_a_running_engine() -> None:
    changed = load(M + "    timeouts: {connect: 1, idleRead: 9}\n").models["m"]
    assert changed.fingerprint() == load(M).models["m"].fingerprint()


def test_bad_timeouts_are_reported_where_they_are_written() -> None:
    assert errors(
        M + "    timeouts:\n      connect: -1\n      responseHeader: soon\n"
        "      idleRead: -0.5\n      total: 3\n"
    ) == [
        "c.yaml:5:16: model m: timeouts.connect must be >= 0 (0 = no timeout)",
        "c.yaml:6:23: models.m.timeouts.responseHeader: expected a number, got 'soon'",
        "c.yaml:7:17: model m: timeouts.idleRead must be >= 0 (0 = no timeout)",
    ]
    assert warnings(M + "    timeouts: {total: 3}\n") == [
        "c.yaml:4:16: unknown key 'total' (ignored)"
    ]
    assert errors(M + "    timeouts: 30\n") == [
        "c.yaml:4:15: models.m.timeouts: expected a mapping (key: value), got 30"
    ]


def test_the_dataclass_defaults_are_the_schemas() -> None:
    """A config that sets nothing loads exactly to the dataclass defaults: one home for both."""
    cfg = load(M)
    m = cfg.models["m"]
    bare = ModelConfig(id="m", cmd=m.cmd, proxy=m.proxy, port=m.port)
    assert m == bare
    assert dataclasses.replace(cfg, models={}, groups={}, sources=()) == Config()


def test_server_workers_is_a_small_count() -> None:
    assert load("models: {}\n").server.workers == 0
    assert load("server: {workers: 4}\nmodels: {}\n").server.workers == 4
    assert errors("server: {workers: -1}\nmodels: {}\n") == [
        "c.yaml:1:19: server.workers: Input should be greater than or equal to 0"
    ]
    assert errors("server:\n  workers: 65\nmodels: {}\n") == [
        "c.yaml:2:12: server.workers: Input should be less than or equal to 64"
    ]
