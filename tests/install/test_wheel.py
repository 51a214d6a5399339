"""``pip install swapd`` from a built wheel gives a working ``/ui`` on a machine without Node.js.

The wheel and the sdist are built once from this checkout (hatchling's PEP 517 hooks, as pip
calls them; hatch_build.py runs npm when the UI is stale). The wheel is installed into a fresh
venv (its dependencies from the package index or pip's cache) and ``swapd serve`` runs from there
with a PATH that has no ``node`` or ``npm``. The sdist must build a wheel with the UI without npm.
About 40 s, most of it pip installing the dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import swapd
from swapd.testing import free_port, wait_http

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
DIST = "swapd/web/dist"
SCRIPT = re.compile(r'<script type="module" crossorigin src="/ui/(assets/[^"]+\.js)"')


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _no_node_path(tmp: Path, *dirs: Path) -> str:
    """A PATH of ``dirs`` only (no /usr/bin: that is where node and npm usually are)."""
    path = os.pathsep.join(str(d) for d in (*dirs, tmp))
    for tool in ("node", "npm", "npx"):
        assert shutil.which(tool, path=path) is None, f"{tool} on {path}"
    return path


def _build(source: Path, out: Path, targets: str, env: dict[str, str] | None = None) -> list[Path]:
    """Build ``targets`` (``wheel``, ``sdist``) of the project at ``source`` into ``out``."""
    code = (
        "import sys; from hatchling import build\n"
        "for target in sys.argv[2:]:\n"
        "    print(getattr(build, 'build_' + target)(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out), *targets.split()],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [out / name for name in done.stdout.split()[-len(targets.split()) :]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    unbuildable = not (ROOT / "src" / DIST / "index.html").is_file() and not shutil.which("npm")
    if unbuildable and os.environ.get("SWAPD_REQUIRE_UI") != "1":
        pytest.skip("the UI is not built and npm is not installed")
    out = tmp_path_factory.mktemp("dists")
    env = {**os.environ, "SWAPD_REQUIRE_UI": "1"}  # a wheel without the UI is a failure here
    wheel, sdist = _build(ROOT, out, "wheel sdist", env)
    return Built(wheel, sdist)


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (dependencies from the index or pip's cache)."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    python = str(home / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--no-compile", str(built.wheel)]
    done = subprocess.run(install, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def _index_script(html: str) -> str:
    found = SCRIPT.search(html)
    assert found is not None, html
    return found.group(1)


def test_wheel_carries_the_built_ui_recipes_and_license(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        script = _index_script(wheel.read(f"{DIST}/index.html").decode())
    assert f"{DIST}/{script}" in names
    assert "swapd/recipe_files/vllm/qwen3-8b.yaml" in names
    assert f"swapd-{swapd.__version__}.dist-info/licenses/LICENSE" in names


def test_sdist_builds_a_wheel_with_the_ui_without_npm(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.sdist) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (source,) = tmp_path.iterdir()
    assert (source / "src" / DIST / "index.html").is_file()
    assert (source / "LICENSE").is_file()
    # SWAPD_REQUIRE_UI=1 without npm: the build fails if hatch_build.py decides to rebuild.
    env = {"PATH": _no_node_path(tmp_path / "bin"), "SWAPD_REQUIRE_UI": "1", "HOME": str(tmp_path)}
    (wheel,) = _build(source, tmp_path / "out", "wheel", env)
    with zipfile.ZipFile(wheel) as archive:
        script = _index_script(archive.read(f"{DIST}/index.html").decode())
        assert f"{DIST}/{script}" in archive.namelist()


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[str]:
    """``swapd serve`` (the embedded demo: no config, no ./config.yaml) from the venv, with
    Node.js off the PATH and this checkout out of reach (run elsewhere, no PYTHONPATH)."""
    port = free_port()
    env = {"PATH": _no_node_path(tmp_path / "bin", venv / "bin"), "HOME": str(tmp_path)}
    argv = [str(venv / "bin" / "swapd"), "serve", "--listen", f"127.0.0.1:{port}"]
    with (tmp_path / "swapd.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)
            except (TimeoutError, RuntimeError) as exc:
                raise AssertionError(f"{exc}\n{(tmp_path / 'swapd.log').read_text()}") from exc
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(20)


def test_installed_wheel_serves_the_ui_without_node(served: str, venv: Path) -> None:
    page = httpx.get(f"{served}/ui/", timeout=10)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="app"></div>' in page.text
    script = httpx.get(f"{served}/ui/{_index_script(page.text)}", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert not script.text.lstrip().startswith("<")  # the file, not the app's HTML fallback
    # The demo's echo engine runs from the installed package too.
    body = {"model": "echo-a", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{served}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text


def test_installed_wheel_reports_its_version_from_its_metadata(venv: Path, built: Built) -> None:
    python = str(venv / "bin" / "python")
    code = "import importlib.metadata as m, swapd; print(m.version('swapd'), swapd.__file__)"
    version, location = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True, cwd=venv
    ).stdout.split()
    assert Path(location).is_relative_to(venv)  # the installed copy, not this checkout
    assert built.wheel.name.startswith(f"swapd-{version}-")
    shown = subprocess.run(
        [str(venv / "bin" / "swapd"), "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout == f"swapd {version}\n"
