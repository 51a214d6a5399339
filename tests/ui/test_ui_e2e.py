"""The web UI in real headless Chromium against a real ``swapd serve`` with echo engines.

Needs Debian's chromium (/usr/bin/chromium, or $SWAPD_CHROMIUM), the Python ``playwright``
package (driver only; no browser download) and the built UI (``src/swapd/web/dist``). Without
them the tests skip and say why, except with ``SWAPD_REQUIRE_UI=1`` (CI), where they fail.
Screenshots of every page go to ``tests/artifacts/ui/``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd import web
from swapd.testing import FakeGpus, echo_cmd, free_port, free_port_range, run_swapd

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
CHROMIUM = os.environ.get("SWAPD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
    print(f"\nskipping UI browser tests: {_REASON}")
    pytestmark = pytest.mark.skip(reason=_REASON)


# prints 5000 log lines, then fails (a failed start, and a log flood for the Logs page)
BROKEN = (
    '"/bin/sh -c \'seq -f \\"loading shard %g\\" 1 5000; '
    "echo fatal out of GPU memory >&2; exit 3 # ${PORT}'\""
)


def _config(extra: str = "") -> str:
    return f"""
startPort: {free_port_range(8)}
sendLoadingState: true
{extra}
models:
  echo-a:
    cmd: {echo_cmd()}
    aliases: [gpt-a]
    description: first echo engine
  echo-b:
    cmd: {echo_cmd()}
  broken:
    cmd: {BROKEN}
  hidden:
    cmd: {echo_cmd()}
    unlisted: true
