"""Which engine a requested model name reaches: profiles, selectors, local models, peers.

Resolution order (llama-swap's): the active profile's pin → selector → local model id → local
alias (including ``setParamsByID`` keys) → peer model ``peer/model`` → a bare peer model that
exactly one peer offers. Local names win collisions.

This module holds the contract the proxy relies on; ``Routes`` is rebuilt from each config.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from swapd.config.model import Config, ModelConfig, PeerConfig


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    requested: str  # the name the client sent
    name: str  # the name after profile / selector rewriting (setParamsByID looks this up)
    model: ModelConfig | None = None  # a local model
    peer: PeerConfig | None = None  # or a peer ...
    peer_model: str | None = None  # ... and the model id at that peer
    selector: str | None = None  # the selector that chose this route, if any

    @property
    def local(self) -> bool:
        return self.model is not None


class Routes:
    """Name resolution over one config (local models and aliases only, for now)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def resolve(self, name: str) -> Route | None:
        """The route for a requested model name, or None when nothing answers to it."""
        model = self.config.resolve(name)
        if model is None:
            return None
        return Route(requested=name, name=name, model=model)

    def resolve_path(self, segments: list[bytes]) -> tuple[Route, int] | None:
        """For ``/upstream/<name>/<rest>``: the longest prefix of the raw path ``segments``
        that names a model (``a%2Fb`` is one segment naming ``a/b``), and how many segments
        it used. Profiles apply here; selectors do not."""
        for used in range(len(segments), 0, -1):
            name = unquote_to_bytes(b"/".join(segments[:used])).decode(errors="replace")
            if (route := self.resolve(name)) is not None:
                return route, used
        return None
