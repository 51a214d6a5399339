"""The Files page in real headless Chromium against a real ``swapd serve`` whose
``huggingface_hub`` downloads from the stand-in Hub (tests/fleet_files/hub.py): the files per
node with the models that use them, a download with its progress bar, "add as model" written
into the config file, and a delete. Screenshots (light 1400 px, dark 390 px) go where
test_screenshots puts them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_files.hub import Hub, serve_hub
from swapd.testing import run_swapd, write_tiny_gguf

from .test_screenshots import _REASON, SIZES, _shoot, browser

if _REASON:
    pytestmark = pytest.mark.skip(reason=_REASON)
__all__ = ["browser"]  # the screenshots' Chromium fixture, shared

TOKEN = "hf_page_token"


def _rows(page: Any) -> list[str]:
    return [str(r) for r in page.eval_on_selector_all(
        "[data-testid=file-row]", "rows => rows.map(r => r.dataset.name)"
    )]  # fmt: skip


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tiny = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "t.gguf").read_bytes()
    repos: dict[str, dict[str, bytes | int]] = {
        "acme/Tiny-Chat-GGUF": {"tiny-chat-Q4_K_M.gguf": tiny, "tiny-chat-Q8_0.gguf": tiny},
        "acme/Small-Instruct": {"config.json": b"{}", "model.safetensors": 40 * 2**20},
    }
    with serve_hub(repos, token=TOKEN, delay=0.02) as hub:
        yield hub


def test_download_add_and_delete_model_files_in_the_browser(
    browser: Any, hub: Hub, tmp_path: Path
) -> None:
    (tmp_path / "ggufs").mkdir()
    write_tiny_gguf(tmp_path / "ggufs" / "llama-mini.gguf")
    config = (
        "# models on this box\nmodels:\n  mini:\n"
        f"    cmd: llama-server -m {tmp_path}/ggufs/llama-mini.gguf --port ${{PORT}}\n"
        "nodes:\n  local: {docker: 'unix:///var/run/docker.sock'}\n"
        "  gpu-2: {docker: 'ssh://ops@gpu-2'}\n"
    )
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": TOKEN}
    with run_swapd(config, env=env) as swapd:
        context = browser.new_context(viewport=SIZES["1400"], color_scheme="light")
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(swapd.url + "/ui/#/files")
        page.wait_for_selector("[data-testid=file-row][data-name='llama-mini.gguf']")
        assert "not reachable for files" in page.inner_text("[data-testid=node-unreachable]")
        row = "[data-testid=file-row][data-name='llama-mini.gguf']"
        assert page.inner_text(f"{row} [data-testid=file-models]") == "mini"

        page.fill("[data-testid=pull-repo]", "acme/Tiny-Chat-GGUF")
        page.click("[data-testid=pull-submit]")
        page.wait_for_selector("[data-testid=pull][data-state=done]")
        page.fill("[data-testid=pull-repo]", "acme/Small-Instruct")
        page.click("[data-testid=pull-submit]")
        page.wait_for_selector("[data-testid=pull][data-state=running] [data-testid=pull-bar]")
        page.wait_for_function(  # the bar moves while the bytes come
            "() => { const b = document.querySelector('[data-testid=pull][data-state=running]"
            " [data-testid=pull-bar]'); return b && parseFloat(b.style.width) >= 20; }"
        )
        _shoot(page, "files-downloading-light-1400")
        page.wait_for_selector("[data-testid=file-row][data-name='acme/Small-Instruct']")
        assert _rows(page)[:2] == ["acme/Small-Instruct", "acme/Tiny-Chat-GGUF"]

        tiny_row = "[data-testid=file-row][data-name='acme/Tiny-Chat-GGUF']"
        page.click(f"{tiny_row} [data-testid=file-add]")
        page.wait_for_selector("[data-testid=add-yaml]")
        assert "tiny-chat-Q4_K_M.gguf --port ${PORT}" in page.inner_text("[data-testid=add-yaml]")
        page.fill("[data-testid=add-id]", "tiny-chat")
        page.click("[data-testid=add-submit]")
        page.wait_for_selector("[data-testid=files-message]")
        assert "Added tiny-chat to" in page.inner_text("[data-testid=files-message]")
        page.wait_for_function(
            f'() => document.querySelector("{tiny_row} [data-testid=file-models]")'
            ".textContent === 'tiny-chat'"
        )
        assert "  tiny-chat:\n    cmd: llama-server -m " in swapd.config_path.read_text()
        _shoot(page, "files-light-1400")

        small_row = "[data-testid=file-row][data-name='acme/Small-Instruct']"
        page.click(f"{small_row} [data-testid=file-delete]")
        assert page.inner_text(f"{small_row} [data-testid=file-delete]") == "Really delete?"
        page.click(f"{small_row} [data-testid=file-delete]")
        page.wait_for_selector(small_row, state="detached")
        assert "Deleted acme/Small-Instruct" in page.inner_text("[data-testid=files-message]")
        context.close()

        dark = browser.new_context(viewport=SIZES["390"], color_scheme="dark")
        phone = dark.new_page()
        phone.goto(swapd.url + "/ui/#/files")
        phone.wait_for_selector(tiny_row)
        _shoot(phone, "files-dark-390")
        dark.close()
        assert not errors, errors
