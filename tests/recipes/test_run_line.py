"""Item 7 of #16: the printed ``docker run`` line says everything the driver passes, ``extra``
included (TRT-LLM's ulimits), so a launch by hand behaves like swapd's."""

from __future__ import annotations

import shlex

from click.testing import CliRunner

from swapd.cli import main
from swapd.config.options import DockerOptions
from swapd.recipes import docker_run_line, load, render
from swapd.recipes.spec import extra_flags

from .shipped import SHIPPED


def test_the_trtllm_line_has_its_ulimits() -> None:
    spec = render(load("trtllm/llama-3.1-8b-instruct", [SHIPPED]), port=9000, model_id="m")
    argv = shlex.split(docker_run_line(spec, "swapd-m-9000", "1000:1000"))
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--ulimit"]
    assert pairs == ["memlock=-1:-1", "stack=67108864:67108864"]
    image = argv.index("nvcr.io/nvidia/tensorrt-llm/release:1.2.1")
    assert argv[argv.index("--entrypoint") + 1] == "/opt/nvidia/nvidia_entrypoint.sh"
    assert argv[image + 1 : image + 3] == ["bash", "-c"]
    assert argv[image + 4 : image + 6] == ["trtllm-serve", "meta-llama/Llama-3.1-8B-Instruct"]


def test_docker_py_keywords_become_docker_run_flags() -> None:
    extra = {
        "ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 4096}],
        "cap_add": ["SYS_PTRACE"],
        "devices": "/dev/infiniband:/dev/infiniband",
        "sysctls": {"net.core.somaxconn": 1024},
        "privileged": True,
        "init": False,
        "mem_limit": "64g",
        "nano_cpus": 8_000_000_000,
        "tmpfs": {"/scratch": "size=1g"},
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3},
    }
    argv, missing = extra_flags(extra)
    assert argv == [
        "--ulimit", "nofile=1024:4096",
        "--cap-add", "SYS_PTRACE",
        "--device", "/dev/infiniband:/dev/infiniband",
        "--sysctl", "net.core.somaxconn=1024",
        "--privileged",
        "--memory", "64g",
        "--cpus", "8",
        "--tmpfs", "/scratch:size=1g",
        "--restart", "on-failure:3",
    ]  # fmt: skip
    assert missing == []


def test_a_keyword_without_a_flag_is_named() -> None:
    spec = DockerOptions(image="i", extra={"ulimits": [], "storage_opt": {"size": "1G"}})
    line = docker_run_line(spec, "c")
    assert line.endswith("# extra with no docker run flag (docker-py only): storage_opt")


def test_render_prints_the_ulimits() -> None:
    out = CliRunner().invoke(main, ["recipes", "render", "trtllm/llama-3.1-8b-instruct"])
    assert out.exit_code == 0, out.output
    assert "--ulimit memlock=-1:-1 --ulimit stack=67108864:67108864" in out.output
