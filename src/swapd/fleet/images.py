"""Images: engine images per node, which the configured models need, pulling them and pruning
stale ones (``swapd images``, ``/api/images``): the image-hygiene rule as a feature.

Words, per node:

- **needed**: the image a configured ``driver: docker`` model would start with on that node —
  its ``docker.image``, or for a recipe with an image per CUDA line the line the node's NVIDIA
  driver supports (:func:`swapd.recipes.cuda.choose`, as the docker driver picks at start). A
  needed image that the node lacks is listed under ``missing``; ``pull`` fetches those.
- **kept**: every image a configured model names anywhere (each CUDA line's image too, for any
  node) — a config or recipe change never leaves prune a window to take one.
- **in use**: an image a container on that node was made from, running or stopped (Docker
  refuses to remove those too; swapd never forces).
- **stale**: neither kept nor in use, and — in the default ``engine`` scope — either dangling
  (no tag left, e.g. the old copy after a re-pull) or of an *engine repository* (a repository
  that a configured model or a catalog recipe names, e.g. ``vllm/vllm-openai:v0.8.5`` once the
  recipes moved to ``v0.9.0``). The ``all`` scope drops that last condition: every image no
  model names and no container uses (other people's images on a shared node included).

``prune`` removes exactly the stale images of the plan it computes at that moment (by tag, so
an image with several tags goes with its last one); ``dry_run`` only returns the plan.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from swapd.config.model import Config, ModelConfig, NodeConfig
from swapd.config.options import DockerOptions
from swapd.drivers.docker.clients import connect, failures, why
from swapd.recipes import cuda
from swapd.recipes.lookup import catalog, load, search_path
from swapd.recipes.model import RecipeError

log = logging.getLogger("swapd.fleet")

Scope = Literal["engine", "all"]
SCOPES: tuple[Scope, ...] = ("engine", "all")
TIMEOUT = 10.0  # seconds for list and remove calls
PULL_TIMEOUT = 600.0  # seconds without a progress line before a pull is given up
DriverOf = Callable[[NodeConfig], str | None]


# ── references ──────────────────────────────────────────────────────────────────────────────


def normal(ref: str) -> str:
    """``ref`` as Docker lists it: Docker Hub's ``docker.io/`` and ``library/`` dropped,
    ``:latest`` added when neither a tag nor a digest is given."""
    ref = ref.strip()
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    ref = ref.removeprefix("library/")
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def repository(ref: str) -> str:
    """The repository of a reference: ``normal(ref)`` without its tag or digest."""
    ref = normal(ref).split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


# ── what the config needs ───────────────────────────────────────────────────────────────────


def _docker_models(config: Config) -> Iterator[tuple[ModelConfig, DockerOptions]]:
    for model in config.models.values():
        if isinstance(model.options, DockerOptions):
            yield model, model.options


def image_on(spec: DockerOptions, node: NodeConfig, driver: DriverOf = cuda.driver_version) -> str:
    """The image ``spec`` starts with on ``node`` (the CUDA line its driver supports)."""
    if spec.images:
        return cuda.choose(spec.images, driver(node))[1]
    return spec.image


def needed(
    config: Config, node: NodeConfig, driver: DriverOf = cuda.driver_version
) -> dict[str, list[str]]:
    """Image (normalised) → the models that need it on ``node``. Blocking (driver versions)."""
    found: dict[str, list[str]] = {}
    for model, spec in _docker_models(config):
        if any(n.name == node.name for n in model.nodes) and (
            image := image_on(spec, node, driver)
        ):
            found.setdefault(normal(image), []).append(model.id)
    return found


def named(config: Config) -> set[str]:
    """Every image a configured model names (each CUDA line's too), normalised."""
    refs: set[str] = set()
    for _, spec in _docker_models(config):
        refs.update(normal(i) for i in (spec.image, *spec.images.values()) if i)
    return refs


def engine_repositories(config: Config) -> set[str]:
    """Repositories of the configured models' images and of every catalog recipe's."""
    repos = {repository(ref) for ref in named(config)}
    folder = Path(config.sources[0]).parent if config.sources else None
    dirs = search_path(folder)
    for name in catalog(dirs):
        try:
            recipe = load(name, dirs)
        except RecipeError:
            continue  # a broken recipe names nothing (swapd recipes list reports it)
        repos.update(repository(i) for i in (recipe.image, *recipe.images.values()) if i)
    return repos


# ── what a node holds ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    size: int = 0
    created: int = 0

    @property
    def dangling(self) -> bool:
        return not self.tags

    def refs(self) -> set[str]:
        return {normal(t) for t in self.tags} | {normal(d) for d in self.digests}

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Image:
        """From the Docker API's image list entry."""
        tags = tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>")
        digests = tuple(d for d in raw.get("RepoDigests") or () if not d.startswith("<none>"))
        return cls(
            raw["Id"], tags, digests, int(raw.get("Size") or 0), int(raw.get("Created") or 0)
        )


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image_id: str
    running: bool

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Container:
        names = raw.get("Names") or [raw.get("Id", "?")[:12]]
        return cls(str(names[0]).lstrip("/"), raw.get("ImageID", ""), raw.get("State") == "running")


@dataclass(frozen=True, slots=True)
class Holdings:
    images: tuple[Image, ...]
    containers: tuple[Container, ...]


def holdings(client: Any) -> Holdings:
    """The node's images (top level) and containers (any state). Blocking."""
    api = client.api
    return Holdings(
        tuple(Image.of(i) for i in api.images()),
        tuple(Container.of(c) for c in api.containers(all=True)),
    )


# ── the plan ────────────────────────────────────────────────────────────────────────────────


def stale(
    held: Holdings, keep: set[str], engine_repos: set[str], scope: Scope = "engine"
) -> list[Image]:
    """The images prune removes (pure): not named in ``keep``, not used by any container, and
    in the ``engine`` scope dangling or of an engine repository."""
    used = {c.image_id for c in held.containers}
    out = []
    for image in held.images:
        if image.id in used or image.refs() & keep:
            continue
        if (
            scope == "all"
            or image.dangling
            or any(repository(t) in engine_repos for t in image.tags)
        ):
            out.append(image)
    return out


@dataclass
class Listing:
    """One node's images with their marks, as ``GET /api/images`` shows them."""

    node: str
    reachable: bool = True
    error: str | None = None
    images: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "reachable": self.reachable,
            "error": self.error,
            "images": self.images,
            "missing": self.missing,
        }


