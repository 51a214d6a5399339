"""A node the inventory names by an id (a Ray node) is shown by its readable label, and the
models pinned to it by that label or its address are listed on it."""

from __future__ import annotations

from swapd.fleet.nodes import one
from swapd.inventory import NodeReading

NODE_ID = "4f" * 28  # a Ray node id


def _ray_node() -> NodeReading:
    return NodeReading(
        node=NODE_ID,
        devices=(),
        memory=None,
        sources=(),
        local=False,
        cluster="ray",
        label="big-box",
        aliases=("10.0.0.7", "big-box"),
    )


def test_a_ray_node_has_its_label_and_the_models_named_by_any_of_its_names() -> None:
    models = [
        {"id": "by-label", "state": "ready", "node": "big-box"},
        {"id": "by-ip", "state": "starting", "node": "10.0.0.7"},
        {"id": "by-id", "state": "ready", "node": NODE_ID},
        {"id": "elsewhere", "state": "ready", "node": "small"},
        {"id": "stopped", "state": "stopped", "node": "big-box"},
    ]
    row = one(NODE_ID, None, _ray_node(), None, models)
    assert row["node"] == NODE_ID and row["label"] == "big-box"
    assert [m["id"] for m in row["models"]] == ["by-label", "by-ip", "by-id"]


def test_a_node_known_by_its_name_has_no_label() -> None:
    assert one("gpu-box", None, None, None, [])["label"] is None
