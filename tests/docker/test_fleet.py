"""Fleet nodes and images against two real dockerd's as two nodes (and a dead endpoint):
``swapd nodes``, ``swapd images`` list / pull / prune through a running ``swapd serve``.

Pulls come from a Registry-v2 stand-in on 127.0.0.1 (registry.py): dockerd's own registry
client fetches manifest and blobs over plain HTTP, as it would from a private registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerlab import IMAGE, Daemon, echo_block
from registry import Registry, serving

from swapd.client import Client
from swapd.echo.gpu import FakeDevice, FakeNode, Spec
from swapd.testing import run_swapd

pytestmark = [pytest.mark.timeout(240)]

DEAD = "unix:///tmp/swapd-test-no-such-docker.sock"
GIB = 1024**3


def cli(url: str, *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "swapd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SWAPD_URL": url},
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def tags(daemon: Daemon) -> dict[str, str]:
    """Tag → image id of every image on ``daemon``, and ``<none>@id`` for dangling ones."""
    c = daemon.client()
    try:
        found = {}
        for image in c.api.images():
            for tag in image["RepoTags"] or [f"<none>@{image['Id']}"]:
                found[tag if tag != "<none>:<none>" else f"<none>@{image['Id']}"] = image["Id"]
        return found
    finally:
        c.close()


def pull(daemon: Daemon, ref: str) -> None:
    c = daemon.client()
    try:
        repo, _, tag = ref.rpartition(":")
        c.api.pull(repo, tag=tag)
    finally:
        c.close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    with serving() as reg:
        yield reg


DOCKER_ECHO = f"""  echo:
    driver: docker
    node: a
    docker: {echo_block("echo")}
"""


def images_config(
    reg: Registry, a: Daemon, b: Daemon, start_port: int, echo: str = DOCKER_ECHO
) -> str:
    """Models ``new`` (an image no node has yet), ``lines`` (an image per CUDA line, on a)
    and ``echo`` on nodes a, b and a dead one."""
    llm = f"{reg.host}/engine/llm"
    lines = json.dumps(
        {
            "image": f"{llm}:cu126",
            "images": {"cu126": f"{llm}:cu126", "cu129": f"{llm}:cu129"},
            "command": ["/payload"],
        }
    )
    return f"""
startPort: {start_port}
healthCheckTimeout: 30
nodes:
  a: {{docker: '{a.endpoint}'}}
  b: {{docker: '{b.endpoint}'}}
  dead: {{docker: '{DEAD}'}}
