"""The config schema: every key swapd reads, its type and its default (pydantic).

The pydantic models below are the only list of keys. ``prune`` walks the YAML tree along them
before validation: in a block llama-swap defines (``LENIENT``), a key the model does not have
is dropped with an "unknown key" warning (with "did you mean" for a near miss of a known key);
a few llama-swap keys that have no meaning in swapd are dropped silently (``ACCEPTED``). Every
key llama-swap defines is read. In swapd's own blocks an unknown key is an error (with the same
suggestion). Validation then checks the types of what is left; every error keeps its ``loc`` so
it can point at the YAML text.

Defaults live here too; ``swapd.config.model`` takes its defaults from these fields.
"""

from __future__ import annotations

import difflib
import re
import shlex
import types
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from swapd.config.issues import Issues
from swapd.config.tree import MapNode, Node, Path, Scalar, SeqNode, locate

UNKNOWN = "unknown key '{}' (ignored)"
SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*\Z", re.IGNORECASE)


def parse_size(value: Any) -> int | None:
    """Bytes for ``32MiB``, ``10MB``, ``512k`` or a plain integer; None if it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    m = SIZE.match(str(value)) if isinstance(value, str) else None
    if m is None:
        return None
    unit = (m.group(2) or "").lower()
    base = 1000 if unit.endswith("b") and len(unit) == 2 else 1024  # kB/MB/GB: decimal
    factor = 1 if unit in ("", "b") else base ** ("kmgt".index(unit[0]) + 1)
    size = int(float(m.group(1)) * factor)
    return size if size > 0 else None


def driver_name(model: MapNode) -> str:
    node = model.get("driver")
    if isinstance(node, Scalar) and isinstance(node.value, str) and node.value.strip():
        return node.value.strip()
    return "docker" if model.get("recipe") is not None else "process"  # swapd: recipes


def _nested(annotation: Any) -> tuple[bool, type[RawBlock]] | None:
    """``(each, cls)`` when a field holds a block (``cls``) or a mapping of blocks (``each``)."""
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            if (found := _nested(arg)) is not None:
                return found
        return None
    if get_origin(annotation) is dict:
        inner = get_args(annotation)[1]
        return (True, inner) if isinstance(inner, type) and issubclass(inner, RawBlock) else None
    if isinstance(annotation, type) and issubclass(annotation, RawBlock):
        return (False, annotation)
    return None


def _prune_block(node: Node | None, cls: type[RawBlock], issues: Issues, keep: str = "") -> None:
    if not isinstance(node, MapNode) or not cls.LENIENT:
        return  # wrong type: validation reports it; a strict block: unknown keys are errors
    fields = {field.alias or name: field for name, field in cls.model_fields.items()}
    for key in list(node.items):
        if key in cls.HANDLED or key == keep:
            continue
        if key in fields:
            nested = _nested(fields[key].annotation)
            child = node.get(key)
            if nested is not None and isinstance(child, MapNode):
                each, inner = nested
                for sub in child.items.values() if each else [child]:
                    _prune_block(sub, inner, issues)
            continue
        if key not in cls.ACCEPTED:
            issues.warn(node.key_pos(key), UNKNOWN.format(key) + suggest(key, known_keys(cls)))
        node.pop(key)


def known_keys(cls: type[RawBlock]) -> list[str]:
    """The keys a block may have, as written in YAML."""
    fields = [field.alias or name for name, field in cls.model_fields.items()]
    return [*fields, *sorted(cls.HANDLED | cls.ACCEPTED)]


def suggest(key: str, known: list[str]) -> str:
    """``; did you mean 'ttl'?`` for a misspelled key, else ``""``."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


