"""The images and nodes routes' scopes and safe defaults, through a real swapd whose only node
has no daemon (the daemons' side is in tests/docker/test_fleet.py)."""

from __future__ import annotations

import httpx

from swapd.testing import echo_cmd, run_swapd

READ, ADMIN = "read-key-000000000000", "admin-key-00000000000"
DEAD = "unix:///tmp/swapd-test-no-such-docker.sock"


def test_a_read_key_lists_and_only_an_admin_key_pulls_or_prunes(start_port: int) -> None:
    config = f"""
startPort: {start_port}
apiKeys:
  - {{key: {READ}, name: dash, scopes: [read]}}
  - {{key: {ADMIN}, name: ops, scopes: [admin]}}
nodes:
  dead: {{docker: '{DEAD}'}}
models:
  m:
    cmd: {echo_cmd()}
"""
    with run_swapd(config) as swapd:
        read = httpx.Client(base_url=swapd.url, headers={"authorization": f"Bearer {READ}"})
        admin = httpx.Client(base_url=swapd.url, headers={"authorization": f"Bearer {ADMIN}"})
        with read, admin:
            listing = read.get("/api/images").json()["nodes"]
            assert listing == [
                {
                    "node": "dead",
                    "reachable": False,
                    "error": "cannot connect: no Docker socket there",
                    "images": [],
                    "missing": [],
                }
            ]
            nodes = read.get("/api/nodes").json()["nodes"]
            assert [n["docker"]["reachable"] for n in nodes] == [False]
            assert read.post("/api/images/prune", json={"dry_run": False}).status_code == 403
            assert read.post("/api/images/pull", json={}).status_code == 403
            # no body: a dry run, never a removal
            pruned = admin.post("/api/images/prune").json()["nodes"][0]
            assert pruned["dry_run"] is True and pruned["reachable"] is False
            assert admin.get("/api/images?node=nope").status_code == 404
            bad = admin.post("/api/images/prune", json={"scope": "everything"})
            assert bad.status_code == 400 and "scope must be one of" in bad.text
            lines = admin.post("/api/images/pull", json={"images": ["x/y:1"]}).text.splitlines()
            assert '"done": false' in lines[0] and '"summary"' in lines[-1]