"""


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


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _settled(url: str, model: str, timeout: float = 30.0) -> None:
    """Wait until ``model`` has no queued or in-flight request (its start retries are over)."""
    deadline = time.monotonic() + timeout
    while True:
        models = httpx.get(f"{url}/api/models", timeout=10).json()["models"]
        info = next(m for m in models if m["id"] == model)
        if info["queued"] == 0 and info["inflight"] == 0 and info["state"] != "starting":
            return
        assert time.monotonic() < deadline, f"{model} still busy after {timeout:g}s: {info}"
        time.sleep(0.05)


def _goto(page: Any, name: str) -> None:
    page.click(f"[data-testid=nav-{name}]")
    page.wait_for_function(f"location.hash === '#/{name}'")


def test_models_start_playground_activity(page: Any) -> None:
    with run_swapd(_config()) as swapd:
        page.goto(swapd.url + "/")  # redirects to /ui/
        assert page.url.endswith("/ui/")
        page.wait_for_selector("[data-testid=conn][data-conn=open]")
        for model in ("echo-a", "echo-b", "broken"):
            page.wait_for_selector(f"[data-testid=model-{model}] [data-state=stopped]")
        assert page.locator("[data-testid=model-hidden]").count() == 0  # unlisted
        _shot(page, "models")

        # search filters
        page.fill("[data-testid=model-search]", "gpt-a")
        page.wait_for_selector("[data-testid=model-echo-b]", state="detached")
        page.fill("[data-testid=model-search]", "")

        # start → badge turns ready (live, from /api/events)
        page.click("[data-testid=start-echo-a]")
        page.wait_for_selector("[data-testid=model-echo-a] [data-state=ready]")
        assert page.locator("[data-testid=sleep-echo-a]").count() == 0  # no sleep: configured

        # a failed start shows its error
        page.click("[data-testid=start-broken]")
        page.wait_for_selector("[data-testid=model-broken] [data-state=failed]")
        err = page.locator("[data-testid=model-broken] [data-testid=error-broken]")
        err.wait_for()
        assert err.inner_text().strip()
        # A start that crashed is retried for the request still queued (each retry evicting
        # echo-a again); go on once that request got its error.
        _settled(swapd.url, "broken")
        _shot(page, "models-after-start")

        # playground: streamed reply
        _goto(page, "playground")
        page.select_option("[data-testid=pg-model]", "echo-a")
        page.fill("[data-testid=pg-input]", "hello from chromium")
        page.click("[data-testid=pg-send]")
        reply = page.locator("[data-testid=pg-assistant] .content").last
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=pg-assistant] .content')]"
            ".some(e => e.textContent.includes('hello from chromium'))"
        )
        assert "echo-a" in reply.inner_text()
        # echo-a had been swapped out for broken: the load progress came as reasoning_content,
        # shown in its own box (not as the model's reasoning)
        progress = page.locator("[data-testid=pg-assistant] [data-testid=pg-loading]").last
        assert progress.count() and "loading model echo-a" in (progress.text_content() or "")
        assert page.locator("[data-testid=pg-assistant] [data-testid=pg-reasoning]").count() == 0
        assert "loading" not in reply.inner_text().lower()
        _shot(page, "playground")

        # activity: the playground's request is listed
        _goto(page, "activity")
        row = page.locator("[data-testid=activity-row]", has_text="/v1/chat/completions")
        row.first.wait_for()
        assert "echo-a" in row.first.inner_text()
        _shot(page, "activity")

        # logs: live tail has lines
        _goto(page, "logs")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=log-view] .line').length > 0"
        )
        _shot(page, "logs")
        # thousands of lines (broken printed 5000): all kept, only the visible rows rendered
        page.wait_for_function(
            "() => /([0-9,]+) lines/.exec(document.querySelector('[data-testid=log-status]')"
            ".textContent) && Number(/([0-9,]+) lines/.exec(document.querySelector("
            "'[data-testid=log-status]').textContent)[1].replace(/,/g, '')) > 5000"
        )
        assert page.locator("[data-testid=log-view] .line").count() < 200
        began = time.monotonic()
        page.click("[data-testid=follow]")
        page.wait_for_selector("[data-testid=follow]:has-text('Follow')")
        assert time.monotonic() - began < 2
        page.click("[data-testid=follow]")
        page.select_option("[data-testid=log-source]", "echo-a")
        page.wait_for_selector("[data-testid=log-view] .line")
        _shot(page, "logs-echo-a")

        # config: the YAML as written, the effective config on its tab
        _goto(page, "config")
        page.wait_for_selector("[data-testid=config-source]")
        assert "echo-a:" in page.inner_text("[data-testid=config-source]")
        page.click("[data-testid=tab-json]")
        page.wait_for_selector("[data-testid=config-json]")
        assert "echo-a" in page.inner_text("[data-testid=config-json]")
        _shot(page, "config")
        good = swapd.config_path.read_text()
        swapd.config_path.write_text("models:\n  x:\n    cmd: [oops\n")
        page.click("text=Reload from disk")
        errors = page.locator("[data-testid=config-errors]")
        errors.wait_for()
        assert "swapd.yaml:" in errors.inner_text()
        page.wait_for_selector("[data-testid=config-message]:has-text('rejected')")
        page.click("[data-testid=tab-yaml]")
        inline = page.locator("[data-testid=config-error-inline]")
        inline.first.wait_for()
        assert "expected ',' or ']'" in inline.first.inner_text()
        page.wait_for_selector("[data-testid=reload-rejected]")  # the banner, on every page
        _shot(page, "config-rejected")
        swapd.config_path.write_text(good)
        page.click("text=Reload from disk")
        page.wait_for_selector("[data-testid=config-message]:has-text('Reloaded')")
        page.wait_for_selector("[data-testid=reload-rejected]", state="detached")

        # dark theme, kept across reloads
        page.click("[data-testid=theme]")
        dark = page.evaluate("document.documentElement.dataset.theme")
        page.reload()
        assert page.evaluate("document.documentElement.dataset.theme") == dark
        _goto(page, "models")
        page.wait_for_selector("[data-testid=model-echo-a] [data-state=ready]")
        _shot(page, f"models-{dark}")

        # stop
        page.click("[data-testid=stop-echo-a]")
        page.wait_for_selector("[data-testid=model-echo-a] [data-state=stopped]")

    # the server went away: the UI says so (and keeps retrying)
    page.wait_for_selector("[data-testid=server-gone]")
    page.wait_for_selector("[data-testid=conn][data-conn=down]")
    _shot(page, "server-gone")


def test_models_page_draws_a_bar_per_fake_gpu_with_the_model_on_it(
    page: Any, tmp_path: Path
) -> None:
    fake = FakeGpus(tmp_path, nodes={"a": [16 * 2**30, 16 * 2**30]})
    config = f"""
