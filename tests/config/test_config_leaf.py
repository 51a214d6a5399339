"""``swapd.config`` is a leaf: it imports no domain module; those plug in as extensions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from config_helpers import load

from swapd.config import ConfigExtension, load_text
from swapd.config.extension import Built, Tree
from swapd.config.tree import MapNode, Scalar
from swapd.errors import ConfigError
from swapd.extensions import standard

DOMAIN = ("swapd.recipes", "swapd.nodes", "swapd.llamacpp", "swapd.drivers", "swapd.scheduler")


def test_importing_and_using_the_config_imports_no_domain_module() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import swapd.config
        swapd.config.load_text("models:\\n  m:\\n    cmd: srv --port ${PORT}\\n", env={})
        swapd.config.load_demo()
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("swapd."))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.startswith(DOMAIN)] == []


def test_the_config_package_has_no_import_of_a_domain_module() -> None:
    """Also the imports inside functions, which the subprocess check above cannot see."""
    package = Path(__file__).parents[2] / "src" / "swapd" / "config"
    for path in package.glob("*.py"):
        text = path.read_text()
        for module in DOMAIN:
            assert f"from {module}" not in text and f"import {module}" not in text, path.name


def test_without_extensions_a_docker_model_is_not_rendered() -> None:
    text = "models:\n  m:\n    recipe: vllm/qwen3-8b\n"
    plain = load(text)
    assert plain.models["m"].driver == "docker" and plain.models["m"].cmd == ()
    assert plain.nodes == {}
    rendered = load_text(text, env={}, extensions=standard())
    assert rendered.models["m"].cmd and list(rendered.nodes) == ["local"]


class _Tagger(ConfigExtension):
    """Adds a model before macros run; after the build, rejects ``description: bad``."""

    def prepare(self, tree: Tree) -> None:
        entry = MapNode(tree.models.pos)
        entry.put("cmd", Scalar("added --port ${PORT}", tree.models.pos))
        tree.models.put("added", entry, tree.models.pos)
        tree.sources["added"] = "/somewhere/added.gguf"

    def finish(self, built: Built) -> None:
        for model_id in built.models:
            if built.raw_models[model_id].description == "bad":
                built.error(("models", model_id, "description"), f"model {model_id}: bad")


def test_an_extension_adds_models_and_reports_errors_at_their_position() -> None:
    cfg = load_text("models:\n  m:\n    cmd: srv --port ${PORT}\n", extensions=[_Tagger()])
    assert cfg.models["added"].cmd == ("added", "--port", "5800")
    assert cfg.models["added"].source == "/somewhere/added.gguf"
    assert cfg.models["m"].port == 5801
    with pytest.raises(ConfigError) as info:
        load_text(
            "models:\n  m:\n    cmd: x ${PORT}\n    description: bad\n", extensions=[_Tagger()]
        )
    assert [str(i) for i in info.value.issues] == ["config.yaml:4:18: model m: bad"]