def _keys_at(cls: type[RawBlock], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where a validation error's ``loc`` points (its last part is the key)."""
    annotation: Any = cls
    for part in loc[:-1]:
        found = _nested(annotation)
        if found is None:
            return []
        each, inner = found
        if each and isinstance(part, str):
            annotation = inner  # the id under a mapping of blocks
            continue
        fields = {field.alias or name: field for name, field in inner.model_fields.items()}
        if not isinstance(part, str) or part not in fields:
            return []
        annotation = fields[part].annotation
    found = _nested(annotation)
    return known_keys(found[1]) if found is not None and not found[0] else []


LEGACY_PROFILE = (
    "profile must be a mapping with description and pins; "
    "the legacy list syntax is no longer supported"
)


def _drop_legacy_profiles(root: MapNode, issues: Issues) -> None:
    """llama-swap's removed ``profiles: {name: [model, …]}`` form: a warning, then ignored."""
    profiles = root.get("profiles")
    if not isinstance(profiles, MapNode):
        return
    for name, profile in list(profiles.items.items()):
        if isinstance(profile, SeqNode) or (isinstance(profile, Scalar) and profile.value):
            issues.warn(profiles.key_pos(name), f"profiles.{name}: {LEGACY_PROFILE} (ignored)")
            profiles.pop(name)


def prune(root: MapNode, issues: Issues) -> None:
    """Drop every key swapd does not read (with a warning, unless it is ``ACCEPTED``)."""
    _prune_block(root, RawTop, issues)
    _drop_legacy_profiles(root, issues)
    models = root.get("models")
    if isinstance(models, MapNode):
        for model in models.items.values():
            if isinstance(model, MapNode):  # the block named like the driver is its options
                _prune_block(model, RawModel, issues, keep=driver_name(model))


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r} into arguments: {exc}") from None
    return value


def _gpus(value: Any) -> Any:
    if value == "all":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, list | tuple) and not any(
        isinstance(g, bool | dict | list) for g in value
    ):
        return tuple(str(g) for g in value)
    raise ValueError(f"expected all, a count or a list of device ids, got {value!r}")


Number = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]
# argv: a list of arguments, or one string split like a shell does (``"serve --port 8000"``)
Argv = Annotated[tuple[str, ...], BeforeValidator(_argv)]
# GPUs of a container: ``all``, a count, or a list of device ids
Gpus = Annotated[Literal["all"] | int | tuple[str, ...], BeforeValidator(_gpus)]


class RawBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    LENIENT: ClassVar[bool] = False  # a llama-swap block: unknown keys warn instead of failing
    ACCEPTED: ClassVar[frozenset[str]] = frozenset()  # llama-swap keys dropped without a word
    HANDLED: ClassVar[frozenset[str]] = frozenset()  # keys another load stage reads

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """``key:`` with no value means "use the default" (as a Go decoder treats it)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class RawFilters(RawBlock):
    LENIENT = True

    strip_params: str = Field("", alias="stripParams")
    strip_params_legacy: str = Field("", alias="strip_params")
    set_params: dict[str, Any] = Field(default_factory=dict, alias="setParams")
    # requested id -> params; keys are macro-expanded (swapd.config.macros)
    set_params_by_id: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="setParamsByID")


class RawCapabilities(RawBlock):
    LENIENT = True

    inputs: list[str] = Field(default_factory=list, alias="in")
    outputs: list[str] = Field(default_factory=list, alias="out")
    tools: bool = False
    reranker: bool = False
    context: Int = 0


class RawCompat(RawBlock):
    LENIENT = True

    ignore_websockets: bool = Field(False, alias="ignoreWebsockets")


class RawKvCache(RawBlock):
    persist: bool = False
    dir: str | None = None


class RawTimeouts(RawBlock):
    LENIENT = True
    ACCEPTED = frozenset({"keepalive", "tlsHandshake", "expectContinue", "idleConn"})

    connect: Number = 30.0
    response_header: Number = Field(0.0, alias="responseHeader")
    idle_read: Number = Field(300.0, alias="idleRead")  # swapd


class RawModelsDir(RawBlock):
    paths: list[str] = Field(default_factory=list)
    cmd: str | None = None


class RawSleep(RawBlock):
    level: Int = Field(1, ge=1, le=2)


class RawResources(RawBlock):
    gpus: Gpus | None = None  # all | a count (0: a CPU engine, system RAM) | device ids
    memory: Any = None  # swapd: a size, the model's total need (split over its GPUs)
    gpu_memory: Any = None  # the same, older name
    devices: list[Int] | None = None  # swapd: device indices the model may use


class RawModel(RawBlock):
    LENIENT = True
    HANDLED = frozenset({"macros"})

    cmd: str | None = None
    cmd_stop: str = Field("", alias="cmdStop")
    proxy: str = ""
    aliases: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    check_endpoint: str = Field("/health", alias="checkEndpoint")
    ttl: Number = -1.0  # -1: globalTTL
    unload_timeout: Number = Field(0.0, alias="unloadTimeout")  # 0: the global one
    unlisted: bool = False
    use_model_name: str = Field("", alias="useModelName")
    name: str = ""
    description: str = ""
    concurrency_limit: Int = Field(10, alias="concurrencyLimit")  # 0 or less: this default
    filters: RawFilters = Field(default_factory=lambda: RawFilters.model_validate({}))
    metadata: dict[str, Any] = Field(default_factory=dict)
    send_loading_state: bool | None = Field(None, alias="sendLoadingState")
    driver: str = "process"
    kv_cache: RawKvCache | None = Field(None, alias="kvCache")
    recipe: str | dict[str, Any] | None = None  # swapd: NAME or {name, set, args}
    node: str | None = None
    sleep: RawSleep | None = None
    resources: RawResources | None = None
    swappable: bool = True  # swapd: false = never evicted to make room
    timeouts: RawTimeouts = Field(default_factory=lambda: RawTimeouts.model_validate({}))
    capabilities: RawCapabilities = Field(
        default_factory=lambda: RawCapabilities.model_validate({})
    )
    compat: RawCompat = Field(default_factory=lambda: RawCompat.model_validate({}))


class RawGpu(RawBlock):
    index: Int
    memory: Any


class RawNode(RawBlock):
    docker: str = ""
    gpus: list[RawGpu] | None = None


class RawGroup(RawBlock):
    LENIENT = True

    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: list[str] = Field(default_factory=list)


class RawMatrix(RawBlock):
    """The matrix router's block; its DSL is checked by ``swapd.config.matrix``."""

    LENIENT = True

    vars: dict[str, str] = Field(default_factory=dict)
    evict_costs: dict[str, Any] = Field(default_factory=dict)
    sets: dict[str, str] = Field(default_factory=dict)  # in written order


class RawRouterSettings(RawBlock):
    LENIENT = True

    groups: dict[str, RawGroup] | None = None
    matrix: RawMatrix | None = None


class RawRouter(RawBlock):
    LENIENT = True

    use: str = "group"
    settings: RawRouterSettings = Field(default_factory=RawRouterSettings)


class RawFifo(RawBlock):
    LENIENT = True

    priority: dict[str, Int] = Field(default_factory=dict)  # model id or alias -> priority


class RawSchedulerSettings(RawBlock):
    LENIENT = True

    fifo: RawFifo = Field(default_factory=lambda: RawFifo.model_validate({}))


class RawScheduler(RawBlock):
    LENIENT = True

    use: str = "fifo"
    settings: RawSchedulerSettings = Field(
        default_factory=lambda: RawSchedulerSettings.model_validate({})
    )


class RawRouting(RawBlock):
    LENIENT = True

    router: RawRouter | None = None
    scheduler: RawScheduler = Field(default_factory=RawScheduler)


class RawOnStartup(RawBlock):
    LENIENT = True

    preload: list[str] = Field(default_factory=list)


class RawHooks(RawBlock):
    LENIENT = True

    on_startup: RawOnStartup = Field(default_factory=RawOnStartup)


class RawPeerTimeouts(RawTimeouts):
    response_header: Number = Field(60.0, alias="responseHeader")  # as llama-swap's peers


class RawPeer(RawBlock):
    LENIENT = True

    proxy: str = ""
    api_key: str = Field("", alias="apiKey")
    models: list[str] = Field(default_factory=list)
    filters: RawFilters = Field(default_factory=lambda: RawFilters.model_validate({}))
    timeouts: RawPeerTimeouts = Field(default_factory=lambda: RawPeerTimeouts.model_validate({}))


