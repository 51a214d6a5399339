from __future__ import annotations

from config_helpers import errors, load


def test_global_and_model_macros_with_in_place_override() -> None:
    cfg = load(
        """
        macros:
          server: /opt/llama-server
          ctx: 4096
          args: "--ctx-size ${ctx}"
        models:
          m:
            macros:
              ctx: 16384
              temp: 0.7
            cmd: ${server} --port ${PORT} ${args} --temp ${temp} --id ${MODEL_ID}
          n:
            cmd: ${server} --port ${PORT} ${args}
        """
    )
    assert cfg.models["m"].cmd == (
        "/opt/llama-server",
        "--port",
        "5800",
        "--ctx-size",
        "16384",
        "--temp",
        "0.7",
        "--id",
        "m",
    )
    assert cfg.models["n"].cmd[-1] == "4096"  # model macros do not leak


def test_forward_reference_fails() -> None:
    assert errors(
        """
        macros:
          first: "a ${second}"
          second: b
        models:
          m:
            cmd: srv --port ${PORT} ${first}
        """
    ) == [
        "c.yaml:7:10: unknown macro '${second}' in models.m.cmd (from a macro value: a macro "
        "can only use macros declared before it)"
    ]


def test_macro_declaration_rules() -> None:
    assert errors(
        """
        macros:
          PORT: 1
          "bad name": 1
          list: [1, 2]
          self: "x ${self}"
          empty:
          %s: 1
        models:
          m:
            macros:
              MODEL_ID: x
            cmd: srv ${PORT}
        """
        % ("x" * 64)
    ) == [
        "c.yaml:3:3: macro name 'PORT' is reserved",
        "c.yaml:4:3: macro name 'bad name' must match ^[a-zA-Z0-9_-]+$",
        "c.yaml:5:9: macro 'list' must be a string, number or bool",
        "c.yaml:6:9: macro 'self' contains self-reference",
        "c.yaml:7:3: macro 'empty' must be a string, number or bool",
        f"c.yaml:8:3: macro name '{'x' * 64}' must be less than 64 characters",
        "c.yaml:12:7: model m: macro name 'MODEL_ID' is reserved",
    ]


def test_typed_values_metadata_and_map_keys() -> None:
    cfg = load(
        """
        macros:
          t: 0.7
          on: true
          n: 5
        models:
          m:
            cmd: srv --port ${PORT}
            ttl: ${n}
            sendLoadingState: "${on}"
            metadata:
              port: ${PORT}
              temperature: ${t}
              note: "${MODEL_ID} on ${PORT} t=${t} on=${on}"
              ${n}: key stays literal
              nested: {list: [1, "${n}", {deep: "${on}"}]}
        """
    )
    m = cfg.models["m"]
    assert m.ttl == 5
    assert m.send_loading_state is True
    assert m.metadata == {
        "port": 5800,
        "temperature": 0.7,
        "note": "m on 5800 t=0.7 on=true",
        "${n}": "key stays literal",
        "nested": {"list": [1, 5, {"deep": True}]},
    }


def test_global_macros_apply_to_top_level_values() -> None:
    cfg = load(
        """
        macros:
          port: 7000
          key: sk-abc
          ttl: 30
        startPort: ${port}
        globalTTL: ${ttl}
        apiKeys: ["${key}", "${key}-2"]
        models:
          m:
            cmd: srv --port ${PORT}
        """
    )
    assert cfg.start_port == 7000
    assert cfg.global_ttl == 30
    assert cfg.api_keys == ("sk-abc", "sk-abc-2")
    assert cfg.models["m"].port == 7000
    assert cfg.models["m"].ttl == 30


def test_model_id_is_not_a_global_macro() -> None:
    assert errors("apiKeys: ['${MODEL_ID}']\n") == [
        "c.yaml:1:12: unknown macro '${MODEL_ID}' in apiKeys.0"
    ]


