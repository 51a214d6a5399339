"""The names a request may use, as the config checks see them: local model ids, aliases
(``setParamsByID`` keys included) and peer models.

A peer model answers to its fully qualified name ``peer/model`` (matched as one exact string:
both parts may contain ``/``) and, when exactly one peer offers it and no local name takes it,
to its bare ``model``. Local ids and aliases win over bare peer names. Selectors and profile
pins sit on top of these (``swapd.config.virtual``).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field


def fqn(peer_id: str, model_id: str) -> str:
    """The reserved name of a peer's model."""
    return f"{peer_id}/{model_id}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a name reaches: a local model id, or a peer model (by its fully qualified name)."""

    name: str  # the real model id, or the peer model's fqn
    local: bool


@dataclass(slots=True)
class Names:
    model_ids: Set[str]
    aliases: Mapping[str, str]  # alias -> model id
    peer_models: dict[str, tuple[str, str]] = field(default_factory=dict)  # fqn -> (peer, model)
    bare: dict[str, set[str]] = field(default_factory=dict)  # model at a peer -> its fqns

    def add_peer_model(self, peer_id: str, model_id: str) -> None:
        name = fqn(peer_id, model_id)
        self.peer_models.setdefault(name, (peer_id, model_id))
        self.bare.setdefault(model_id, set()).add(name)

    def resolve(self, name: str) -> Resolved | None:
        """A local model first (id, then alias), then a peer model (fqn, then a bare name
        exactly one peer offers); None when nothing answers to ``name``."""
        if name in self.model_ids:
            return Resolved(name, True)
        if name in self.aliases:
            return Resolved(self.aliases[name], True)
        if name in self.peer_models:
            return Resolved(name, False)
        offered = self.bare.get(name, set())
        if len(offered) == 1:
            return Resolved(next(iter(offered)), False)
        return None