def listing(
    node: str, held: Holdings, need: Mapping[str, list[str]], keep: set[str], engine_repos: set[str]
) -> Listing:
    """Marks per image (pure): needed by which models, in use by which containers, kept,
    stale; and the needed images the node lacks."""
    gone = {i.id for i in stale(held, keep, engine_repos)}
    images = []
    present: set[str] = set()
    for image in sorted(held.images, key=lambda i: (i.dangling, sorted(i.tags), i.id)):
        refs = image.refs()
        present |= refs
        users = [c for c in held.containers if c.image_id == image.id]
        images.append(
            {
                "id": image.id,
                "tags": list(image.tags),
                "size_bytes": image.size,
                "created": image.created,
                "needed_by": sorted({m for ref in refs & need.keys() for m in need[ref]}),
                "in_use_by": [c.name for c in users],
                "running": any(c.running for c in users),
                "kept": bool(refs & keep),
                "stale": image.id in gone,
            }
        )
    missing = [
        {"image": ref, "needed_by": models}
        for ref, models in sorted(need.items())
        if ref not in present
    ]
    return Listing(node, images=images, missing=missing)


# ── per node, against its daemon ────────────────────────────────────────────────────────────


@contextlib.contextmanager
def daemon(node: NodeConfig, timeout: float = TIMEOUT) -> Iterator[Any]:
    client = connect(node, timeout)
    try:
        yield client
    finally:
        client.close()


def list_node(config: Config, node: NodeConfig, engine_repos: set[str]) -> Listing:
    """One node's listing; an unreachable daemon gives ``reachable: false``. Blocking."""
    try:
        with daemon(node) as client:
            held = holdings(client)
    except failures() as exc:
        return Listing(node.name, reachable=False, error=why(exc))
    return listing(node.name, held, needed(config, node), named(config), engine_repos)


