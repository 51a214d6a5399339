"""Files, --config-dir merging, YAML syntax and top-level shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import errors, load

from swapd.config import Config, load_config
from swapd.config.loader import EMPTY_ON_RELOAD
from swapd.errors import ConfigError

MODEL_A = "models:\n  a:\n    cmd: srv --port ${PORT}\n"
MODEL_B = "models:\n  b:\n    cmd: srv --port ${PORT}\n"


def issues(path: Path | None, folder: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, folder, env={})
    return [str(i) for i in info.value.issues]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_file_then_sorted_dir_files(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "apiKeys: [k1]\nmacros:\n  x: 1\n" + MODEL_A)
    conf = tmp_path / "conf.d"
    write(conf, "20-b.yml", "apiKeys: [k3]\nmacros:\n  y: 2\n" + MODEL_B)
    write(conf, "10-c.yaml", "apiKeys: [k2]\nmodels:\n  c:\n    cmd: srv ${PORT} ${x}${y}\n")
    write(conf, "notes.txt", "not: yaml: at all: [")
    write(conf, "empty.yaml", "# nothing here\n")
    cfg = load_config(main, conf, env={})
    assert cfg.api_keys == ("k1", "k2", "k3")  # lists concatenate in source order
    assert cfg.models["c"].cmd == ("srv", "5802", "12")  # macros merge by key
    assert [m.port for m in cfg.models.values()] == [5800, 5801, 5802]
    assert cfg.sources == (
        str(main),
        str(conf / "10-c.yaml"),
        str(conf / "20-b.yml"),
        str(conf / "empty.yaml"),
    )


def test_dir_only_and_nested_routing_groups_merge(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        MODEL_A + "routing:\n  router:\n    settings:\n      groups:\n        g1: {members: [a]}\n",
    )
    write(
        tmp_path,
        "b.yaml",
        MODEL_B + "routing:\n  router:\n    settings:\n      groups:\n        g2: {members: [b]}\n",
    )
    cfg = load_config(None, tmp_path, env={})
    assert [g.members for g in cfg.groups.values()] == [("a",), ("b",), ()]


def test_duplicate_identity_keys_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MODEL_A + "groups:\n  g: {members: [a]}\n")
    write(tmp_path, "b.yaml", MODEL_A + "groups:\n  g: {members: [a]}\n")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert issues(None, tmp_path) == [
        f'{b}:2:3: duplicate models "a" found in {b} and {a}',
        f'{b}:5:3: duplicate groups "g" found in {b} and {a}',
    ]


def test_scalars_must_agree(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "logLevel: info\nstartPort: 7000\nglobalTTL: 5\n")
    write(tmp_path, "b.yaml", "logLevel: info\nstartPort: 7001\nglobalTTL: '5'\nunloadTimeout:\n")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert issues(None, tmp_path) == [
        f"{b}:2:12: conflicting values for 'startPort': 7001 here, 7000 in {a}:2",
        f"{b}:3:12: conflicting values for 'globalTTL': '5' here, 5 in {a}:3",
    ]


def test_null_yields_and_kind_mismatch(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "apiKeys:\nhooks: {on_startup: {preload: [a]}}\n" + MODEL_A)
    write(tmp_path, "b.yaml", "apiKeys: [k]\nhooks:\n")
    assert load_config(None, tmp_path, env={}).api_keys == ("k",)
    write(tmp_path, "c.yaml", "apiKeys: k\n")
    assert issues(None, tmp_path) == [
        f"{tmp_path / 'c.yaml'}:1:10: cannot merge 'apiKeys': a scalar here, a list in "
        f"{tmp_path / 'b.yaml'}:1"
    ]


def test_config_file_inside_config_dir(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", MODEL_A)
    assert issues(main, tmp_path) == [
        f"{main}:1:1: config file is also inside the config dir {str(tmp_path)!r}"
    ]


def test_missing_sources(tmp_path: Path) -> None:
    assert issues(tmp_path / "nope.yaml", None) == [
        f"{tmp_path / 'nope.yaml'}:1:1: cannot read config file: No such file or directory"
    ]
    assert issues(None, None) == [
        "(none):1:1: no configuration given: pass a config file, a config dir, or both"
    ]


def test_empty_sources_are_zero_models(tmp_path: Path) -> None:
    cfg = load("")
    assert dict(cfg.models) == {}
    assert list(cfg.groups) == ["(default)"]
    assert load_config(None, tmp_path, env={}).models == {}
    assert load("# just a comment\n").models == {}
    assert load("models:\n").models == {}


def test_top_level_must_be_a_mapping() -> None:
    assert errors("- a\n- b\n") == [
        "c.yaml:1:1: the top level of a config file must be a mapping (key: value)"
    ]


def test_yaml_syntax_errors() -> None:
    assert errors("models:\n  a:\n    cmd: 'open\n") == [
        "c.yaml:4:1: found unexpected end of stream (while scanning a quoted scalar at line 3, "
        "column 10)"
    ]
    assert errors("logLevel: info\nlogLevel: debug\n") == [
        'c.yaml:2:1: duplicate key "logLevel" (while constructing a mapping at line 1, column 1)'
    ]


def test_flow_sequence_macro_hint() -> None:
    [message] = errors("models:\n  a:\n    cmd: [srv, ${MODELS}/q.gguf]\n")
    assert message.startswith("c.yaml:3:16: expected ',' or ']', but got '{'")
    assert "must be quoted" in message


def test_each_file_reports_its_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "a: [\n")
    write(tmp_path, "b.yaml", "b: 'x\n")
    found = issues(None, tmp_path)
    assert [f.split(":")[0] for f in found] == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]


def test_anchors_are_expanded_per_model() -> None:
    cfg = load(
        """
        models:
          a: &base
            cmd: srv --port ${PORT} --name ${MODEL_ID}
          b: *base
          c:
            <<: *base
            ttl: 5
        """
    )
    assert cfg.models["b"].cmd == ("srv", "--port", "5801", "--name", "b")
    assert cfg.models["c"].cmd == ("srv", "--port", "5802", "--name", "c")
    assert cfg.models["c"].ttl == 5


def test_an_empty_file_loads_at_startup_but_a_reload_rejects_it(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "")
    assert load_config(main, env={}).models == {}  # starting with no models is allowed
    running = load_config(write(tmp_path, "main.yaml", MODEL_A), env={})
    write(tmp_path, "main.yaml", " \n")  # what a reload may read while an editor saves
    assert issues_on_reload(running, main) == [f"{main}:1:1: {EMPTY_ON_RELOAD}"]
    write(tmp_path, "main.yaml", "models: {}\n")  # no models, on purpose
    assert load_config(main, env={}, previous=running).models == {}


def test_a_file_that_was_empty_may_stay_empty_on_a_reload(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MODEL_A)
    write(tmp_path, "placeholder.yaml", "")  # kept empty on purpose in a config dir
    running = load_config(None, tmp_path, env={})
    assert list(load_config(None, tmp_path, env={}, previous=running).models) == ["a"]
    write(tmp_path, "a.yaml", "")  # this one turned empty: half-saved
    assert issues_on_reload(running, None, tmp_path) == [
        f"{tmp_path / 'a.yaml'}:1:1: {EMPTY_ON_RELOAD}"
    ]


def issues_on_reload(running: Config, path: Path | None, folder: Path | None = None) -> list[str]:
    """What a reload of ``path`` (or of the config folder) reports, as ``file:line:col: …``."""
    with pytest.raises(ConfigError) as info:
        load_config(path, folder, env={}, previous=running)
    return [str(i) for i in info.value.issues]
