"""What a recipe's container needs settled on the node it starts on, before it is created.

The docker driver calls :func:`prepare` once it knows the node: a gated model without a Hugging
Face token is refused (permanently, with what to set) instead of failing minutes later inside
the engine; the image of the CUDA line the node's NVIDIA driver supports is chosen
(:mod:`swapd.recipes.cuda`); and :data:`NODE_HOST` becomes the node's address.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from swapd.config.model import ModelConfig, NodeConfig
from swapd.config.options import DockerOptions
from swapd.errors import StartFailed
from swapd.nodes import host_of, is_local
from swapd.recipes import cuda

log = logging.getLogger("swapd.recipes")

NODE_HOST = "${SWAPD_NODE_HOST}"  # {host} of a model that may run on several nodes
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def _token_file(spec: DockerOptions, env: Mapping[str, str]) -> bool:
    """A ``token`` file in the host folder mounted as the container's ``HF_HOME`` (what
    ``hf auth login`` writes): the engine finds it there. Checked on this machine only."""
    home = env.get("HF_HOME")
    if not home:
        return False
    sources = [
        os.path.expanduser(host)
        for host, _, rest in (v.partition(":") for v in spec.volumes)
        if rest.split(":")[0].rstrip("/") == home.rstrip("/")
    ]
    return any(os.path.isfile(os.path.join(source, "token")) for source in sources)


def has_token(spec: DockerOptions, env: Mapping[str, str], *, local: bool = True) -> bool:
    """Whether the container will have a Hugging Face token (``env`` is its environment)."""
    if any(env.get(name, "").strip() for name in TOKEN_ENV):
        return True
    return local and _token_file(spec, env)


def prepare(
    model: ModelConfig,
    spec: DockerOptions,
    node: NodeConfig,
    say: Callable[[str], None],
    driver: Callable[[NodeConfig], str | None] = cuda.driver_version,
) -> DockerOptions:
    """``spec`` made ready for ``node`` (blocking: it may ask the node's ``nvidia-smi``);
    ``say`` gets a line for the model's log. Raises :class:`StartFailed` for a gated model
    without a token."""
    env = {**model.env, **spec.env}
    if spec.gated and not has_token(spec, env, local=is_local(node)):
        where = "" if is_local(node) else f" (node {node.name}: a token file there is not seen)"
        raise StartFailed(
            model.id,
            f"model {model.id} ({model.recipe or spec.image}) is gated on Hugging Face and its "
            f"container has no HF_TOKEN{where}: accept the model's license on huggingface.co, "
            'then set docker: {env: {HF_TOKEN: "${env.HF_TOKEN}"}} in the model entry',
            permanent=True,
        )
    update: dict[str, object] = {}
    if spec.images:
        version = driver(node)
        line, image = cuda.choose(spec.images, version)
        reason = f"{cuda.why(spec.images, version, line)}: image {image}"
        say(f"[swapd] {reason}")
        log.info("%s on node %s: %s", model.id, node.name, reason)
        update["image"] = image
    host = "127.0.0.1" if is_local(node) else host_of(node)
    for key in ("command", "entrypoint"):
        argv = getattr(spec, key)
        if argv is not None and any(NODE_HOST in a for a in argv):
            update[key] = tuple(a.replace(NODE_HOST, host) for a in argv)
    if any(NODE_HOST in v for v in spec.env.values()):
        update["env"] = {k: v.replace(NODE_HOST, host) for k, v in spec.env.items()}
    return spec.model_copy(update=update) if update else spec