def prune_node(
    config: Config, node: NodeConfig, engine_repos: set[str], *, scope: Scope, dry_run: bool
) -> dict[str, Any]:
    """Remove the stale images of ``node`` (or, with ``dry_run``, say which). Blocking."""
    result: dict[str, Any] = {"node": node.name, "dry_run": dry_run, "scope": scope}
    try:
        with daemon(node) as client:
            plan = stale(holdings(client), named(config), engine_repos, scope)
            result["plan"] = [_planned(i) for i in plan]
            result["removed"], result["failed"] = [], []
            if not dry_run:
                for image in plan:
                    _remove(client, image, result)
    except failures() as exc:
        result.update(reachable=False, error=why(exc))
        return result
    result.update(reachable=True, error=None)
    result["freed_bytes"] = sum(
        i["size_bytes"] for i in result["plan"] if i["id"] in result["removed"]
    )
    return result


def _planned(image: Image) -> dict[str, Any]:
    return {"id": image.id, "tags": list(image.tags), "size_bytes": image.size}


def _remove(client: Any, image: Image, result: dict[str, Any]) -> None:
    """By tag (an image with several tags goes with its last); never forced, so Docker
    itself refuses an image a container took meanwhile."""
    from docker.errors import APIError

    try:
        for ref in image.tags or (image.id,):
            client.api.remove_image(ref, force=False, noprune=False)
    except APIError as exc:
        result["failed"].append({"id": image.id, "tags": list(image.tags), "error": why(exc)})
        return
    log.info("pruned image %s (%s)", ", ".join(image.tags) or image.id, image.id)
    result["removed"].append(image.id)


def split(ref: str) -> tuple[str, str | None]:
    """(repository, tag or digest) for the pull API."""
    ref = normal(ref)
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    head, _, last = ref.rpartition("/")
    name, _, tag = last.partition(":")
    return (f"{head}/{name}" if head else name), tag or None


def pull_node(node: NodeConfig, refs: Sequence[str]) -> Generator[dict[str, Any]]:
    """Pull ``refs`` on ``node``, yielding Docker's progress lines as they come (each with
    ``node`` and ``image``), then one ``{"node", "image", "done": true|false, "error"}`` per
    image. Blocking generator."""
    try:
        client = connect(node, PULL_TIMEOUT)
    except failures() as exc:
        for ref in refs:
            yield {"node": node.name, "image": ref, "done": False, "error": why(exc)}
        return
    try:
        for ref in refs:
            yield from _pull(client, node.name, ref)
    finally:
        client.close()


def _pull(client: Any, node: str, ref: str) -> Iterator[dict[str, Any]]:
    repo, tag = split(ref)
    error = None
    try:
        for line in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if line.get("error"):
                error = str(line.get("error"))
                break
            yield {"node": node, "image": ref, **_progress(line)}
    except failures() as exc:
        error = why(exc)
    if error is None:
        log.info("pulled image %s on node %s", ref, node)
    yield {"node": node, "image": ref, "done": error is None, "error": error}


def _progress(line: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Docker progress line worth passing on."""
    out: dict[str, Any] = {"status": str(line.get("status", ""))}
    if line.get("id"):
        out["layer"] = str(line["id"])
    detail = line.get("progressDetail") or {}
    if detail.get("total"):
        out["current"], out["total"] = int(detail.get("current") or 0), int(detail["total"])
    return out


def to_pull(config: Config, node: NodeConfig, asked: Iterable[str] = ()) -> list[str]:
    """What ``pull`` fetches on ``node``: the images asked for, else the needed ones it lacks
    (all of them when its daemon does not answer: each pull then says why). Blocking."""
    if wanted := [normal(r) for r in asked]:
        return wanted
    need = needed(config, node)
    present: set[str] = set()
    with contextlib.suppress(*failures()), daemon(node) as client:
        present = set().union(*(i.refs() for i in holdings(client).images))
    return [ref for ref in sorted(need) if ref not in present]
