"""Which keys swapd reads, and their types (pydantic, at the config boundary only).

``prune`` removes the keys swapd does not read, with a warning each: keys llama-swap knows
but swapd does not implement yet, and truly unknown keys. The pydantic models below then check
the types of what is left; every error keeps its ``loc`` so it can point at the YAML text.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from swapd.config.issues import Issues
from swapd.config.tree import MapNode, Node, Path, Scalar, locate

UNSUPPORTED = "'{}' is not supported by swapd yet (ignored)"
UNKNOWN = "unknown key '{}' (ignored)"

# level -> (keys swapd reads, keys llama-swap knows that swapd ignores)
TOP = (
    {
        "healthCheckTimeout",
        "logLevel",
        "logToStdout",
        "startPort",
        "globalTTL",
        "unloadTimeout",
        "macros",
        "models",
        "groups",
        "routing",
        "hooks",
        "apiKeys",
        "sendLoadingState",
        "includeAliasesInList",
        "maxBodySize",
        "modelsDir",
        "metricsMaxInMemory",
        "store",
        "logs",
        "nodes",
    },
    {
        "profiles",
        "selectors",
        "peers",
        "matrix",
        "logTimeFormat",
        "captureBuffer",
        "ui",
        "performance",
        "upstream",
        "logRequests",
    },
)
MODEL = (
    {
        "cmd",
        "cmdStop",
        "proxy",
        "aliases",
        "env",
        "checkEndpoint",
        "ttl",
        "unloadTimeout",
        "unlisted",
        "useModelName",
        "name",
        "description",
        "concurrencyLimit",
        "filters",
        "macros",
        "metadata",
        "sendLoadingState",
        "driver",
        "kvCache",
        "recipe",
        "node",
        "sleep",
        "resources",
        "timeouts",
    },
    {"compat", "capabilities"},
)
TIMEOUTS = (
    {"connect", "responseHeader", "idleRead"},  # idleRead: swapd
    {"keepalive", "tlsHandshake", "expectContinue", "idleConn"},  # pool settings: accepted
)
FILTERS = ({"stripParams", "strip_params", "setParams"}, {"setParamsByID"})
GROUP = ({"swap", "exclusive", "persistent", "members"}, set[str]())
HOOKS = ({"on_startup"}, set[str]())
ON_STARTUP = ({"preload"}, set[str]())
ROUTING = ({"router", "scheduler"}, set[str]())
ROUTER = ({"use", "settings"}, set[str]())
ROUTER_SETTINGS = ({"groups"}, {"matrix"})
SCHEDULER = ({"use"}, {"settings"})


def _prune_level(
    node: Node | None, level: tuple[set[str], set[str]], issues: Issues, extra: str | None = None
) -> None:
    if not isinstance(node, MapNode):
        return  # wrong type: the schema reports it
    known, unsupported = level
    for key in list(node.items):
        if key in known or key == extra:
            continue
        issues.warn(node.key_pos(key), (UNSUPPORTED if key in unsupported else UNKNOWN).format(key))
        node.pop(key)


def _prune_timeouts(node: Node | None, issues: Issues) -> None:
    """Like ``_prune_level``, but llama-swap's connection-pool keys are dropped silently:
    swapd's upstream pool manages its own connections, and a config written for llama-swap
    should load without noise."""
    if not isinstance(node, MapNode):
        return
    known, pool = TIMEOUTS
    for key in list(node.items):
        if key in pool:
            node.pop(key)
        elif key not in known:
            issues.warn(node.key_pos(key), UNKNOWN.format(key))
            node.pop(key)


def driver_name(model: MapNode) -> str:
    node = model.get("driver")
    if isinstance(node, Scalar) and isinstance(node.value, str) and node.value.strip():
        return node.value.strip()
    return "docker" if model.get("recipe") is not None else "process"  # swapd: recipes


def prune(root: MapNode, issues: Issues) -> None:
    """Drop (with a warning) every key swapd does not read."""
    _prune_level(root, TOP, issues)
    models = root.get("models")
    if isinstance(models, MapNode):
        for model in models.items.values():
            if isinstance(model, MapNode):
                _prune_level(model, MODEL, issues, extra=driver_name(model))
                _prune_level(model.get("filters"), FILTERS, issues)
                _prune_timeouts(model.get("timeouts"), issues)
    groups = [root.get("groups")]
    routing = root.get("routing")
    _prune_level(routing, ROUTING, issues)
    if isinstance(routing, MapNode):
        router = routing.get("router")
        _prune_level(router, ROUTER, issues)
        _prune_level(routing.get("scheduler"), SCHEDULER, issues)
        if isinstance(router, MapNode):
            settings = router.get("settings")
            _prune_level(settings, ROUTER_SETTINGS, issues)
            if isinstance(settings, MapNode):
                groups.append(settings.get("groups"))
    for group_map in groups:
        if isinstance(group_map, MapNode):
            for group in group_map.items.values():
                _prune_level(group, GROUP, issues)
    hooks = root.get("hooks")
    _prune_level(hooks, HOOKS, issues)
    if isinstance(hooks, MapNode):
        _prune_level(hooks.get("on_startup"), ON_STARTUP, issues)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """``key:`` with no value means "use the default" (as a Go decoder treats it)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class RawFilters(_Raw):
    strip_params: str = Field("", alias="stripParams")
    strip_params_legacy: str = Field("", alias="strip_params")
    set_params: dict[str, Any] = Field(default_factory=dict, alias="setParams")


