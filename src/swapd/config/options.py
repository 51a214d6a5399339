"""Driver options: the block named like a model's driver (``driver: docker`` + ``docker: {...}``).

``DriverOptions`` is a pydantic union discriminated on ``driver``. The built-in drivers' blocks
are checked models: ``DockerOptions`` (the container spec; a recipe renders one too),
``ProcessOptions`` (the process driver reads none: its ``cmd`` says it all) and ``RayOptions``
(the Ray resources, node and runtime environment of the actor that runs the ``cmd``). Any other
driver, a third-party plugin found through the ``swapd.drivers`` entry points, gets its block as
written, untyped, in ``PluginOptions`` (a read-only mapping): the plugin checks what it reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, TypeAdapter

from swapd.config.issues import Issues
from swapd.config.schema import Argv, Gpus, Int, Number, RawBlock, checked
from swapd.config.tree import Node, Path, locate

BUILTIN_DRIVERS = ("docker", "process", "ray")


def _volumes(value: tuple[str, ...]) -> tuple[str, ...]:
    for volume in value:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ValueError(f"expected 'host:container[:ro]', got {volume!r}")
    return value


Volumes = Annotated[tuple[str, ...], AfterValidator(_volumes)]


class BuiltinOptions(RawBlock):
    """The options of a driver swapd ships."""

    def as_dict(self) -> dict[str, Any]:
        """The keys that were given (written, or rendered from a recipe), as plain data."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"driver"}, fallback=str)


class ProcessOptions(BuiltinOptions):
    """``process:``: the process driver has no options (a key here is an error)."""

    driver: Literal["process"] = "process"


class DockerOptions(BuiltinOptions):
    """``docker:``: the container a ``driver: docker`` model runs in (``swapd.drivers.docker``).

    A model with a ``recipe`` lays its own block over the rendered one (``overlay``); ``image``
    is then required (``swapd.recipes.container`` checks it).
    """

    driver: Literal["docker"] = "docker"
    image: str = Field("", description="container image (required)")
    command: Argv = Field(
        (), description="argv (list) or a shell-words string; macros like ${PORT} apply"
    )
    entrypoint: Argv | None = Field(None, description="argv replacing the image's entrypoint")
    port: Int | None = Field(
        None, description="the engine's port inside the container (bridge networking)"
    )
    host_port: Int | None = Field(
        None, description="the port swapd reaches the engine on (default ${PORT})"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="mapping of environment variables"
    )
    volumes: Volumes = Field((), description="list of 'host:container[:ro]'")
    gpus: Gpus | None = Field(None, description="all, a count, or a list of device ids")
    shm_size: str | None = Field(None, description="e.g. 16g")
    ipc: str | None = Field(None, description="ipc mode, e.g. host")
    user: str | None = Field(None, description="uid:gid (default: swapd's own)")
    network_mode: str = Field("host", description="host (default) or bridge, …")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="any other docker-py containers.run keyword"
    )
    health: str | None = Field(
        None, description="readiness path (default: the model's checkEndpoint)"
    )
    images: dict[str, str] = Field(
        default_factory=dict,
        description="image per CUDA line ({cu129: …, cu130: …}); the node's driver picks one",
    )
    gated: bool = Field(False, description="the weights need HF_TOKEN (checked before start)")

    def overlay(self, over: DockerOptions) -> DockerOptions:
        """``over``'s given keys laid over these: ``env``/``extra`` merge, ``volumes`` add up."""
        update: dict[str, Any] = {}
        for name in over.model_fields_set - {"driver"}:
            value = getattr(over, name)
            if name in ("env", "extra"):
                value = {**getattr(self, name), **value}
            elif name == "volumes":
                value = (*self.volumes, *value)
            update[name] = value
        return self.model_copy(update=update)


def _resources(value: dict[str, float]) -> dict[str, float]:
    for name, amount in value.items():
        if not name.strip():
            raise ValueError("expected resource names, got an empty one")
        if amount < 0:
            raise ValueError(f"resource {name}: expected an amount >= 0, got {amount:g}")
    return value


