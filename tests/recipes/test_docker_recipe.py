"""A recipe model through a real swapd and a real dockerd (the harness of tests/docker).

The recipe runs the echo engine in a scratch image with vLLM's naming (``--served-model-name``
with several names, 404 for others), an image per CUDA line (only the oldest line's image
exists on the daemon, and the node's driver is unknown, so that one must be chosen) and the
``{host}`` the node gets. A gated recipe without ``HF_TOKEN`` must be refused before any
container exists.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from swapd.testing import free_port_range, run_swapd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docker"))
import dockerlab  # the docker tests' harness (dockerd in a temp dir)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def daemon() -> Iterator[dockerlab.Daemon]:
    d = dockerlab.start("recipes")
    try:
        dockerlab.import_image(d)
        yield d
    finally:
        dockerlab.stop(d)


def _recipe(folder: Path, name: str, gated: bool) -> None:
    recipe = {
        "engine": "vllm",
        "image": {"cu129": dockerlab.IMAGE, "cu130": "swapd-test/echo:cu130-absent"},
        "model": "org/echo-model",
        "served_model_name": "echo-model",
        "gated": gated,
        "entrypoint": [sys.executable, "-m", "swapd.echo"],
        "args": ["--port", "{port}", "--host", "{host}", "--model", "{model_id}",
                 "--served-model-name", "{served_model_names}"],
        "env": {"USER": "swapd", "LOGNAME": "swapd", "HOME": "/tmp"},
        "mounts": dockerlab.mounts(),
    }  # fmt: skip
    (folder / "t").mkdir(exist_ok=True)
    (folder / "t" / f"{name}.yaml").write_text(json.dumps(recipe))


def test_a_recipe_model_serves_by_id_and_alias_and_a_gated_one_is_refused(
    daemon: dockerlab.Daemon, tmp_path: Path
) -> None:
    _recipe(tmp_path, "echo", gated=False)
    _recipe(tmp_path, "gated", gated=True)
    port = free_port_range(4)
    config = f"""
healthCheckTimeout: 60
startPort: {port}
placement: {{enabled: false}}
nodes:
  a: {{docker: '{daemon.endpoint}'}}
models:
  qwen:
    recipe: t/echo
    aliases: [q]
  llama:
    recipe: t/gated
"""
    env = {"SWAPD_RECIPES": str(tmp_path), "HOME": str(tmp_path / "home")}
    with run_swapd(config, env=env, timeout=60) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none", max_retries=0)
        for asked in ("qwen", "q"):
            reply = client.chat.completions.create(
                model=asked, messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "echo qwen: hi", swapd.output()
        [container] = daemon.containers()
        attrs = container.attrs
        assert attrs["Config"]["Image"] == dockerlab.IMAGE
        assert attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        assert {"USER=swapd", "LOGNAME=swapd", "HOME=/tmp"} <= set(attrs["Config"]["Env"])
        cmd = attrs["Config"]["Cmd"]
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
        assert cmd[cmd.index("--served-model-name") + 1 :][:2] == ["qwen", "echo-model"]
        assert "NVIDIA driver unknown: the oldest CUDA line cu129" in swapd.output()

        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="llama", messages=[{"role": "user", "content": "hi"}]
            )
        assert "HF_TOKEN" in str(info.value), swapd.output()
        names = [c.name for c in daemon.containers()]
        assert not any("llama" in n for n in names), names