startPort: {free_port_range(8)}
models:
  on-gpu:
    cmd: {echo_cmd("--allocate 10GiB")}
    resources: {{memory: 10GiB}}
"""
    with run_swapd(config, env=fake.env()) as swapd:
        page.goto(swapd.url + "/ui/")
        page.wait_for_selector("[data-testid=conn][data-conn=open]")
        page.wait_for_selector("[data-testid='gpu-a:1']")  # every GPU, empty ones too
        page.click("[data-testid=start-on-gpu]")
        page.wait_for_selector("[data-testid=model-on-gpu] [data-state=ready]")
        where = page.locator("[data-testid=where-on-gpu]")
        where.wait_for()
        gpu = where.inner_text().removeprefix("on ")
        segment = page.locator(f"[data-testid='gpu-{gpu}'] [data-testid=seg-model]")
        segment.wait_for()
        assert segment.get_attribute("data-label") == "on-gpu"
        assert "on-gpu 10.0 GiB" in segment.inner_text()
        assert "10.0 GiB (declared)" in page.inner_text("[data-testid=need-on-gpu]")
        _shot(page, "models-gpu-bars")


def test_server_comes_back(page: Any) -> None:
    port = free_port()
    config = _config()
    with run_swapd(config, listen_port=port) as swapd:
        page.goto(swapd.url + "/ui/")
        page.wait_for_selector("[data-testid=model-echo-a]")
    page.wait_for_selector("[data-testid=server-gone]")
    with run_swapd(config, listen_port=port):
        page.wait_for_selector("[data-testid=server-gone]", state="detached", timeout=20_000)
        page.wait_for_selector("[data-testid=conn][data-conn=open]")


def test_api_key_prompt(page: Any) -> None:
    with run_swapd(_config('apiKeys: ["sesame"]')) as swapd:
        assert httpx.get(swapd.url + "/api/models").status_code == 401
        assert httpx.get(swapd.url + "/ui/").status_code == 200  # the page itself is public
        page.goto(swapd.url + "/ui/")
        page.wait_for_selector("[data-testid=key-form]")
        _shot(page, "api-key-prompt")
        page.fill("[data-testid=key-input]", "wrong")
        page.click("[data-testid=key-form] button[type=submit]")
        time.sleep(0.5)
        page.wait_for_selector("[data-testid=key-form]")
        assert page.locator("[data-testid=model-echo-a]").count() == 0
        page.fill("[data-testid=key-input]", "sesame")
        page.click("[data-testid=key-form] button[type=submit]")
        page.wait_for_selector("[data-testid=model-echo-a]")
        assert page.locator("[data-testid=key-form]").count() == 0
        page.reload()  # the key is kept in the browser
        page.wait_for_selector("[data-testid=model-echo-a]")
        assert page.locator("[data-testid=key-form]").count() == 0


def test_the_key_scope_is_shown_and_a_key_without_read_is_told_why(page: Any) -> None:
    keys = """apiKeys:
  - {key: dash-key, name: dash, scopes: [read]}
  - {key: app-key, name: app, models: ["echo-*"]}"""
    with run_swapd(_config(keys)) as swapd:
        page.goto(swapd.url + "/ui/")
        page.fill("[data-testid=key-input]", "app-key")
        page.click("[data-testid=key-form] button[type=submit]")
        error = page.wait_for_selector("[data-testid=scope-error]")
        assert "'read' scope" in error.inner_text()
        page.fill("[data-testid=key-input]", "dash-key")
        page.click("[data-testid=key-form] button[type=submit]")
        page.wait_for_selector("[data-testid=model-echo-a]")
        shown = page.wait_for_selector("[data-testid=key-scope]")
        assert shown.inner_text() == "key dash: read"
        _shot(page, "key-scope")
