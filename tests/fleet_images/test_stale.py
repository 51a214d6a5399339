"""The prune plan (swapd.fleet.images.stale) and image references, without a daemon."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from swapd.fleet.images import Container, Holdings, Image, normal, repository, split, stale

REPOS = ["vllm/vllm-openai", "reg.local:5000/engine/llm", "ubuntu", "tools/x"]
tags = st.builds(
    lambda r, t: f"{r}:{t}", st.sampled_from(REPOS), st.sampled_from(["v1", "v2", "latest"])
)


@st.composite
def node_state(draw: st.DrawFn) -> tuple[Holdings, set[str], set[str]]:
    images = []
    for i in range(draw(st.integers(0, 8))):
        images.append(Image(f"sha256:{i:064x}", tuple(draw(st.sets(tags, max_size=2)))))
    ids = [i.id for i in images] + ["sha256:gone"]
    containers = tuple(
        Container(f"c{n}", draw(st.sampled_from(ids)), draw(st.booleans()))
        for n in range(draw(st.integers(0, 3)))
    )
    keep = draw(st.sets(tags, max_size=4))
    engine = draw(st.sets(st.sampled_from(REPOS), max_size=3))
    return Holdings(tuple(images), containers), keep, engine


@given(node_state(), st.sampled_from(["engine", "all"]))
def test_prune_never_takes_a_kept_or_used_image(
    state: tuple[Holdings, set[str], set[str]], scope: str
) -> None:
    held, keep, engine = state
    plan = stale(held, keep, engine, scope)  # type: ignore[arg-type]
    used = {c.image_id for c in held.containers}
    for image in plan:
        assert image.id not in used
        assert not image.refs() & keep
        if scope == "engine":
            assert image.dangling or any(repository(t) in engine for t in image.tags)
    # and every image that is neither kept nor used is in the "all" plan
    if scope == "all":
        free = [i for i in held.images if i.id not in used and not i.refs() & keep]
        assert plan == free


def test_references_are_compared_as_docker_lists_them() -> None:
    assert normal("docker.io/library/ubuntu") == "ubuntu:latest"
    assert normal("ubuntu:22.04") == "ubuntu:22.04"
    assert normal("reg.local:5000/engine/llm") == "reg.local:5000/engine/llm:latest"
    assert normal("vllm/vllm-openai@sha256:ab") == "vllm/vllm-openai@sha256:ab"
    assert repository("reg.local:5000/engine/llm:v2") == "reg.local:5000/engine/llm"
    assert repository("docker.io/vllm/vllm-openai") == "vllm/vllm-openai"
    assert split("reg.local:5000/engine/llm:v2") == ("reg.local:5000/engine/llm", "v2")
    assert split("ubuntu") == ("ubuntu", "latest")
    assert split("x/y@sha256:ab") == ("x/y", "sha256:ab")
