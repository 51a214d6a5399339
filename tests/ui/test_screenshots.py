"""Every UI page in real headless Chromium, light and dark, at 1400 px and at a phone's 390 px:
a screenshot of each, and nothing may overflow sideways (the page never scrolls horizontally).

swapd runs the demo config (``swapd.config.demo``) with three more models — one on fake GPUs
(``swapd.testing.FakeGpus``, so the memory bars have something to show), one that can sleep,
one with a secret in its ``env`` — and has answered a few requests, so Activity, the model page
and the Playground (a Markdown reply with a code block) have content. A second pass shows the
Config page and the banner after a rejected reload.

Screenshots go to ``tests/artifacts/screenshots/``; with ``SWAPD_SCREENSHOTS=docs`` to
``docs/screenshots/`` (the committed set, see docs/ui.md). Skips like the other browser tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd import web
from swapd.config.demo import demo_text
from swapd.testing import FakeGpus, free_port_range, run_swapd

ROOT = Path(__file__).resolve().parents[2]
OUT = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("SWAPD_SCREENSHOTS") == "docs"
    else ROOT / "tests" / "artifacts" / "screenshots"
)
CHROMIUM = os.environ.get("SWAPD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
GIB = 2**30
SIZES = {"1400": {"width": 1400, "height": 900}, "390": {"width": 390, "height": 844}}
WIDE = {"width": 1920, "height": 1080}
ROUTES = [  # every page, and what shows once it has loaded
    ("#/models", "[data-testid=gpu-bars]"),
    ("#/models/big-gpu", "[data-testid=model-requests]"),
    ("#/playground", "[data-testid=pg-input]"),
    ("#/activity", "[data-testid=spark-now]"),
    ("#/logs", "[data-testid=log-view] .line"),
    ("#/config", "[data-testid=config-source]"),
]
THEMES = ("light", "dark")
MARKDOWN = (
    "Show me **Markdown**: a list\n\n- one\n- two with `code`\n\n"
    "```python\ndef hello(name: str) -> str:\n    return f'hi {name}'\n```"
)


def _unavailable() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package playwright is not installed (pip install -e '.[test]')"
    if not (web.DIST / "index.html").is_file():
        return "web UI not built (npm --prefix ui ci && npm --prefix ui run build)"
    return None


_REASON = _unavailable()
if _REASON and os.environ.get("SWAPD_REQUIRE_UI") != "1":
    print(f"\nskipping UI screenshots: {_REASON}")
    pytestmark = pytest.mark.skip(reason=_REASON)


def _config() -> str:
    """The demo config, run by this interpreter, with a GPU model, a sleeper and a secret."""
    python = json.dumps(shlex.quote(sys.executable))
    text = demo_text().replace("  python: python3\n", f"  python: {python}\n")
    text = text.replace(
        "startPort: 5800", f"startPort: {free_port_range(10)}\nsendLoadingState: true"
    )
    # the demo's engines hold (fake) GPU memory too, declared, and their group leaves the other
    # models alone (exclusive: false): everything fits, nothing is evicted or put to sleep
    text = text.replace(
        "--model ${MODEL_ID}\n    checkEndpoint",
        "--model ${MODEL_ID} --allocate 6GiB\n    resources: {memory: 6GiB}\n    checkEndpoint",
    )
    text = text.replace(
        "members: [echo-a, echo-b]", "members: [echo-a, echo-b]\n    exclusive: false"
    )
    return text.replace("\ngroups:", MORE + "\ngroups:")


MORE = (
    "\n  # (added for the screenshots)\n"
    "  big-gpu:\n"
    "    name: Big GPU model\n"
    "    description: Holds 30 GiB on a fake 80 GiB GPU\n"
    "    cmd: ${python} -m swapd.echo --port ${PORT} --model ${MODEL_ID} --allocate 30GiB\n"
    "    resources: {memory: 30GiB}\n"
    "    ttl: 600\n"
    "    env:\n"
    '      - "HF_TOKEN=hf_demo_not_a_real_token"\n'
    "  sleepy:\n"
    "    description: Can sleep (vLLM's sleep API)\n"
    "    cmd: ${python} -m swapd.echo --port ${PORT} --model ${MODEL_ID} --sleep-mode"
    " --allocate 12GiB\n"
    "    resources: {memory: 12GiB}\n"
    "    sleep: {level: 1}\n"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if _REASON:
        pytest.fail(f"SWAPD_REQUIRE_UI=1 but {_REASON}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def _page(browser: Any, size: str, theme: str) -> Iterator[Any]:
    """A page in a fresh context of that width and colour scheme; no uncaught errors in it."""
    context = browser.new_context(viewport=SIZES.get(size, WIDE), color_scheme=theme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page ({theme}, {size} px): {errors}"


def _no_sideways_scroll(page: Any, name: str) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{name}: the page is {widths[0]} px wide in {widths[1]} px"


def _visit(page: Any, route: str, ready: str) -> None:
    page.evaluate(f"location.hash = {route!r}")
    page.wait_for_selector(ready)
    page.wait_for_timeout(400)  # let bars and sparklines settle


def _shoot(page: Any, name: str) -> None:
    _no_sideways_scroll(page, name)
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"))  # the viewport: small files


def _pages(page: Any, suffix: str) -> None:
    page.wait_for_selector("[data-testid=conn][data-conn=open]")
    _visit(page, "#/models", "[data-testid=gpu-bars] [data-testid=seg-model]")
    page.wait_for_selector("[data-testid=sleep-sleepy]")  # sleep: configured
    assert page.locator("[data-testid=sleep-big-gpu]").count() == 0  # no sleep: configured
    _shoot(page, f"models-{suffix}")

    _visit(page, "#/models/big-gpu", "[data-testid=model-requests]")
    page.wait_for_selector("[data-testid=model-where]")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=log-view] .line').length > 0"
    )
    assert "***" in page.inner_text("[data-testid=model-config]")
    assert "hf_demo_not_a_real_token" not in page.content()
    _shoot(page, f"model-{suffix}")

    _visit(page, "#/playground", "[data-testid=pg-input]")
    page.evaluate("fetch('/api/models/echo-b/stop', {method: 'POST'})")  # so it loads again
    page.wait_for_selector("[data-testid=pg-model] option[value=echo-b]", state="attached")
    page.select_option("[data-testid=pg-model]", "echo-b")
    page.fill("[data-testid=pg-input]", MARKDOWN)
    page.click("[data-testid=pg-send]")
    page.wait_for_selector("[data-testid=pg-assistant] .content pre.md-code")
    page.wait_for_selector("[data-testid=pg-send]")  # the reply is complete
    assert "loading model echo-b" in (page.text_content("[data-testid=pg-loading]") or "")
    _shoot(page, f"playground-{suffix}")

    _visit(page, "#/activity", "[data-testid=activity-row]")
    page.wait_for_selector("[data-testid=spark-now]")
    _shoot(page, f"activity-{suffix}")

    _visit(page, "#/logs", "[data-testid=log-view] .line")
    _shoot(page, f"logs-{suffix}")

    _visit(page, "#/config", "[data-testid=config-source]")
    assert "HF_TOKEN=***" in page.inner_text("[data-testid=config-source]")
    _shoot(page, f"config-{suffix}")


def test_every_page_in_both_themes_at_desktop_and_phone_width(browser: Any, tmp_path: Path) -> None:
    fake = FakeGpus(tmp_path, nodes={"a": [80 * GIB, 80 * GIB]})
    with contextlib.ExitStack() as stack:
        swapd = stack.enter_context(run_swapd(_config(), env=fake.env()))
        api = stack.enter_context(httpx.Client(base_url=swapd.url, timeout=60))
        for i in range(6):
            for model in ("big-gpu", "echo-a"):
                body = {"model": model, "messages": [{"role": "user", "content": f"hi {i}"}]}
                assert api.post("/v1/chat/completions", json=body).status_code == 200
        assert api.post("/api/models/sleepy/start?wait=true").status_code == 200

        contexts = [(size, theme) for size in SIZES for theme in THEMES]
        for size, theme in contexts:
            with _page(browser, size, theme) as page:
                page.goto(swapd.url + "/ui/")
                assert page.evaluate("document.documentElement.dataset.theme") == theme
                _pages(page, f"{theme}-{size}")

        # a wide screen (the sparklines once overflowed at 1920 px too): no screenshots
        with _page(browser, "1920", "light") as page:
            page.goto(swapd.url + "/ui/")
            page.wait_for_selector("[data-testid=conn][data-conn=open]")
            for route, ready in ROUTES:
                _visit(page, route, ready)
                _no_sideways_scroll(page, f"{route} at 1920 px")

        # a rejected reload: the errors at their lines, and the banner on every page
        good = swapd.config_path.read_text()
        swapd.config_path.write_text(good.replace("    ttl: 600\n", "    ttl: soon\n"))
        assert api.post("/api/config/reload").json()["ok"] is False
        for size, theme in contexts:
            with _page(browser, size, theme) as page:
                page.goto(swapd.url + "/ui/#/config")
                page.wait_for_selector("[data-testid=config-error-inline]")
                assert "ttl" in page.inner_text("[data-testid=config-error-inline]")
                page.wait_for_selector("[data-testid=reload-rejected]")
                _shoot(page, f"config-rejected-{theme}-{size}")
                _visit(page, "#/activity", "[data-testid=reload-rejected]")
                _no_sideways_scroll(page, f"activity with the banner, {theme} {size}")
        swapd.config_path.write_text(good)
        assert api.post("/api/config/reload").json()["ok"] is True
