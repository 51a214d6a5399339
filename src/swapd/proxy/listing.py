"""``GET /v1/models`` and ``/models``: local models, aliases, peer models, selectors, pins.

OpenAI's list shape with llama-swap's extra fields: ``name``/``description``, capability
fields rendered from ``capabilities`` (``architecture``, ``capabilities``,
``supported_parameters``, ``context_length``), ``status.value`` (loaded|unloaded) and ``meta``:
``meta.llamaswap`` (user metadata plus ``type`` model|alias|peer|selector|profile and the
internal keys, which win), the same under ``meta.swapd``, and ``meta.n_ctx``. Sorted by id;
unlisted models and selectors are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from swapd.config.model import Capabilities, Config, ProfileConfig
from swapd.config.names import fqn as peer_fqn
from swapd.routing import Routes
from swapd.views import LOADED, State

# user metadata keys dropped when `capabilities` renders them
_CAPPED = frozenset({"architecture", "capabilities", "supported_parameters", "context_length"})
_WARM = (State.READY, State.STARTING)


def capability_fields(caps: Capabilities) -> dict[str, Any]:
    """The record fields ``capabilities`` renders (empty when it is empty)."""
    out: dict[str, Any] = {}
    ins, outs = list(caps.inputs), list(caps.outputs)
    if ins or outs:
        arch: dict[str, Any] = {}
        if ins:
            arch["input_modalities"] = ins
        if outs:
            arch["output_modalities"] = outs
        if ins and outs:
            arch["modality"] = "+".join(ins) + "->" + "+".join(outs)
        out["architecture"] = arch
    flags: dict[str, bool] = {}
    if "image" in ins:
        flags["vision"] = True
    if ins and outs:
        pairs = {
            "audio_transcriptions": ("audio", "text"),
            "audio_speech": ("text", "audio"),
            "image_generation": ("text", "image"),
            "image_to_image": ("image", "image"),
        }
        for flag, (taken, given) in pairs.items():
            if taken in ins and given in outs:
                flags[flag] = True
    if caps.tools:
        flags["function_calling"] = True
        out["supported_parameters"] = ["tools", "tool_choice"]
    if caps.reranker:
        flags["reranker"] = True
    if ins or outs or caps.tools or caps.reranker:
        out["capabilities"] = flags
    if caps.context > 0:
        out["context_length"] = caps.context
    return out


def _record(
    record_id: str,
    *,
    created: int,
    owned_by: str,
    loaded: bool,
    internal: Mapping[str, Any],
    name: str = "",
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
    caps: Capabilities | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": record_id,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
    }
    if name.strip():
        record["name"] = name.strip()
    if description.strip():
        record["description"] = description.strip()
    user = dict(metadata or {})
    if caps:
        record.update(capability_fields(caps))
        user = {k: v for k, v in user.items() if k not in _CAPPED}
    meta: dict[str, Any] = {}
    tags = {**user, **internal}
    meta["llamaswap"] = tags
    meta["swapd"] = tags
    if "context_length" in record:
        meta["n_ctx"] = record["context_length"]
    record["meta"] = meta
    record["status"] = {"value": "loaded" if loaded else "unloaded"}
    return record


def models_list(
    config: Config,
    routes: Routes,
    state: Callable[[str], State | None],
    profile: ProfileConfig | None,
    *,
    allowed: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """The ``data`` of ``/v1/models``; ``allowed``: the names an API key limited to some
    models may use (swapd.proxy.auth), as in a request: a record is listed when its own
    name or the model it reaches is allowed (a selector: every target's model)."""
    if allowed is not None:
        every = models_list(config, routes, state, profile)
        return [r for r in every if _reachable(r, allowed, routes)]
    created = int(time.time())
    data: list[dict[str, Any]] = []
    taken: set[str] = set(config.models) | set(config.aliases) | set(config.selectors)
    for model in config.models.values():
        taken.update(model.aliases)
        if model.unlisted:
            continue
        loaded = state(model.id) in LOADED
        common: dict[str, Any] = {
            "created": created,
            "owned_by": "swapd",
            "loaded": loaded,
            "name": model.name,
            "description": model.description,
            "metadata": model.metadata,
            "caps": model.capabilities,
        }
        internal: dict[str, Any] = {"type": "model"}
        if model.aliases:
            internal["aliases"] = list(model.aliases)
        data.append(_record(model.id, internal=internal, **common))
        if config.include_aliases_in_list:
            for alias in model.aliases:
                if alias.strip():
                    internal = {"type": "alias", "modelID": model.id}
                    data.append(_record(alias, internal=internal, **common))
    for peer, model_id in routes.peer_models():
        fqn = peer_fqn(peer.id, model_id)
        taken.add(fqn)
        offer = routes.concrete(model_id)
        if offer is not None and offer.peer is peer:
            taken.add(model_id)  # the bare name routes to this peer
        data.append(
            _record(
                fqn,
                created=created,
                owned_by=peer.id,
                loaded=False,
                name=f"{peer.id}: {model_id}",
                internal={"type": "peer", "peerID": peer.id},
            )
        )
    for selector in config.selectors.values():
        if selector.unlisted:
            continue
        loaded = False
        for target in selector.targets:
            route = routes.concrete(target)
            if route is not None and route.model is not None:
                loaded = state(route.model.id) in _WARM
            if loaded or selector.strategy == "pin":
                break
        internal = {
            "type": "selector",
            "strategy": selector.strategy,
            "targets": list(selector.targets),
        }
        if selector.strategy == "spillover":
            internal["spillover"] = selector.spillover
        data.append(
            _record(
                selector.id,
                created=created,
                owned_by="swapd",
                loaded=loaded,
                name=selector.name,
                description=selector.description,
                metadata=selector.metadata,
                internal=internal,
            )
        )
    if profile is not None:
        for pin, pinned in profile.pins.items():
            if not pinned or pin in taken:
                continue
            route = routes.concrete(pinned)
            loaded = (
                route is not None and route.model is not None and (state(route.model.id) in LOADED)
            )
            internal = {"type": "profile", "target": pinned}
            data.append(
                _record(pin, created=created, owned_by="swapd", loaded=loaded, internal=internal)
            )
    data.sort(key=lambda r: r["id"])
    return data


def _reachable(record: dict[str, Any], allowed: Callable[[str], bool], routes: Routes) -> bool:
    """Whether a key limited by ``allowed`` may use the listed name (the proxy's rule: the
    requested name or the model it resolves to; for a selector, every target's)."""
    name: str = record["id"]
    if allowed(name):
        return True
    tags = record["meta"]["swapd"]
    kind = tags.get("type")
    if kind == "selector":
        targets = [routes.concrete(t) for t in tags.get("targets", ())]
        return bool(targets) and all(r is not None and allowed(r.key) for r in targets)
    if kind == "profile":
        route = routes.concrete(tags.get("target", ""))
        return route is not None and allowed(route.key)
    if kind == "peer":  # also by its bare name, when that name reaches this peer
        bare = name[len(tags.get("peerID", "")) + 1 :]
        offer = routes.concrete(bare)
        return offer is not None and offer.key == name and allowed(bare)
    route = routes.concrete(name)  # an alias, a bare peer name
    return route is not None and allowed(route.key)
