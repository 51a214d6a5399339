"""Which engine a requested model name reaches: profiles, selectors, local models, peers.

Resolution order (llama-swap's): the active profile's pin → selector → local model id → local
alias (including ``setParamsByID`` keys) → peer model ``peer/model`` → a bare peer model that
exactly one peer offers. Local names win collisions. A pin is applied once (its target is not
pinned again) but may name a selector; a selector's target is never a selector.

Selector strategies choose per request from the scheduler's read-only state:

- ``pin``: always the first target;
- ``warm``: the first target that is ready, else the first starting, else the first sleeping
  (waking is cheaper than a cold start), else the first target;
- ``spillover``: reservation counters per selector target, taken when chosen and given back when
  the request ends (:meth:`Routes.release`). Targets that are ready/starting or hold
  reservations are *active*, stopped ones (and peers without reservations) *cold*, stopping ones
  skipped. No active target → the first cold one; the least-busy active one while it holds fewer
  than ``spillover`` requests (round-robin among ties); else the first cold one; else the
  least-busy active one. Nothing at all → 503.

``Routes`` is rebuilt from each config (and active profile); the counters (:class:`Spillover`)
and the active profile (:class:`ActiveProfile`) live in the proxy across rebuilds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import unquote_to_bytes

from swapd.config.model import Config, ModelConfig, PeerConfig, ProfileConfig, SelectorConfig
from swapd.config.names import Names, fqn
from swapd.errors import NotFound, SelectorUnavailable
from swapd.views import State

StateOf = Callable[[str], State | None]  # a local model's state (the scheduler's `state`)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    requested: str  # the name the client sent
    name: str  # the name after profile / selector rewriting (setParamsByID looks this up)
    model: ModelConfig | None = None  # a local model
    peer: PeerConfig | None = None  # or a peer ...
    peer_model: str | None = None  # ... and the model id at that peer
    selector: str | None = None  # the selector that chose this route, if any
    reserved: str | None = None  # spillover: the counter taken, given back by Routes.release

    @property
    def local(self) -> bool:
        return self.model is not None

    @property
    def key(self) -> str:
        """The model's identity: the local model id, or the peer model's ``peer/model``."""
        if self.model is not None:
            return self.model.id
        assert self.peer is not None and self.peer_model is not None
        return fqn(self.peer.id, self.peer_model)

    @property
    def upstream_model(self) -> str:
        """The ``model`` the upstream is sent: the peer's own id, else the rewritten name."""
        return self.peer_model if self.peer_model is not None else self.name


