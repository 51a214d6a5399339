"""The Dockerfile, checked without Docker: base images cannot be pulled here, so its build stages'
commands run on this machine (tests/install/dockerfile.py): the node stage's ``npm ci`` and
``npm run build`` in a copy of ui/ from the build context (.dockerignore applied), the Python
stage's ``pip wheel`` on the context's sources plus the node stage's output. The wheel must carry
that UI. The runtime stage is checked by reading it (non-root user, port, health check), and its
health check command is run against a real swapd. About 60 s (npm ci, pip's isolated build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from swapd.testing import free_port, run_swapd

from .dockerfile import Build, Context, Stage, host_env, parse

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_dockerignore_sends_sources_but_no_builds_venvs_or_node_modules() -> None:
    context = Context.of(ROOT)
    for sent in ("pyproject.toml", "src/swapd/app.py", "ui/src/App.svelte", "recipes/vllm/x.yaml"):
        assert context.included(sent), sent
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "ui/node_modules/vite/package.json",
        "src/swapd/web/dist/index.html",  # the image's UI is the node stage's build
        "src/swapd/native/_relay.so",  # ... and its native relay the wheel stage's
        "src/swapd/__pycache__/app.cpython-311.pyc",
        "tests/conftest.py",
    ):
        assert not context.included(kept_out), kept_out


def test_runtime_stage_runs_swapd_as_a_non_root_user_on_port_8080() -> None:
    ui, wheel, runtime = _stages()
    assert (ui.base.split(":")[0], ui.name, wheel.name) == ("node", "ui", "wheel")
    assert runtime.base.startswith("python:") and "slim" in runtime.base
    assert [i.args for i in runtime.all("USER")] == ["swapd"]
    assert [i.args for i in runtime.all("EXPOSE")] == ["8080"]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert entrypoint.exec_form() == ["swapd"]
    assert cmd.exec_form() == ["serve", "--listen", "0.0.0.0:8080"]
    # Only the wheel reaches the runtime: no sources, no node.
    assert [i.args for i in runtime.all("COPY")] == ["--from=wheel /src/wheels/ /tmp/wheels/"]


def test_healthcheck_command_passes_on_a_running_swapd_and_fails_without_one() -> None:
    (check,) = _stages()[-1].all("HEALTHCHECK")
    argv = check.exec_form()
    assert argv is not None and argv[0] == "python"
    port = free_port()
    local = [sys.executable, *(a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in argv[1:])]
    assert local != [sys.executable, *argv[1:]]  # it names the port the image listens on
    with run_swapd("models: {}\n", listen_port=port):
        assert subprocess.run(local, capture_output=True).returncode == 0
    assert subprocess.run(local, capture_output=True).returncode != 0


def test_build_stages_make_a_wheel_that_carries_the_node_stage_ui(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        if os.environ.get("SWAPD_REQUIRE_UI") == "1":
            pytest.fail("SWAPD_REQUIRE_UI=1 but npm is not on PATH")
        pytest.skip("npm is not installed: the node stage cannot run here")
    ui_stage, wheel_stage, _ = _stages()
    # pip is this interpreter's (the image's is python:3.12's); the cache keeps npm ci offline-fast.
    build = Build(Context.of(ROOT), tmp_path, host_env(Path(sys.executable).parent))
    ui_root = build.run(ui_stage, 0)
    built_ui = ui_root / "src" / "src" / "swapd" / "web" / "dist"
    index = (built_ui / "index.html").read_text()
    wheel_root = build.run(wheel_stage, 1)
    assert not (wheel_root / "src" / "ui").exists()  # so hatch_build.py does not run npm
    (wheel,) = (wheel_root / "src" / "wheels").glob("swapd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("swapd/web/dist/index.html").decode() == index
    assets = {p.relative_to(built_ui).as_posix() for p in built_ui.rglob("*") if p.is_file()}
    assert {f"swapd/web/dist/{a}" for a in assets} <= names
    assert "swapd/recipe_files/vllm/qwen3-8b.yaml" in names
