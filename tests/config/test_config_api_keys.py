"""``apiKeys``: plain strings (full access) and mappings with a name, scopes and model globs."""

from __future__ import annotations

from textwrap import dedent

from config_helpers import errors, load

from swapd.config.model import ALL_SCOPES, UPSTREAM_ADMIN_PATHS, ApiKey

M = "models:\n  small-a:\n    cmd: srv ${PORT}\n"


def test_plain_string_keys_have_every_scope_and_model_and_default_names() -> None:
    cfg = load("apiKeys: [k1, k2]\n" + M)
    assert cfg.keys == (ApiKey("k1", "key-1", ALL_SCOPES), ApiKey("k2", "key-2", ALL_SCOPES))
    assert cfg.api_keys == ("k1", "k2")


def test_a_mapping_without_scopes_is_an_inference_key_for_every_model() -> None:
    cfg = load("apiKeys:\n  - k0\n  - {key: sk-app}\n" + M)
    assert cfg.keys[1] == ApiKey("sk-app", "key-2", frozenset({"inference"}), ())
    assert cfg.api_keys == ("k0", "sk-app")


def test_a_mapping_keeps_name_scopes_and_globs_and_admin_includes_read() -> None:
    cfg = load(
        dedent(
            """\
        apiKeys:
          - key: sk-ops
            name: ops
            scopes: [admin]
          - key: sk-app
            name: app
            scopes: [inference, read]
            models: ["small-*", "tiny"]
          - {key: sk-dash, name: dash, scopes: read}
            """
        )
        + M
    )
    assert [(k.name, sorted(k.scopes), k.models) for k in cfg.keys] == [
        ("ops", ["admin", "read"], ()),
        ("app", ["inference", "read"], ("small-*", "tiny")),
        ("dash", ["read"], ()),
    ]


def test_env_macros_fill_key_values_in_mappings() -> None:
    cfg = load(
        "apiKeys:\n  - {key: '${env.APP_KEY}', name: app}\n" + M, env={"APP_KEY": "sk-from-env"}
    )
    assert cfg.keys[0].key == "sk-from-env" and cfg.api_keys == ("sk-from-env",)


def test_bad_key_entries_are_errors_at_their_position() -> None:
    assert errors(
        dedent(
            """\
        apiKeys:
          - ok
          - {name: nokey}
          - {key: "a b"}
          - {key: ""}
          - {key: k5, scopes: [inference, admn]}
          - {key: k6, scope: [read]}
          - {key: ok}
          - {key: k8, name: dup}
          - {key: k9, name: dup}
          - {key: k10, models: []}
          - {key: k11, name: "has space"}
          - [nested]
          - {key: k13, scopes: []}
            """
        )
        + M
    ) == [
        "c.yaml:3:5: apiKeys[1]: key is required",
        "c.yaml:4:11: apiKeys[2]: api key cannot contain spaces",
        "c.yaml:5:11: empty api key found in apiKeys",
        "c.yaml:6:35: apiKeys[4]: unknown scope 'admn'; did you mean 'admin'?",
        "c.yaml:7:15: apiKeys.5.scope: unknown key; did you mean 'scopes'?",
        "c.yaml:8:11: apiKeys[6]: the same key as apiKeys[0]",
        "c.yaml:10:21: apiKeys[8]: name 'dup' is already used by apiKeys[7]",
        "c.yaml:11:24: apiKeys[9]: models is empty; leave it out to allow every model",
        "c.yaml:12:22: apiKeys[10]: invalid name 'has space' (letters, digits and . _ @ : + -, "
        "at most 64, starting with a letter or digit)",
        "c.yaml:13:5: apiKeys[11]: expected a key or a mapping {key, name, scopes, models}",
        "c.yaml:14:24: apiKeys[12]: scopes is empty; a key needs a scope",
    ]


def test_a_repeated_plain_key_is_dropped_with_a_warning() -> None:
    cfg = load("apiKeys: [same, other, same]\n" + M)
    assert cfg.api_keys == ("same", "other")
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:1:24: apiKeys[2]: the same key as apiKeys[0] (ignored)"
    ]


def test_upstream_control_paths_default_and_override() -> None:
    assert load(M).upstream_admin_paths == UPSTREAM_ADMIN_PATHS
    cfg = load("upstream:\n  adminPaths: ['^/nuke']\n  readPaths: []\n" + M)
    assert (cfg.upstream_admin_paths, cfg.upstream_read_paths) == (("^/nuke",), ())
    assert errors("upstream:\n  adminPaths: ['(']\n" + M) == [
        'c.yaml:2:16: upstream.adminPaths: invalid regular expression "(": '
        "missing ), unterminated subpattern at position 0"
    ]


def test_a_model_pattern_that_matches_nothing_warns() -> None:
    text = (
        "apiKeys:\n  - {key: k1, models: ['smal-*', 'small-?', auto]}\n  - {key: k2, models: x*}\n"
        "selectors:\n  auto: {strategy: pin, targets: [small-a]}\n" + M
    )
    assert [str(w) for w in load(text).warnings] == [
        "c.yaml:2:24: apiKeys[0]: model pattern 'smal-*' matches no model",
        "c.yaml:3:23: apiKeys[1]: model pattern 'x*' matches no model",
    ]


def test_a_key_of_the_wrong_type_is_one_error() -> None:
    assert errors("apiKeys:\n  - {key: [1], name: a}\n" + M) == [
        "c.yaml:2:11: apiKeys.0.key: expected a string"
    ]