def test_port_allocation_sorted_and_only_when_cmd_uses_it() -> None:
    cfg = load(
        """
        startPort: 9000
        macros:
          auto: "--port ${PORT}"
        models:
          zeta:
            cmd: srv ${auto}
          alpha:
            cmd: srv --port ${PORT}
            checkEndpoint: /health?port=${PORT}
            aliases: ["alpha-${PORT}"]
          fixed:
            cmd: srv --port 1234
            proxy: http://127.0.0.1:1234
        """
    )
    assert cfg.models["alpha"].port == 9000
    assert cfg.models["alpha"].proxy == "http://127.0.0.1:9000"
    assert cfg.models["alpha"].check_endpoint == "/health?port=9000"
    assert cfg.aliases == {"alpha-9000": "alpha"}
    assert cfg.models["zeta"].port == 9001
    assert cfg.models["zeta"].cmd == ("srv", "--port", "9001")
    assert cfg.models["fixed"].port is None


def test_a_written_proxy_with_port_needs_port_in_cmd() -> None:
    assert errors(
        """
        models:
          a:
            cmd: srv --port 1
            proxy: http://127.0.0.1:${PORT}
          b:
            cmd: srv --port 2
        """
    ) == [
        "c.yaml:5:12: model a: proxy uses ${PORT} but cmd does not - ${PORT} is only "
        "available when used in cmd",
    ]


def test_no_proxy_and_no_port_in_cmd_gets_a_port_and_a_warning() -> None:
    cfg = load(
        """
        models:
          b:
            cmd: srv --listen-port=9001
          c:
            cmd: srv -m x.gguf
          d:
            cmd: srv --port ${PORT}
        """
    )
    assert {m.id: (m.port, m.proxy) for m in cfg.models.values()} == {
        "b": (5800, "http://127.0.0.1:5800"),
        "c": (5801, "http://127.0.0.1:5801"),
        "d": (5802, "http://127.0.0.1:5802"),
    }
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:3:3: model b: no proxy is set and cmd does not use ${PORT}, so requests go to "
        "http://127.0.0.1:5800, where the engine will not be found; "
        "set proxy: http://127.0.0.1:9001 (cmd has --listen-port 9001)",
        "c.yaml:5:3: model c: no proxy is set and cmd does not use ${PORT}, so requests go to "
        "http://127.0.0.1:5801, where the engine will not be found; "
        "use ${PORT} in cmd or set proxy",
    ]


def test_pid_only_in_cmd_stop() -> None:
    assert errors(
        """
        models:
          m:
            cmd: srv --port ${PORT} --parent ${PID}
            cmdStop: kill ${PID}
            name: "${PID}"
        """
    ) == [
        "c.yaml:4:38: unknown macro '${PID}' in models.m.cmd",
        "c.yaml:6:12: unknown macro '${PID}' in models.m.name",
    ]


def test_unknown_macro_points_into_block_scalars() -> None:
    assert errors(
        """
        models:
          m:
            cmd: |
              srv --port ${PORT}
              # ${in_a_comment} is fine
              --model ${MODELS}/q.gguf
            metadata:
              a: {b: ["${nested}"]}
        """
    ) == [
        "c.yaml:7:15: unknown macro '${MODELS}' in models.m.cmd",
        "c.yaml:9:16: unknown macro '${nested}' in models.m.metadata.a.b.0",
    ]


def test_one_bad_value_gives_one_error() -> None:
    assert errors("models:\n  m:\n    cmd: srv ${PORT}\n    ttl: ${T}\n") == [
        "c.yaml:4:10: unknown macro '${T}' in models.m.ttl"
    ]


def test_driver_options_can_use_port() -> None:
    cfg = load(
        """
        models:
          m:
            driver: inproc
            inproc:
              port: ${PORT}
              name: ${MODEL_ID}
          n:
            driver: remote
            remote: {url: "http://x"}
        """
    )
    assert cfg.models["m"].options == {"port": 5800, "name": "m"}
    assert cfg.models["m"].proxy == "http://127.0.0.1:5800"
    assert cfg.models["n"].proxy == "" and cfg.models["n"].port is None
