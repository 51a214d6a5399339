"""``peers``: remote OpenAI-compatible servers and the names their models reserve.

Every peer model is ``<peer>/<model>``; those fully qualified names are reserved: a model id,
an alias, a selector id or a profile pin equal to one is an error, and so are two peers whose
names produce the same one (``a`` + ``b/c`` and ``a/b`` + ``c``).
"""

from __future__ import annotations

from collections.abc import Mapping

from swapd.config.build import Builder, valid_url
from swapd.config.model import PeerConfig
from swapd.config.names import Names, fqn
from swapd.config.schema import RawPeer, RawTop
from swapd.config.tree import Path


def build_peers(
    builder: Builder, peers: Mapping[str, RawPeer], names: Names
) -> dict[str, PeerConfig]:
    """Each peer, checked; its models are added to ``names``."""
    built: dict[str, PeerConfig] = {}
    owner: dict[str, tuple[str, str]] = {}  # fqn -> (peer, model) that took it first
    for peer_id in sorted(peers):
        raw = peers[peer_id]
        base: Path = ("peers", peer_id)
        if not peer_id.strip():
            builder.error(base, "peers: peer names cannot be empty", key=True)
            continue
        if not raw.proxy:
            builder.error(base, f"peer {peer_id}: proxy is required", key=True)
        elif not valid_url(raw.proxy):
            builder.error(
                (*base, "proxy"),
                f"peer {peer_id}: invalid peer proxy URL '{raw.proxy}' "
                "(expected http://host[:port][/path] or https://…)",
            )
        models: list[str] = []
        for i, model_id in enumerate(raw.models):
            if not model_id.strip():
                builder.error((*base, "models", i), f"peer {peer_id}: empty model name")
                continue
            if model_id in models:
                continue  # duplicates are dropped, as in llama-swap
            name = fqn(peer_id, model_id)
            if name in owner:
                other_peer, other_model = owner[name]
                builder.error(
                    (*base, "models", i),
                    f'peer model name "{name}" is ambiguous between peers.{other_peer} model '
                    f'"{other_model}" and peers.{peer_id} model "{model_id}"',
                )
                continue
            owner[name] = (peer_id, model_id)
            models.append(model_id)
            names.add_peer_model(peer_id, model_id)
        if not raw.models:
            where = (*base, "models") if "models" in raw.model_fields_set else base
            builder.error(where, f"peer {peer_id}: peer models can not be empty", key=True)
        built[peer_id] = PeerConfig(
            id=peer_id,
            proxy=raw.proxy,
            api_key=raw.api_key,
            models=tuple(models),
            filters=builder.filters(raw.filters),
            timeouts=builder.timeouts(base, f"peer {peer_id}", raw.timeouts),
        )
    return built


def check_namespace(
    builder: Builder, top: RawTop, names: Names, alias_paths: Mapping[str, tuple[str, Path]]
) -> None:
    """No local name may take a peer model's fully qualified name.

    ``alias_paths``: alias -> (its model, where it was written)."""
    for name in sorted(names.peer_models):
        if name in names.model_ids:
            builder.error(
                ("models", name),
                f'model ID "{name}" conflicts with fully qualified peer model name',
                key=True,
            )
        if name in alias_paths:
            model_id, path = alias_paths[name]
            builder.error(
                path,
                f'model {model_id} alias "{name}" conflicts with fully qualified peer model name',
                key=path[-2] == "setParamsByID",
            )
        if name in top.selectors:
            builder.error(
                ("selectors", name),
                f'selector ID "{name}" conflicts with fully qualified peer model name',
                key=True,
            )
        for profile_id, profile in top.profiles.items():
            if name in profile.pins:
                builder.error(
                    ("profiles", profile_id, "pins", name),
                    f'profile {profile_id} pin "{name}" conflicts with fully qualified peer '
                    "model name",
                    key=True,
                )