class Spillover:
    """Reservation counters of spillover selectors: selector id → model key → requests."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._turn: dict[str, int] = {}  # round-robin position among ties, per selector

    def count(self, selector: str, key: str) -> int:
        return self._counts.get(selector, {}).get(key, 0)

    def reserve(self, selector: str, key: str) -> None:
        counts = self._counts.setdefault(selector, {})
        counts[key] = counts.get(key, 0) + 1

    def release(self, selector: str, key: str) -> None:
        counts = self._counts.get(selector, {})
        if counts.get(key, 0) > 0:
            counts[key] -= 1

    def turn(self, selector: str) -> int:
        """The next round-robin number for ``selector`` (0, 1, 2, …)."""
        n = self._turn.get(selector, 0)
        self._turn[selector] = n + 1
        return n


class ActiveProfile:
    """The one active profile, or none. It belongs to one config object: every reload (a new
    ``Config``) resets it to none, as a restart does."""

    def __init__(self) -> None:
        self._name: str | None = None
        self._config: Config | None = None

    def name(self, config: Config) -> str | None:
        if config is not self._config:
            self._config, self._name = config, None
        return self._name

    def get(self, config: Config) -> ProfileConfig | None:
        name = self.name(config)
        return config.profiles.get(name) if name is not None else None

    def set(self, config: Config, name: str | None) -> bool:
        """Activate ``name`` (None or "" = none); whether it changed. Unknown → NotFound."""
        if name and name not in config.profiles:
            raise NotFound(f'profile "{name}" not found')
        before = self.name(config)
        self._name = name or None
        return before != self._name


class Routes:
    """Name resolution over one config, with the active profile and selector state."""

    def __init__(
        self,
        config: Config,
        *,
        profile: ProfileConfig | None = None,
        state: StateOf | None = None,
        spillover: Spillover | None = None,
    ) -> None:
        self.config = config
        self.profile = profile
        self._state: StateOf = state or (lambda _model_id: None)
        self.spillover = spillover if spillover is not None else Spillover()
        # the loader's own resolution rules (local first, then `peer/model`, then a bare name
        # exactly one peer offers), over this config
        self._names = Names(config.models.keys(), config.aliases)
        for peer, model in self.peer_models():
            self._names.add_peer_model(peer.id, model)

    # ── names ───────────────────────────────────────────────────────────────────────────────

    def concrete(self, name: str) -> Route | None:
        """A model or peer model by id, alias, ``peer/model`` or unique bare peer name; no
        profile, no selector (what management endpoints use)."""
        found = self._names.resolve(name)
        if found is None:
            return None
        if found.local:
            return Route(requested=name, name=name, model=self.config.models[found.name])
        peer_id, model = self._names.peer_models[found.name]
        return Route(requested=name, name=name, peer=self.config.peers[peer_id], peer_model=model)

    def peer_models(self) -> Iterator[tuple[PeerConfig, str]]:
        """Every (peer, model at the peer), peers sorted, duplicates dropped."""
        for peer_id in sorted(self.config.peers):
            peer = self.config.peers[peer_id]
            for model in dict.fromkeys(peer.models):
                yield peer, model

    def resolve(self, name: str) -> Route | None:
        """The route for a requested model name, or None when nothing answers to it.

        Raises :class:`NotFound` for a name the active profile disables and
        :class:`SelectorUnavailable` when a spillover selector has no target left. A route
        with ``reserved`` set must be given back with :meth:`release` when the request ends.
        """
        target = name
        if self.profile is not None and name in self.profile.pins:
            pinned = self.profile.pins[name]
            if not pinned:
                raise NotFound(
                    f"model {name!r} is disabled by the active profile {self.profile.id!r}"
                )
            target = pinned
        selector = self.config.selectors.get(target)
        if selector is not None:
            return self._select(name, selector)
        route = self.concrete(target)
        if route is None or target == name:  # (concrete's route names what was asked)
            return route
        return replace(route, requested=name, name=target)

    def release(self, route: Route) -> None:
        """Give back a spillover reservation (once per resolved route)."""
        if route.selector is not None and route.reserved is not None:
            self.spillover.release(route.selector, route.reserved)

    def resolve_path(self, segments: list[bytes]) -> tuple[Route, int] | None:
        """For ``/upstream/<name>/<rest>``: the longest prefix of the raw path ``segments``
        that names a model (``a%2Fb`` is one segment naming ``a/b``), and how many segments
        it used. Profiles apply here (the longest pinned prefix first); selectors do not."""
        names = [
            unquote_to_bytes(b"/".join(segments[:used])).decode(errors="replace")
            for used in range(len(segments), 0, -1)
        ]
        if self.profile is not None:
            for used, name in zip(range(len(segments), 0, -1), names, strict=True):
                if name in self.profile.pins:
                    target = self.profile.pins[name]
                    route = self.concrete(target) if target else None
                    if route is None:
                        return None
                    return replace(route, requested=name, name=target or name), used
        for used, name in zip(range(len(segments), 0, -1), names, strict=True):
            if (route := self.concrete(name)) is not None:
                return route, used
        return None

    # ── selectors ───────────────────────────────────────────────────────────────────────────

    def _target(self, requested: str, selector: SelectorConfig, target: str) -> Route:
        route = self.concrete(target)
        if route is None:  # the loader rejects this; a clear 503 if it slipped through
            raise SelectorUnavailable(
                f'selector "{selector.id}" target "{target}" names no model or peer model'
            )
        return replace(route, requested=requested, name=target, selector=selector.id)

    def _select(self, requested: str, selector: SelectorConfig) -> Route:
        if not selector.targets:
            raise SelectorUnavailable(f'selector "{selector.id}" has no targets')
        if selector.strategy == "pin":
            return self._target(requested, selector, selector.targets[0])
        candidates = [self._target(requested, selector, t) for t in selector.targets]
        if selector.strategy == "warm":
            for wanted in (State.READY, State.STARTING, State.SLEEPING):
                for route in candidates:
                    if route.model is not None and self._state(route.model.id) is wanted:
                        return route
            return candidates[0]
        return self._spill(selector, candidates)

    def _spill(self, selector: SelectorConfig, candidates: list[Route]) -> Route:
        counts = self.spillover
        active: list[Route] = []
        cold: list[Route] = []
        for route in candidates:
            held = counts.count(selector.id, route.key)
            if route.model is None:
                (active if held else cold).append(route)
                continue
            state = self._state(route.model.id)
            if state is State.STOPPING:
                continue
            if state in (State.READY, State.STARTING) or held:
                active.append(route)
            else:  # stopped, failed, sleeping, or not known to the scheduler yet
                cold.append(route)
        if not active and not cold:
            raise SelectorUnavailable(
                f'selector "{selector.id}" has no available spillover targets'
            )
        if not active:
            chosen = cold[0]
        elif min(counts.count(selector.id, r.key) for r in active) < selector.spillover:
            chosen = self._least_busy(selector.id, active)
        elif cold:
            chosen = cold[0]
        else:
            chosen = self._least_busy(selector.id, active)
        counts.reserve(selector.id, chosen.key)
        return replace(chosen, reserved=chosen.key)

    def _least_busy(self, selector: str, active: list[Route]) -> Route:
        counts = self.spillover
        least = min(counts.count(selector, r.key) for r in active)
        tied = [r for r in active if counts.count(selector, r.key) == least]
        return tied[counts.turn(selector) % len(tied)]