models:
  new:
    driver: docker
    docker: {{image: '{llm}:v2', command: [/payload]}}
  lines:
    driver: docker
    node: a
    docker: {lines}
{echo}"""


def by_tag(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {(i["tags"] or ["<none>"])[0]: i for i in listing["images"]}


def test_images_marks_pull_and_prune_across_two_daemons(
    node_a: Daemon, node_b: Daemon, registry: Registry, start_port: int
) -> None:
    llm = f"{registry.host}/engine/llm"
    for tag in ("v0", "v1", "cu126", "cu129", "old"):
        registry.add("engine/llm", tag, f"llm {tag}".encode())
        pull(node_a, f"{llm}:{tag}")
    registry.add("other/tool", "1", b"a tool")
    pull(node_a, f"{registry.host}/other/tool:1")
    registry.add("engine/llm", "old", b"llm old, rebuilt")  # the first copy is left dangling
    pull(node_a, f"{llm}:old")
    registry.add("engine/llm", "v2", b"llm v2")
    registry.add("engine/llm", "v1", b"llm v1")
    pull(node_b, f"{llm}:v1")
    c = node_a.client()
    c.api.create_container(f"{llm}:v0", command=["/payload"], name="keeps-v0")  # stopped
    c.close()
    before_a, before_b = tags(node_a), tags(node_b)
    assert sum(t.startswith("<none>") for t in before_a) == 1

    config = images_config(registry, node_a, node_b, start_port)
    with run_swapd(config, timeout=60) as swapd, Client(swapd.url) as client:
        client.start("echo", wait=True)  # a running container on a, from the echo image
        on = {n["node"]: n["models"] for n in client.nodes()}
        assert [(m["id"], m["state"]) for m in on["a"]] == [("echo", "ready")]
        assert on["b"] == [] and on["dead"] == []

        # ── list: marks per node; the dead node is unreachable, not an error
        nodes = {n["node"]: n for n in client.images()}
        assert nodes["dead"]["reachable"] is False and nodes["dead"]["error"]
        a = by_tag(nodes["a"])
        assert a[f"{llm}:cu126"]["needed_by"] == ["lines"]  # driver unknown: the oldest line
        assert a[f"{llm}:cu129"]["needed_by"] == [] and a[f"{llm}:cu129"]["kept"]
        assert a[IMAGE]["needed_by"] == ["echo"] and a[IMAGE]["running"]
        assert a[f"{llm}:v0"]["in_use_by"] == ["keeps-v0"] and not a[f"{llm}:v0"]["running"]
        assert {t for t, i in a.items() if i["stale"]} == {"<none>", f"{llm}:old", f"{llm}:v1"}
        assert not a[f"{registry.host}/other/tool:1"]["stale"]  # not an engine repository
        assert nodes["a"]["missing"] == [{"image": f"{llm}:v2", "needed_by": ["new"]}]
        assert nodes["b"]["missing"] == [{"image": f"{llm}:v2", "needed_by": ["new"]}]
        assert by_tag(nodes["b"])[f"{llm}:v1"]["stale"]

        out = cli(swapd.url, "images", "--node", "a")
        assert "node a" in out and "node b" not in out
        assert "needed (lines)" in out and "in use (keeps-v0; stopped)" in out
        assert "needed (echo); in use (swapd-echo" in out and "; running)" in out
        assert f"missing: {llm}:v2 (needed by new; swapd images pull)" in out

        # ── prune --dry-run: the plan, and nothing changes
        out = cli(swapd.url, "images", "prune", "--node", "a", "--dry-run")
        assert f"node a: would remove {llm}:v1" in out
        assert "node a: would remove <none>" in out
        assert "cu126" not in out and "cu129" not in out and "v0" not in out
        assert "echo" not in out and "other/tool" not in out
        assert tags(node_a) == before_a

        # ── pull on a through the CLI: Docker's progress lines as they come (its "Downloading"
        # lines are throttled: a tiny layer may arrive before the first one is due)
        out = cli(swapd.url, "images", "pull", "--node", "a")
        assert f"a  {llm}:v2  " in out and ": Pulling fs layer" in out
        assert "Pull complete" in out
        assert f"a  {llm}:v2  pulled" in out and out.rstrip().endswith("1 pulled, 0 failed")
        assert "HEAD /v2/engine/llm/manifests/v2" in registry.requests
        assert f"{llm}:v2" in tags(node_a) and f"{llm}:v2" not in tags(node_b)
        # then every node: a has it already, b pulls it, dead fails with the reason
        lines = list(client.pull_images())
        summary = lines[-1]["summary"]
        assert summary["pulled"] == [{"node": "b", "image": f"{llm}:v2"}]
        assert [f["node"] for f in summary["failed"]] == ["dead"]
        assert f"{llm}:v2" in tags(node_b)

        # ── prune (engine scope) on every node, then --all on a
        results = {r["node"]: r for r in client.prune_images()}
        assert results["dead"]["reachable"] is False
        removed_a = {t for t, i in before_a.items() if i in results["a"]["removed"]}
        assert f"{llm}:v1" in removed_a and any(t.startswith("<none>") for t in removed_a)
        assert results["b"]["removed"] == [before_b[f"{llm}:v1"]]
        out = cli(swapd.url, "images", "prune", "--node", "a", "--all")
        assert f"node a: removed {registry.host}/other/tool:1" in out
        after = tags(node_a)
        for kept in (f"{llm}:cu126", f"{llm}:cu129", f"{llm}:v0", f"{llm}:v2", IMAGE):
            assert kept in after, f"prune removed {kept}"
        assert not any(t.startswith("<none>") for t in after)
        assert f"{llm}:v1" not in after and f"{registry.host}/other/tool:1" not in after
        assert sorted(tags(node_b)) == sorted([IMAGE, f"{llm}:v2"])
        client.stop("echo")


def test_nodes_shows_both_daemons_gpus_disk_models_and_a_dead_endpoint(
    node_a: Daemon, node_b: Daemon, start_port: int, tmp_path: Path
) -> None:
    spec = Spec(
        {
            "a": FakeNode("a", (FakeDevice(0, "Fake H100", 80 * GIB, 10 * GIB, 37.0, 51.0),)),
            "b": FakeNode("b", (FakeDevice(0, "Fake L4", 24 * GIB, 0, None, 40.0),)),
        },
        tmp_path / "allocations",
    )
    spec.write(tmp_path / "gpus.json")
    config = f"""
startPort: {start_port}
nodes:
  a: {{docker: '{node_a.endpoint}'}}
  b: {{docker: '{node_b.endpoint}'}}
  dead: {{docker: '{DEAD}'}}
models:
  m:
    driver: docker
    node: b
    docker: {{image: '{IMAGE}', command: [/bin/false]}}
"""
    env = {"SWAPD_FAKE_GPUS": str(tmp_path / "gpus.json")}
    with run_swapd(config, env=env, timeout=60) as swapd:
        with Client(swapd.url) as client:
            found = {n["node"]: n for n in client.nodes()}
        out = cli(swapd.url, "nodes")
    assert list(found) == ["a", "b", "dead"]
    for name, daemon in (("a", node_a), ("b", node_b)):
        docker = found[name]["docker"]
        assert docker["reachable"] is True and docker["version"]
        assert docker["root_dir"] == str(daemon.root / "data")
        disk = {d["what"]: d for d in found[name]["disks"]}
        assert disk["docker root"]["free_bytes"] > 0
        assert disk["docker root"]["total_bytes"] >= disk["docker root"]["free_bytes"]
        assert disk["hf cache"]["free_bytes"] > 0
    gpu_a = found["a"]["gpus"][0]
    assert gpu_a["used_bytes"] == 10 * GIB and gpu_a["total_bytes"] == 80 * GIB
    assert (gpu_a["utilization_percent"], gpu_a["temperature_c"]) == (37.0, 51.0)
    assert found["b"]["gpus"][0]["utilization_percent"] is None
    dead = found["dead"]["docker"]
    assert dead == {"reachable": False, "error": "cannot connect: no Docker socket there"}
    version = found["a"]["docker"]["version"]
    assert f"docker: {version} (API" in out and "docker: UNREACHABLE (" in out
    assert "disk: docker root" in out and "GiB free of" in out
    assert "Fake H100" in out and "37%" in out and "51C" in out and "10.0/80.0" in out
