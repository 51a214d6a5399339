"""Item 2 of #16: containers run as swapd's uid, which the images do not know.

torch's inductor calls ``getpass.getuser()``, which reads ``LOGNAME``/``USER`` before it asks
the password database; without them a uid the image lacks raises ``KeyError: getpwuid()``.
"""

from __future__ import annotations

import pytest

from swapd.config.options import DockerOptions
from swapd.recipes import docker_run_line, load, render

from .shipped import NAMES, SHIPPED, recipe_model


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_names_a_user_and_a_writable_home(name: str) -> None:
    recipe = load(name, [SHIPPED])
    env = render(recipe, port=9000, model_id="m").env
    assert env["USER"] and env["LOGNAME"] == env["USER"]
    mounted = [v.split(":")[1] for v in recipe.mounts]
    assert env["HOME"] == "/tmp" or any(env["HOME"].startswith(m) for m in mounted)


@pytest.mark.parametrize("name", NAMES)
def test_every_cache_lives_on_a_mount_the_user_owns(name: str) -> None:
    recipe = load(name, [SHIPPED])
    env = render(recipe, port=9000, model_id="m").env
    mounted = [v.split(":")[1] for v in recipe.mounts]
    caches = [v for k, v in env.items() if k.endswith(("_HOME", "_CACHE", "_CACHE_DIR", "_ROOT"))]
    assert caches and all(any(c.startswith(m) for m in mounted) for c in caches), caches


def test_root_when_an_image_insists() -> None:
    model = recipe_model("vllm/qwen3-8b", '    docker: {user: "0:0"}\n')
    assert isinstance(model.options, DockerOptions) and model.options.user == "0:0"
    line = docker_run_line(model.options, "swapd-qwen-9000", "1000:1000")
    assert "--user 0:0" in line and "1000:1000" not in line