class RawKvCache(_Raw):
    persist: bool = False
    dir: str | None = None


class RawTimeouts(_Raw):
    connect: Number = 30.0
    response_header: Number = Field(0.0, alias="responseHeader")
    idle_read: Number = Field(300.0, alias="idleRead")  # swapd


class RawModelsDir(_Raw):
    paths: list[str] = Field(default_factory=list)
    cmd: str | None = None


class RawModel(_Raw):
    cmd: str | None = None
    cmd_stop: str = Field("", alias="cmdStop")
    proxy: str = ""
    aliases: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    check_endpoint: str = Field("/health", alias="checkEndpoint")
    ttl: Number = -1.0
    unload_timeout: Number = Field(0.0, alias="unloadTimeout")
    unlisted: bool = False
    use_model_name: str = Field("", alias="useModelName")
    name: str = ""
    description: str = ""
    concurrency_limit: Int = Field(0, alias="concurrencyLimit")
    filters: RawFilters = Field(default_factory=lambda: RawFilters.model_validate({}))
    metadata: dict[str, Any] = Field(default_factory=dict)
    send_loading_state: bool | None = Field(None, alias="sendLoadingState")
    driver: str = "process"
    kv_cache: RawKvCache | None = Field(None, alias="kvCache")
    recipe: str | dict[str, Any] | None = None  # swapd: NAME or {name, set, args}
    node: str | None = None
    sleep: RawSleep | None = None
    resources: RawResources | None = None
    timeouts: RawTimeouts = Field(default_factory=lambda: RawTimeouts.model_validate({}))


class RawSleep(_Raw):
    level: Int = Field(1, ge=1, le=2)


class RawResources(_Raw):
    gpus: Any = None
    gpu_memory: Any = None


class RawGpu(_Raw):
    index: Int
    memory: Any


class RawNode(_Raw):
    docker: str = ""
    gpus: list[RawGpu] | None = None


class RawGroup(_Raw):
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: list[str] = Field(default_factory=list)


class RawRouterSettings(_Raw):
    groups: dict[str, RawGroup] | None = None


class RawRouter(_Raw):
    use: str = "group"
    settings: RawRouterSettings = Field(default_factory=RawRouterSettings)


class RawScheduler(_Raw):
    use: str = "fifo"


class RawRouting(_Raw):
    router: RawRouter | None = None
    scheduler: RawScheduler = Field(default_factory=RawScheduler)


class RawOnStartup(_Raw):
    preload: list[str] = Field(default_factory=list)


class RawHooks(_Raw):
    on_startup: RawOnStartup = Field(default_factory=RawOnStartup)


class RawStore(_Raw):
    path: str | None = None


class RawLogs(_Raw):
    ring_bytes: Int | None = Field(None, alias="ringBytes", ge=1024)


class RawTop(_Raw):
    """Top-level keys except ``models`` and ``macros`` (handled on their own)."""

    health_check_timeout: Number = Field(120.0, alias="healthCheckTimeout")
    log_level: str = Field("info", alias="logLevel")
    log_to_stdout: str = Field("proxy", alias="logToStdout")
    start_port: Int = Field(5800, alias="startPort")
    global_ttl: Number = Field(0.0, alias="globalTTL")
    unload_timeout: Number = Field(10.0, alias="unloadTimeout")
    groups: dict[str, RawGroup] | None = None
    routing: RawRouting = Field(default_factory=RawRouting)
    hooks: RawHooks = Field(default_factory=RawHooks)
    api_keys: list[str] = Field(default_factory=list, alias="apiKeys")
    send_loading_state: bool = Field(False, alias="sendLoadingState")
    include_aliases_in_list: bool = Field(False, alias="includeAliasesInList")
    max_body_size: Any = Field(None, alias="maxBodySize")
    models_dir: RawModelsDir | None = Field(None, alias="modelsDir")
    metrics_max_in_memory: Int = Field(1000, alias="metricsMaxInMemory", ge=1)
    store: RawStore = Field(default_factory=RawStore)
    logs: RawLogs | None = None
    nodes: dict[str, RawNode] | None = None


_MESSAGES = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "extra_forbidden": "unknown key",
}

M = TypeVar("M", bound=BaseModel)


def _drop(data: Any, loc: tuple[int | str, ...]) -> None:
    """Remove the deepest mapping key on ``loc`` so the rest can validate with defaults."""
    parent: Any = None
    key: Any = None
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    if isinstance(parent, dict):
        parent.pop(key, None)


def validate(cls: type[M], data: dict[str, Any], root: Node, base: Path, issues: Issues) -> M:
    """``cls`` from ``data``; each wrong value is reported at its YAML position and replaced by
    its default, so the checks after this still see everything else."""
    for _ in range(20):
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                path = (*base, *(p for p in loc if isinstance(p, int | str)))
                message = _MESSAGES.get(err["type"]) or str(err["msg"]).removeprefix(
                    "Value error, "
                )
                got = err.get("input")
                scalar = isinstance(got, str | int | float)
                detail = f", got {got!r}" if scalar and err["type"] in _MESSAGES else ""
                if err["type"] == "extra_forbidden":
                    detail = ""
                pos = locate(root, path, key=err["type"] == "extra_forbidden")
                issues.error(pos, f"{'.'.join(map(str, path))}: {message}{detail}", path)
                _drop(data, loc)
    return cls.model_validate({})
