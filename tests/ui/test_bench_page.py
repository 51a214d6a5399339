"""The model page's benchmarks in real headless Chromium against a real ``swapd serve`` with an
echo engine: stored results as a table (one row per concurrency level), a run started from the
page with its progress, cancelled, and one that completes. Screenshots (light 1400 px, dark
390 px) go where test_screenshots puts them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd.testing import echo_cmd, free_port_range, run_swapd

from .test_screenshots import _REASON, _page, _shoot, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.timeout(120)]
if _REASON:
    pytestmark.append(pytest.mark.skip(reason=_REASON))


def _bench(url: str, params: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = httpx.post(f"{url}/api/models/echo/bench", json=params).json()
    deadline = time.monotonic() + 30
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = httpx.get(f"{url}/api/bench/{job['id']}").json()
    assert job["state"] == "done", job
    return job


def _rows(page: Any) -> int:
    return int(page.locator("[data-testid=bench-row]").count())


def test_model_page_shows_results_runs_and_cancels_a_benchmark(
    browser: Any,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    text = f"""
startPort: {free_port_range(4)}
models:
  echo:
    cmd: {echo_cmd("--chunk-delay 0.01")}
    description: an echo engine, benchmarked
"""
    with run_swapd(text, env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        _bench(swapd.url, {"concurrency": [1, 2, 4], "prompt_tokens": 256, "gen_tokens": 32})
        with _page(browser, "1400", "light") as page:
            page.goto(f"{swapd.url}/ui/#/models/echo")
            page.wait_for_selector("[data-testid=bench-results]")
            assert _rows(page) == 3
            first = page.locator("[data-testid=bench-row]").first.inner_text()
            assert "256" in first and "32" in first and "10,000" in first  # prompt, gen, pp tok/s

            page.fill("[data-testid=bench-concurrency]", "2")
            page.fill("[data-testid=bench-gen]", "5000")
            page.click("[data-testid=bench-start]")
            progress = page.wait_for_selector("[data-testid=bench-progress]")
            page.wait_for_function(
                "() => document.querySelector('[data-testid=bench-progress]')"
                "?.textContent.includes('concurrency 2')"
            )
            assert "requests" in progress.inner_text()
            page.locator("[data-testid=bench]").scroll_into_view_if_needed()
            _shoot(page, "model-bench-running-light-1400")
            page.click("[data-testid=bench-cancel]")
            page.wait_for_selector("[data-testid=bench-cancelled]")
            assert httpx.get(f"{swapd.url}/api/inflight").json()["requests"] == []
            assert _rows(page) == 3  # a cancelled run is not stored

            page.fill("[data-testid=bench-concurrency]", "1,8")
            page.fill("[data-testid=bench-gen]", "64")
            page.click("[data-testid=bench-start]")
            page.wait_for_function(
                "() => document.querySelectorAll('[data-testid=bench-row]').length === 5"
            )
            newest = page.locator("[data-testid=bench-row]").first.inner_text()
            assert "was ready" in newest and "64" in newest
            page.locator("[data-testid=bench]").scroll_into_view_if_needed()
            _shoot(page, "model-bench-light-1400")

            page.fill("[data-testid=bench-concurrency]", "1,64")
            page.click("[data-testid=bench-start]")
            error = page.wait_for_selector("[data-testid=bench-error]").inner_text()
            assert "concurrencyLimit 10" in error
        with _page(browser, "390", "dark") as page:
            page.goto(f"{swapd.url}/ui/#/models/echo")
            page.wait_for_selector("[data-testid=bench-results]")
            page.locator("[data-testid=bench]").scroll_into_view_if_needed()
            _shoot(page, "model-bench-dark-390")
