"""What the UI's Config page reads: ``/api/config/source`` (the YAML as written, secrets masked,
every line in its place) and ``/api/config/errors`` (the last rejected reload's errors)."""

from __future__ import annotations

import httpx

from swapd.config.loader import load_text
from swapd.proxy.configsource import masked
from swapd.testing import echo_cmd, free_port_range, run_swapd

CONFIG = """\
startPort: {port}
apiKeys:
  - long-admin-secret-key
  - {{key: tiny, name: dash, scopes: [read]}}
models:
  echo:
    cmd: {cmd}
    env:
      - "HF_TOKEN=hf_abcdefgh12345"
      - SHORT=xy
      - FROM_ENV=${{env.HOME}}
"""


def test_source_shows_the_yaml_as_written_with_every_secret_masked() -> None:
    text = CONFIG.format(port=free_port_range(4), cmd=echo_cmd())
    with run_swapd(text) as swapd:
        admin = {"Authorization": "Bearer long-admin-secret-key"}
        body = httpx.get(f"{swapd.url}/api/config/source", headers=admin).json()
        [shown] = body["files"]
        assert shown["name"] == str(swapd.config_path) and shown["error"] is None
        lines = shown["text"].split("\n")
        assert len(lines) == len(text.split("\n"))  # errors point at the same lines
        for secret in ("long-admin-secret-key", "tiny", "hf_abcdefgh12345", "=xy"):
            assert secret not in shown["text"], secret
        assert "  - ***" in lines[2]
        assert "{key: ***, name: dash" in lines[3]
        assert lines[8] == '      - "HF_TOKEN=***"' and lines[9] == "      - SHORT=***"
        assert lines[10] == "      - FROM_ENV=${env.HOME}"  # a reference is no secret
        assert body["errors"] == []

        read_only = {"Authorization": "Bearer tiny"}
        assert httpx.get(f"{swapd.url}/api/config/source", headers=read_only).status_code == 403
        errors = httpx.get(f"{swapd.url}/api/config/errors", headers=read_only)
        assert errors.status_code == 200 and errors.json() == {"errors": []}


def test_a_rejected_reload_is_reported_until_a_good_one() -> None:
    text = CONFIG.format(port=free_port_range(4), cmd=echo_cmd()).replace("apiKeys", "x-keys")
    with run_swapd(text) as swapd:
        swapd.config_path.write_text(text + "    unlisted: sure\n")
        assert httpx.post(f"{swapd.url}/api/config/reload").json()["ok"] is False
        errors = httpx.get(f"{swapd.url}/api/config/errors").json()["errors"]
        assert errors and errors[0].startswith(f"{swapd.config_path}:12:")
        source = httpx.get(f"{swapd.url}/api/config/source").json()
        assert source["errors"] == errors
        assert source["files"][0]["text"].endswith("    unlisted: sure\n")  # the text on disk now
        assert "hf_abcdefgh12345" not in source["files"][0]["text"]
        swapd.config_path.write_text(text)
        assert httpx.post(f"{swapd.url}/api/config/reload").json()["ok"] is True
        assert httpx.get(f"{swapd.url}/api/config/errors").json() == {"errors": []}


def test_unparsable_text_still_hides_env_values_and_known_secrets() -> None:
    config = load_text("models:\n  m:\n    cmd: x ${PORT}\n    env: [TOKEN=abcdef123]\n", "c.yaml")
    broken = "models:\n  m:\n    cmd: [x\n    env:\n      - NEW=zz\n    note: abcdef123\n"
    shown = masked(broken, config).split("\n")
    assert shown[4] == "      - NEW=***"
    assert shown[5] == "    note: ***"
