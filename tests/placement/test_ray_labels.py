"""A Ray node goes by its id (what the driver pins to) and is shown by its label: in a model's
``node_label`` whether placement chose the node or Ray did (placement off)."""

from __future__ import annotations

from swapd.assignment import Assignment
from swapd.config.model import ModelConfig
from swapd.observe.logs import LogRing
from swapd.slot import Slot
from swapd.slotinfo import info
from swapd.upstream import Upstream
from swapd.views import State

NODE = "ab" * 28  # a Ray node id


def slot(assignment: Assignment | None = None, upstream: Upstream | None = None) -> Slot:
    model = ModelConfig(id="m", cmd=("engine",), driver="ray")
    ready = State.READY
    return Slot(model, LogRing("m"), ready, upstream=upstream, assignment=assignment)


def test_a_placed_ray_model_shows_its_nodes_label_in_both_places() -> None:
    placed = slot(assignment=Assignment(NODE, (0,), label="box-b"))
    shown = info(placed, 0.0)
    assert (shown["node"], shown["node_label"]) == (NODE, "box-b")
    assert shown["placement"]["node_label"] == "box-b"


def test_a_model_ray_placed_takes_its_label_from_the_reading() -> None:
    engine = Upstream("http://10.0.0.2:4000", node=NODE)
    shown = info(slot(upstream=engine), 0.0, {NODE: "box-b"})
    assert (shown["node"], shown["node_label"], shown["placement"]) == (NODE, "box-b", None)


def test_other_nodes_have_no_label() -> None:
    shown = info(slot(), 0.0, {NODE: "box-b"})
    assert shown["node"] == "local" and "node_label" not in shown