RayResources = Annotated[dict[str, Number], AfterValidator(_resources)]


class RayOptions(BuiltinOptions):
    """``ray:``: the Ray actor a ``driver: ray`` model's ``cmd`` runs in (``swapd.drivers.ray``).

    ``resources`` are Ray resources the actor holds while the engine runs (``GPU``, ``CPU``,
    custom ones such as ``node:big`` or ``a100``); ``node`` pins it to a node, by Ray node id or
    by a node label value (``swapd.raycluster``); ``runtime_env`` is Ray's runtime environment
    for the actor (``env_vars``, ``pip``, ``working_dir``…), passed through as written.
    """

    driver: Literal["ray"] = "ray"
    resources: RayResources = Field(
        default_factory=dict, description="Ray resources held by the engine's actor, e.g. {GPU: 1}"
    )
    node: str | None = Field(None, description="the Ray node id or node label value to run on")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env of the actor (env_vars, pip, …)"
    )


@dataclass(frozen=True, eq=False)
class PluginOptions(Mapping[str, Any]):
    """A third-party driver's block, as written: a read-only mapping (``options.get("app")``)."""

    driver: str
    block: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.block[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.block)

    def __len__(self) -> int:
        return len(self.block)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PluginOptions):
            return (self.driver, dict(self.block)) == (other.driver, dict(other.block))
        return isinstance(other, Mapping) and dict(self.block) == dict(other)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.block)


def _tag(value: Any) -> str:
    driver = value.get("driver") if isinstance(value, dict) else getattr(value, "driver", None)
    return driver if driver in BUILTIN_DRIVERS else "plugin"


DriverOptions = Annotated[
    Annotated[DockerOptions, Tag("docker")]
    | Annotated[ProcessOptions, Tag("process")]
    | Annotated[RayOptions, Tag("ray")]
    | Annotated[PluginOptions, Tag("plugin")],
    Discriminator(_tag),
]
OPTIONS: TypeAdapter[DriverOptions] = TypeAdapter(DriverOptions)


def _data(driver: str, block: Mapping[str, Any]) -> dict[str, Any]:
    if driver in BUILTIN_DRIVERS:
        return {**block, "driver": driver}
    return {"driver": driver, "block": dict(block)}


def options_for(driver: str, given: DriverOptions | Mapping[str, Any]) -> DriverOptions:
    """``given`` as the options of a ``driver`` model: kept if they are that driver's, else
    validated from the mapping (a plugin's, or a plain dict a program passes)."""
    if isinstance(given, DockerOptions | ProcessOptions | RayOptions | PluginOptions) and (
        given.driver == driver
    ):
        return given
    if isinstance(given, BuiltinOptions):
        if given.model_fields_set - {"driver"}:
            raise ValueError(f"{given.driver} options given to a model with driver {driver!r}")
        given = {}
    return OPTIONS.validate_python(_data(driver, given))


def validate_options(
    driver: str, block: dict[str, Any], root: Node, base: Path, issues: Issues
) -> DriverOptions:
    """The options of the model at ``base`` from its ``driver`` block; each wrong value is
    reported at its YAML position (``models.<id>.<driver>.<key>``) and left at its default."""
    if driver in BUILTIN_DRIVERS and "driver" in block:
        block = dict(block)
        block.pop("driver")
        path = (*base, driver, "driver")
        issues.error(
            locate(root, path, key=True), f"models.{base[-1]}.{driver}.driver: unknown key", path
        )
    return checked(
        OPTIONS.validate_python,
        _data(driver, block),
        root,
        base,
        issues,
        fallback=_data(driver, {}),
        tagged=True,
        keys=_keys,
    )


def _keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of a built-in driver's block (``loc`` starts with the union tag)."""
    classes: dict[str, type[BuiltinOptions]] = {
        "docker": DockerOptions,
        "process": ProcessOptions,
        "ray": RayOptions,
    }
    cls = classes.get(str(loc[0]) if loc else "")
    if cls is None or len(loc) != 2:
        return []
    return [field.alias or name for name, field in cls.model_fields.items() if name != "driver"]
