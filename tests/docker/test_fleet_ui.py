"""The Nodes and Images pages in real headless Chromium against two real dockerd's (plus a dead
endpoint) and the Registry-v2 stand-in: what each page shows, a dry run that changes nothing,
a pull with Docker's progress, a prune that keeps what models and containers need.

Browser, pages and screenshots as in tests/ui/test_screenshots.py (light and dark, 1400 and
390 px, into ``tests/artifacts/screenshots/`` or with ``SWAPD_SCREENSHOTS=docs`` into
``docs/screenshots/``); skips like it when Chromium, playwright or the built UI is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerlab import IMAGE, Daemon, mounts
from registry import Registry, serving
from test_fleet import images_config, pull, tags

from swapd.client import Client
from swapd.echo.gpu import FakeDevice, FakeNode, Spec
from swapd.testing import free_port_range, run_swapd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the browser helpers
from ui.test_screenshots import _REASON, SIZES, _page, _shoot, _visit, browser

__all__ = ["browser"]  # the fixture, shared with the screenshots of every other page
pytestmark = [pytest.mark.timeout(300)]
if _REASON and os.environ.get("SWAPD_REQUIRE_UI") != "1":
    pytestmark.append(pytest.mark.skip(reason=_REASON))
GIB = 2**30


@pytest.fixture
def registry() -> Iterator[Registry]:
    with serving() as reg:
        yield reg


def test_nodes_and_images_pages(
    node_a: Daemon,
    node_b: Daemon,
    registry: Registry,
    tmp_path: Path,
    browser: Any,
) -> None:
    llm = f"{registry.host}/engine/llm"
    for tag in ("v1", "cu126", "cu129"):
        registry.add("engine/llm", tag, f"llm {tag}".encode())
        pull(node_a, f"{llm}:{tag}")
    registry.add("engine/llm", "v2", b"llm v2")
    spec = Spec(
        {
            "a": FakeNode("a", (FakeDevice(0, "Fake H100", 80 * GIB, 22 * GIB, 64.0, 58.0),)),
            "b": FakeNode(
                "b", tuple(FakeDevice(i, "Fake L4", 24 * GIB, 0, 3.0, 41.0) for i in (0, 1))
            ),
        },
        tmp_path / "allocations",
    )
    spec.write(tmp_path / "gpus.json")
    env = {"SWAPD_FAKE_GPUS": str(tmp_path / "gpus.json")}
    # echo runs as a process on fake GPU memory of node a; a container of the echo image
    # runs beside it (a fake GPU would be a device request Docker here cannot meet)
    echo = (
        f"  echo:\n    cmd: {sys.executable} -m swapd.echo --port ${{PORT}} --model echo"
        " --allocate 30GiB\n    resources: {gpus: 1, memory: 30GiB}\n"
    )
    c = node_a.client()
    c.containers.run(
        IMAGE,
        [sys.executable, "-c", "import time; time.sleep(600)"],
        name="sidecar",
        volumes=mounts(),
        network_mode="host",
        detach=True,
    )
    c.close()
    # ports drawn now, after the pulls and the sidecar: only swapd's start-up is left for
    # something else to take one (one CI run found the engine's port taken)
    config = images_config(registry, node_a, node_b, free_port_range(8), echo)
    with run_swapd(config, env=env, timeout=60) as swapd, Client(swapd.url) as client:
        client.start("echo", wait=True)
        before = tags(node_a)
        for size in SIZES:
            for theme in ("light", "dark"):
                with _page(browser, size, theme) as page:
                    page.goto(swapd.url + "/ui/")
                    _visit(page, "#/nodes", "[data-testid=node-a][data-reachable=true]")
                    page.wait_for_selector("[data-testid=node-dead][data-reachable=false]")
                    a = page.inner_text("[data-testid=node-a]")
                    assert "64%" in a and "58 °C" in a and "echo" in a and "docker root" in a
                    assert "unreachable" in page.inner_text("[data-testid=node-dead]")
                    _shoot(page, f"nodes-{theme}-{size}")

                    _visit(page, "#/images", "[data-testid=images-a] [data-testid=image-row]")
                    page.click("[data-testid=images-dry-run]")
                    page.wait_for_selector("[data-testid=prune-result]")
                    plan = page.inner_text("[data-testid=prune-result]")
                    assert "would remove" in plan and f"{llm}:v1" in plan and "cu126" not in plan
                    section = page.inner_text("[data-testid=images-a]")
                    assert "needed by lines" in section and "missing" in section
                    assert "in use: sidecar" in section and "needed by new" in section
                    assert "unreachable" in page.inner_text("[data-testid=images-dead]")
                    _shoot(page, f"images-{theme}-{size}")
        assert tags(node_a) == before  # dry runs changed nothing

        with _page(browser, "1400", "light") as page:
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(swapd.url + "/ui/")
            _visit(page, "#/images", "[data-testid=images-a] [data-testid=image-row]")
            page.select_option("[data-testid=images-node]", "a")
            page.wait_for_selector("[data-testid=images-b]", state="detached")
            page.click("[data-testid=images-pull]")
            page.wait_for_selector("[data-testid=pull-summary]")
            assert page.inner_text("[data-testid=pull-summary]") == "1 pulled, 0 failed"
            assert "Downloaded newer image" in page.inner_text("[data-testid=pull-progress]")
            page.click("[data-testid=images-prune]")  # the confirm dialog is accepted
            page.wait_for_selector("[data-testid=prune-result]")
            page.wait_for_function(
                "() => !document.querySelector('[data-testid=images-a]').innerText"
                ".includes('stale')"
            )
            _shoot(page, "images-pulled-light-1400")
        after = tags(node_a)
        assert f"{llm}:v2" in after and f"{llm}:v1" not in after
        for kept in (f"{llm}:cu126", f"{llm}:cu129", IMAGE):
            assert kept in after
        client.stop("echo")