class RawProfile(RawBlock):
    LENIENT = True

    description: str = ""
    pins: dict[str, str | None] = Field(default_factory=dict)  # None / "": disabled


class RawSelectorSettings(RawBlock):
    LENIENT = True

    spillover: Int = 1


class RawSelector(RawBlock):
    LENIENT = True

    strategy: str = ""
    targets: list[str] = Field(default_factory=list)
    settings: RawSelectorSettings = Field(
        default_factory=lambda: RawSelectorSettings.model_validate({})
    )
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class RawUpstream(RawBlock):
    LENIENT = True

    ignore_paths: list[str] = Field(default_factory=list, alias="ignorePaths")  # [] = default
    # swapd: /upstream paths that need the admin (any method) or read (GET/HEAD) scope
    admin_paths: list[str] | None = Field(None, alias="adminPaths")  # None = the default
    read_paths: list[str] | None = Field(None, alias="readPaths")


def _scope_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class RawApiKey(RawBlock):
    """An ``apiKeys`` entry written as a mapping (swapd); a plain string is a full-access key."""

    key: str = ""  # required: checked by swapd.config.keys
    name: str = ""  # "" = key-N
    scopes: Annotated[list[str], BeforeValidator(_scope_list)] | None = None  # None = inference
    models: Annotated[list[str], BeforeValidator(_scope_list)] | None = None  # None = all


class RawUiActivity(RawBlock):
    LENIENT = True

    session_id: list[str] = Field(default_factory=lambda: ["X-Session-ID", "X-Litellm-Session-Id"])


class RawUi(RawBlock):
    LENIENT = True

    activity: RawUiActivity = Field(default_factory=lambda: RawUiActivity.model_validate({}))


class RawPerformance(RawBlock):
    LENIENT = True

    disabled: bool = False
    every: str = "5s"  # a Go duration, at least 5s


class RawStore(RawBlock):
    path: str | None = None


class RawLogs(RawBlock):
    ring_bytes: Int | None = Field(None, alias="ringBytes", ge=1024)


class RawServer(RawBlock):
    """``server:`` (swapd): limits and trust at swapd's own HTTP edge."""

    max_header_bytes: Any = Field("64KiB", alias="maxHeaderBytes")  # bytes, or a size: 64KiB
    header_timeout: Number = Field(10.0, alias="headerTimeout", gt=0)  # s to send the headers
    keepalive_timeout: Number = Field(5.0, alias="keepAliveTimeout", gt=0)  # s idle keep-alive
    max_connections: Int = Field(0, alias="maxConnections", ge=0)  # 0: from RLIMIT_NOFILE
    max_json_depth: Int = Field(128, alias="maxJsonDepth", ge=1)  # nesting of a JSON body
    allowed_hosts: list[str] = Field(default_factory=list, alias="allowedHosts")  # "*": any
    trusted_proxies: list[str] = Field(default_factory=list, alias="trustedProxies")  # IPs/CIDRs
    workers: Int = Field(0, ge=0, le=64)  # data-plane worker processes; 0: one process


class RawPlacement(RawBlock):
    """``placement:`` (swapd): memory-aware placement and eviction."""

    enabled: Literal["auto"] | bool = "auto"  # auto: on when GPUs are seen or memory declared
    headroom: Any = "512MiB"  # kept free on every device
    refresh: Number = Field(10.0, gt=0)  # seconds between inventory refreshes


class RawOllama(RawBlock):
    """``ollama:`` (swapd): the opt-in Ollama-compatible API (swapd.proxy.ollama)."""

    enabled: bool = False
    version: str = "0.12.0"  # what GET /api/version reports; Copilot wants >= 0.6.4


class RawRayCluster(RawBlock):
    """``cluster.ray`` (swapd): the Ray cluster ``driver: ray`` models run on."""

    address: str = "auto"  # auto | ray://host:10001 | host:6379
    namespace: str = "swapd"


class RawCluster(RawBlock):
    """``cluster:`` (swapd): a cluster engine that runs models on its nodes."""

    ray: RawRayCluster | None = None


