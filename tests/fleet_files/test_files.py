"""``swapd files`` against a real swapd whose ``huggingface_hub`` downloads from the local
stand-in Hub (:mod:`.hub`): pull with progress and the token, list with sizes and the models
that use each file, cancel, add-model (checked by ``swapd check``) and rm."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from swapd.cli import main
from swapd.cli.listing import size
from swapd.testing import SwapdProcess, interruptible, run_swapd, write_tiny_gguf

from .hub import Hub, serve_hub

TOKEN = "hf_test_token_1234"
MIB = 2**20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return path.read_bytes()


@pytest.fixture(scope="module")
def hub(tiny: bytes) -> Iterator[Hub]:
    repos: dict[str, dict[str, bytes | int]] = {
        "org/tiny-GGUF": {"tiny-Q8_0.gguf": tiny, "README.md": b"# tiny\n"},
        "org/big-model": {
            "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
            "model.safetensors": 24 * MIB,
        },
        "org/slow": {"slow.gguf": 64 * MIB},
    }
    with serve_hub(repos, token=TOKEN, delay=0.01) as hub:
        yield hub


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny: bytes) -> Path:
    """A Hugging Face home and a folder of GGUF files, one of them used by a model."""
    root = tmp_path_factory.mktemp("files")
    (root / "ggufs").mkdir()
    (root / "ggufs" / "used.gguf").write_bytes(tiny)
    (root / "ggufs" / "spare.gguf").write_bytes(tiny[:1000])
    return root


@pytest.fixture(scope="module")
def swapd(hub: Hub, home: Path) -> Iterator[SwapdProcess]:
    sha = hub.sha("org/tiny-GGUF")
    snapshot = home / "hf" / "hub" / "models--org--tiny-GGUF" / "snapshots" / sha
    config = (
        "models:\n"
        "  # models on this machine\n"
        "  tiny:\n"
        f"    cmd: llama-server -m {snapshot}/tiny-Q8_0.gguf --port ${{PORT}}\n"
        "  local:\n"
        f"    cmd: llama-server -m {home}/ggufs/used.gguf --port ${{PORT}}\n"
    )
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), "HF_TOKEN": TOKEN}
    with run_swapd(config, env=env) as proc:
        yield proc


def cli(swapd: SwapdProcess, *args: str) -> Result:
    return CliRunner().invoke(main, ["files", *args, "--url", swapd.url], catch_exceptions=False)


def _entry(swapd: SwapdProcess, name: str) -> dict[str, Any] | None:
    files = httpx.get(f"{swapd.url}/api/files").json()["nodes"][0]["files"]
    return next((f for f in files if name in (f["name"], f["path"])), None)


def test_pull_downloads_with_the_real_client_showing_progress_and_sending_hf_token(
    swapd: SwapdProcess, hub: Hub
) -> None:
    result = cli(swapd, "pull", "org/big-model")
    assert result.exit_code == 0, result.output
    steps = [line for line in result.output.splitlines() if line.endswith("%)")]
    assert len(steps) >= 3 and steps[-1].endswith("(100%)"), result.output
    assert "org/big-model: 2 file(s), 24.0MiB in " in result.output
    assert ("GET", "/api/models/org/big-model/revision/main?blobs=true", f"Bearer {TOKEN}") in (
        hub.requests
    )
    downloads = [r for r in hub.requests if "/resolve/" in r[1]]
    assert downloads and all(auth == f"Bearer {TOKEN}" for _, _, auth in downloads)

    result = cli(swapd, "pull", "org/tiny-GGUF:*.gguf")  # one file, by glob
    assert result.exit_code == 0, result.output
    assert "org/tiny-GGUF: 1 file(s)" in result.output


def test_list_shows_sizes_and_the_models_that_use_each_file(
    swapd: SwapdProcess, tiny: bytes, home: Path
) -> None:
    assert cli(swapd, "pull", "org/tiny-GGUF:tiny-Q8_0.gguf").exit_code == 0  # cached already
    tiny_repo = _entry(swapd, "org/tiny-GGUF")
    assert tiny_repo is not None
    assert tiny_repo["size"] == len(tiny) and tiny_repo["models"] == ["tiny"]
    assert tiny_repo["format"] == "gguf" and tiny_repo["last_used"] > time.time() - 600
    used = _entry(swapd, str(home / "ggufs" / "used.gguf"))
    spare = _entry(swapd, str(home / "ggufs" / "spare.gguf"))
    assert used is not None and used["models"] == ["local"] and used["size"] == len(tiny)
    assert spare is not None and spare["models"] == [] and spare["size"] == 1000

    table = cli(swapd).output
    row = next(line for line in table.splitlines() if line.startswith("org/tiny-GGUF"))
    assert "hf/gguf" in row and f" {size(len(tiny))} " in row and " tiny " in f"{row} "


def test_a_download_is_cancelled_and_a_missing_file_or_token_fails(
    swapd: SwapdProcess, hub: Hub
) -> None:
    with httpx.Client(base_url=swapd.url) as api:
        job = api.post("/api/files/pull", json={"repo": "org/slow"}).json()
        assert job["state"] == "running"
        while (job := api.get(f"/api/files/pulls/{job['id']}").json())["done"] == 0:
            time.sleep(0.05)
        assert api.post(f"/api/files/pulls/{job['id']}/cancel").status_code == 200
        while (job := api.get(f"/api/files/pulls/{job['id']}").json())["state"] == "running":
            time.sleep(0.05)
        assert job["state"] == "cancelled" and 0 < job["done"] < job["total"]
        assert _entry(swapd, "org/slow") is None or not _entry(swapd, "org/slow")["files"]

        missing = cli(swapd, "pull", "org/tiny-GGUF:nothing-*.gguf")
        assert missing.exit_code == 1 and "no file of org/tiny-GGUF matches" in missing.output

        hub.token = "hf_another_token"  # swapd's HF_TOKEN no longer opens the repository
        try:
            gated = cli(swapd, "pull", "org/tiny-GGUF")
        finally:
            hub.token = TOKEN
        assert gated.exit_code == 1 and "GatedRepoError" in gated.output


def test_ctrl_c_cancels_the_download_on_the_server(swapd: SwapdProcess) -> None:
    argv = [sys.executable, "-m", "swapd", "files", "pull", "org/slow", "--url", swapd.url]
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("org/slow: ") and first.rstrip().endswith("%)"), first
            proc.send_signal(signal.SIGINT)
            rest = proc.communicate(timeout=30)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "org/slow: download cancelled" in rest
    pulls = httpx.get(f"{swapd.url}/api/files/pulls").json()["pulls"]
    assert pulls[-1]["repo"] == "org/slow" and pulls[-1]["state"] == "cancelled"


def test_add_model_makes_entries_that_swapd_check_accepts(
    swapd: SwapdProcess, home: Path, tmp_path: Path
) -> None:
    for repo in ("org/tiny-GGUF", "org/big-model"):  # cached already when the tests run in order
        assert cli(swapd, "pull", repo).exit_code == 0
    gguf = cli(swapd, "add-model", "org/tiny-GGUF", "--as", "tiny-q8")
    assert gguf.exit_code == 0, gguf.output
    assert gguf.output.startswith("tiny-q8:\n  cmd: llama-server -m ")
    assert "tiny-Q8_0.gguf --port ${PORT}" in gguf.output

    spare = cli(swapd, "add-model", str(home / "ggufs" / "spare.gguf"))
    assert spare.output.startswith("spare:\n")

    vllm = cli(swapd, "add-model", "org/big-model")
    assert vllm.exit_code == 0, vllm.output
    assert "# made from vllm/generic" in vllm.output
    assert "model: org/big-model" in vllm.output and vllm.output.count("big-model:") == 1

    taken = cli(swapd, "add-model", str(home / "ggufs" / "used.gguf"), "--as", "tiny")
    assert taken.exit_code == 1 and "configured already" in taken.output

    entries = "".join(
        "".join(f"  {line}\n" for line in r.output.splitlines() if not line.startswith("#"))
        for r in (gguf, spare, vllm)
    )
    config = tmp_path / "config.yaml"
    config.write_text("models:\n" + entries)
    checked = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert checked.exit_code == 0, checked.output
    assert "tiny-q8\n" in checked.output and "big-model\n" in checked.output

    written = cli(swapd, "add-model", "org/tiny-GGUF", "--as", "tiny-q8", "--write")
    assert written.exit_code == 0, written.output
    assert f"added model tiny-q8 to {swapd.config_path}" in written.output
    text = swapd.config_path.read_text()
    assert "  # models on this machine\n  tiny:\n" in text and "\n  tiny-q8:\n    cmd: " in text
    models = httpx.get(f"{swapd.url}/api/models").json()["models"]
    assert "tiny-q8" in [m["id"] for m in models]  # reloaded


def test_an_entry_that_would_not_load_is_refused_and_the_config_is_untouched(
    swapd: SwapdProcess, home: Path, tiny: bytes
) -> None:
    odd = home / "ggufs" / "${NOPE}"  # a folder whose name reads as an unknown macro
    odd.mkdir(exist_ok=True)
    (odd / "odd.gguf").write_bytes(tiny)
    before = swapd.config_path.read_text()
    refused = cli(swapd, "add-model", str(odd / "odd.gguf"), "--write")
    assert refused.exit_code == 1, refused.output
    assert "left unchanged: the edited config would not load" in refused.output
    assert "unknown macro '${NOPE}'" in refused.output
    assert swapd.config_path.read_text() == before
    models = httpx.get(f"{swapd.url}/api/models").json()["models"]
    assert "odd" not in [m["id"] for m in models]


def test_options_of_the_listing_are_refused_before_a_command(swapd: SwapdProcess) -> None:
    result = CliRunner().invoke(main, ["files", "--url", swapd.url, "rm", "org/tiny-GGUF"])
    assert result.exit_code == 2 and "put --url after the command" in result.output


def test_rm_refuses_a_file_a_model_uses_unless_forced(swapd: SwapdProcess, home: Path) -> None:
    assert cli(swapd, "pull", "org/tiny-GGUF").exit_code == 0  # cached already in order
    refused = cli(swapd, "rm", "org/tiny-GGUF")
    assert refused.exit_code == 1 and "used by tiny" in refused.output
    assert _entry(swapd, "org/tiny-GGUF") is not None

    outside = cli(swapd, "rm", "/etc/hostname")
    assert outside.exit_code == 4 and "not a listed model file" in outside.output
    assert Path("/etc/hostname").exists()

    old = home / "ggufs" / "old.gguf"
    old.write_bytes(b"GGUF")
    assert cli(swapd, "rm", str(old)).exit_code == 0 and not old.exists()

    forced = cli(swapd, "rm", "org/tiny-GGUF", "--force")
    assert forced.exit_code == 0 and "(used by tiny" in forced.output
    assert _entry(swapd, "org/tiny-GGUF") is None
    assert not (home / "hf" / "hub" / "models--org--tiny-GGUF").exists()


def test_a_model_uses_a_repository_by_its_exact_id_or_a_path_inside_its_folder() -> None:
    from swapd.config import load_text
    from swapd.extensions import standard
    from swapd.fleet.files.listing import Entry, with_models

    config = load_text(
        "models:\n"
        "  exact:\n    cmd: vllm serve org/tiny --port ${PORT}\n"
        "  longer:\n    cmd: vllm serve org/tiny-2 --port ${PORT}\n"
        "  quant:\n    cmd: llama-server -hf org/tiny:Q4_K_M --port ${PORT}\n"
        "  path:\n    cmd: llama-server -m /hub/models--org--tiny/snapshots/a/t.gguf"
        " --port ${PORT}\n"
        "  other-path:\n    cmd: llama-server -m /hub/models--org--tiny-2/snapshots/a/t.gguf"
        " --port ${PORT}\n",
        extensions=standard(),
    )
    repo = Entry("hf", "org/tiny", "/hub/models--org--tiny", 1, None, "gguf")
    assert with_models([repo], config.models)[0].models == ["exact", "path", "quant"]


def test_the_meter_counts_a_xet_download_once_and_stops_it_when_cancelled() -> None:
    """Xet-stored files (the real Hub's) report through huggingface_hub's Xet reporter, which
    needs a CAS server to run for real: its bars are fed the reports hf_xet sends."""
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from swapd.fleet.files.pulls import Pull, PullCancelled, meter

    pull = Pull("pull-x", "org/x", None, "main", total=300)
    cls = meter(pull, 100)  # one file of 100 bytes fetched before
    with XetDownloadProgressReporter(
        reconstruction_desc="x", total=200, log_level=0, tqdm_class=cls
    ) as progress:
        for written, received in ((50, 80), (120, 200)):
            report = SimpleNamespace(
                total_bytes_completed=written,
                total_transfer_bytes_completed=received,
                total_bytes_completion_rate=1.0,
                total_transfer_bytes_completion_rate=1.0,
                total_bytes=200,
            )
            progress.update_progress(report)
        assert pull.done == 100 + 120  # written bytes, not network bytes too
        pull.cancel.set()
        report.total_bytes_completed = 150
        with pytest.raises(PullCancelled):
            progress.update_progress(report)
