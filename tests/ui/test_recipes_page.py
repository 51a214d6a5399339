"""The Recipes page in real headless Chromium against a real ``swapd serve``: browse the
catalog, see the rendered ``docker run`` line, add a model with overrides (the server writes its
config file and reloads it; the running model keeps its engine), edit it, see an invalid
override refused with the file untouched, find the entry on the Config page, remove it.
Screenshots (light 1400 px, dark 390 px) go where test_screenshots puts them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from swapd.testing import echo_cmd, free_port_range, run_swapd

from .test_screenshots import _REASON, SIZES, _shoot, browser

__all__ = ["browser"]  # the screenshots' Chromium fixture, shared

if _REASON:
    pytestmark = pytest.mark.skip(reason=_REASON)

CONFIG = """\
# the config the Recipes page edits
startPort: {port}
models:
  echo:
    cmd: {cmd}  # stays running
"""


def _page(browser: Any, size: str, theme: str) -> Any:
    context = browser.new_context(viewport=SIZES[size], color_scheme=theme)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _entry_rows(page: Any) -> list[str]:
    return [str(r) for r in page.eval_on_selector_all(
        "[data-testid=entry-row]", "rows => rows.map(r => r.dataset.id)"
    )]  # fmt: skip


def test_add_edit_and_remove_a_model_from_a_recipe_in_the_browser(browser: Any) -> None:
    text = CONFIG.format(port=free_port_range(6), cmd=echo_cmd())
    with run_swapd(text) as swapd, httpx.Client(base_url=swapd.url, timeout=30) as api:
        assert api.post("/api/models/echo/start?wait=1").status_code == 200
        pid = api.get("/api/models").json()["models"][0]["pid"]
        page = _page(browser, "1400", "light")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(swapd.url + "/ui/#/recipes")
        page.wait_for_selector("[data-testid=recipe-row][data-name='vllm/qwen3-8b']")
        assert str(swapd.config_path) in page.inner_text("[data-testid=recipes-file]")

        page.click("[data-testid=recipe-row][data-name='vllm/qwen3-8b'] button")
        page.wait_for_selector("[data-testid=recipe-command]")
        assert page.inner_text("[data-testid=recipe-command]").startswith("docker run -d")
        page.fill("[data-testid=recipe-id]", "qwen")
        page.fill("[data-testid=recipe-sets]", "max_model_len=8192")
        page.click("[data-testid=recipe-submit]")
        page.wait_for_selector("[data-testid=recipe-message]")
        assert "added qwen" in page.inner_text("[data-testid=recipe-message]")
        assert _entry_rows(page) == ["qwen"]
        assert "set: {max_model_len: 8192}" in swapd.config_path.read_text()
        assert [m["id"] for m in api.get("/v1/models").json()["data"]] == ["echo", "qwen"]
        assert "--max-model-len 8192" in page.inner_text("[data-testid=recipe-command]")

        # an invalid override: the loader's file:line:col message, the file as it was
        before = swapd.config_path.read_text()
        page.click("[data-testid=entry-row][data-id=qwen] [data-testid=entry-edit]")
        page.fill("[data-testid=recipe-sets]", "max_model_len=4096\nno_such=1")
        page.click("[data-testid=recipe-submit]")
        page.wait_for_selector("[data-testid=recipe-error]")
        error = page.inner_text("[data-testid=recipe-error]")
        assert f"{swapd.config_path}:" in error and "unknown placeholder 'no_such'" in error
        assert swapd.config_path.read_text() == before

        page.fill("[data-testid=recipe-sets]", "max_model_len=4096")
        page.fill("[data-testid=recipe-node]", "local")
        page.click("[data-testid=recipe-submit]")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=recipe-message]')?.textContent"
            ".includes('replaced qwen')"
        )
        assert "set: {max_model_len: 4096}" in swapd.config_path.read_text()
        assert "    node: local\n" in swapd.config_path.read_text()
        page.evaluate("window.scrollTo(0, 0)")
        _shoot(page, "recipes-light-1400")

        page.evaluate("location.hash = '#/config'")
        page.wait_for_selector("[data-testid=config-source]")
        shown = page.inner_text("[data-testid=config-source]")
        assert "qwen:" in shown and "max_model_len: 4096" in shown and "# stays running" in shown

        phone = _page(browser, "390", "dark")
        phone.goto(swapd.url + "/ui/#/recipes")
        phone.wait_for_selector("[data-testid=entry-row][data-id=qwen]")
        phone.click("[data-testid=entry-row][data-id=qwen] [data-testid=entry-edit]")
        phone.wait_for_selector("[data-testid=recipe-command]")
        phone.locator("[data-testid=recipe-detail] h2").scroll_into_view_if_needed()
        _shoot(phone, "recipes-dark-390")

        page.evaluate("location.hash = '#/recipes'")
        page.click("[data-testid=entry-row][data-id=qwen] [data-testid=entry-remove]")
        page.click("[data-testid=entry-row][data-id=qwen] [data-testid=entry-remove]")
        page.wait_for_selector("[data-testid=entry-row]", state="detached")
        assert "qwen" not in swapd.config_path.read_text()
        assert swapd.config_path.read_text() == text
        assert [m["id"] for m in api.get("/v1/models").json()["data"]] == ["echo"]
        assert api.get("/api/models").json()["models"][0]["pid"] == pid
        assert not errors, errors