class RawTop(RawBlock):
    """Top-level keys except ``models`` and ``macros`` (handled on their own)."""

    LENIENT = True
    HANDLED = frozenset({"macros", "models"})  # macros.expand; one RawModel each

    health_check_timeout: Number = Field(120.0, alias="healthCheckTimeout")
    log_level: str = Field("info", alias="logLevel")
    log_to_stdout: str = Field("proxy", alias="logToStdout")
    start_port: Int = Field(5800, alias="startPort")
    global_ttl: Number = Field(0.0, alias="globalTTL")
    unload_timeout: Number = Field(10.0, alias="unloadTimeout")  # 0: this default
    groups: dict[str, RawGroup] | None = None
    routing: RawRouting = Field(default_factory=RawRouting)
    hooks: RawHooks = Field(default_factory=RawHooks)
    api_keys: list[Any] = Field(default_factory=list, alias="apiKeys")  # str | RawApiKey
    send_loading_state: bool = Field(False, alias="sendLoadingState")
    include_aliases_in_list: bool = Field(False, alias="includeAliasesInList")
    max_body_size: Any = Field("32MiB", alias="maxBodySize")  # bytes, or a size: 32MiB, 10MB
    models_dir: RawModelsDir | None = Field(None, alias="modelsDir")
    metrics_max_in_memory: Int = Field(1000, alias="metricsMaxInMemory", ge=1)
    store: RawStore = Field(default_factory=RawStore)
    logs: RawLogs | None = None
    nodes: dict[str, RawNode] | None = None
    matrix: RawMatrix | None = None  # legacy form of routing.router.settings.matrix
    peers: dict[str, RawPeer] = Field(default_factory=dict)
    profiles: dict[str, RawProfile] = Field(default_factory=dict)
    selectors: dict[str, RawSelector] = Field(default_factory=dict)
    upstream: RawUpstream = Field(default_factory=lambda: RawUpstream.model_validate({}))
    capture_buffer: Int = Field(5, alias="captureBuffer")  # MB; 0: no captures
    log_time_format: str = Field("", alias="logTimeFormat")  # a Go layout name; "": none
    log_requests: bool = Field(False, alias="logRequests")
    ui: RawUi = Field(default_factory=lambda: RawUi.model_validate({}))
    performance: RawPerformance = Field(default_factory=lambda: RawPerformance.model_validate({}))
    server: RawServer = Field(default_factory=lambda: RawServer.model_validate({}))
    placement: RawPlacement = Field(default_factory=lambda: RawPlacement.model_validate({}))
    ollama: RawOllama = Field(default_factory=lambda: RawOllama.model_validate({}))
    cluster: RawCluster | None = None


def default(cls: type[BaseModel], name: str) -> Any:
    """The default of field ``name`` of ``cls``: the one place each default is written."""
    return cls.model_fields[name].get_default(call_default_factory=True)


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
    "tuple_type": "expected a list",
    "extra_forbidden": "unknown key",
}

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


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
    return checked(
        cls.model_validate,
        data,
        root,
        base,
        issues,
        fallback={},
        keys=lambda loc: _keys_at(cls, loc) if issubclass(cls, RawBlock) else [],
    )


def checked(
    check: Callable[[dict[str, Any]], T],
    data: dict[str, Any],
    root: Node,
    base: Path,
    issues: Issues,
    *,
    fallback: dict[str, Any],
    tagged: bool = False,
    keys: Callable[[tuple[int | str, ...]], list[str]] | None = None,
) -> T:
    """``check(data)`` as ``validate`` does it; ``tagged``: the first part of each error's
    ``loc`` is a union tag (named like the YAML key under ``base``), not a key of ``data``;
    ``keys(loc)``: the keys allowed where an unknown key was found (for "did you mean")."""
    for _ in range(20):
        try:
            return check(data)
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
                    key = loc[-1] if loc else ""
                    known = keys(loc) if keys is not None else []
                    detail = suggest(key, known) if isinstance(key, str) else ""
                pos = locate(root, path, key=err["type"] == "extra_forbidden")
                issues.error(pos, f"{'.'.join(map(str, path))}: {message}{detail}", path)
                _drop(data, loc[1:] if tagged else loc)
    return check(fallback)
