"""Typed, fully resolved configuration: what the loader produces and everything else consumes.

All values here are final: macros expanded, ports allocated, defaults applied, TTL resolved
against ``globalTTL``. Objects are frozen; a reload builds new ones and compares fingerprints.
Defaults are those of the schema (``swapd.config.schema``), written there only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from swapd.config.options import DriverOptions, ProcessOptions, options_for
from swapd.config.schema import (
    RawGroup,
    RawKvCache,
    RawModel,
    RawOllama,
    RawRayCluster,
    RawTimeouts,
    RawTop,
    default,
    parse_size,
)
from swapd.errors import ConfigIssue

DEFAULT_GROUP = "(default)"
LogToStdout = Literal["proxy", "upstream", "both", "none"]
_LOG_TO_STDOUT: LogToStdout = default(RawTop, "log_to_stdout")


@dataclass(frozen=True, slots=True)
class Filters:
    """JSON body rewrites applied before forwarding (``model`` is never touched by these)."""

    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    # `setParamsByID`: requested id (after profile/selector rewriting; an alias counts) ->
    # params set last, for requests naming that id. Each key is also an alias of the model.
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


Modality = Literal["text", "audio", "image"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``capabilities``: what a model takes and gives, listed in ``/v1/models``."""

    inputs: tuple[Modality, ...] = ()  # `in`
    outputs: tuple[Modality, ...] = ()  # `out`
    tools: bool = False
    reranker: bool = False
    context: int = 0  # tokens; 0 = unknown

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs or self.tools or self.reranker or self.context)


@dataclass(frozen=True, slots=True)
class KvCacheConfig:
    """``kvCache``: keep a llama-server's KV cache across swaps (see swapd.llamacpp.kvcache)."""

    persist: bool = default(RawKvCache, "persist")
    dir: str | None = default(RawKvCache, "dir")  # None: under swapd's state dir


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``timeouts``: how long the proxy waits on the engine, in seconds; 0 = no limit.

    There is deliberately no whole-request timeout: generations are long. llama-swap's other
    transport keys (``keepalive``, ``tlsHandshake``, ``expectContinue``, ``idleConn``) are
    accepted and ignored: swapd's upstream connection pool manages its own connections.
    """

    connect: float = default(RawTimeouts, "connect")  # TCP connect to the engine
    # `responseHeader`: from the request sent to the response headers
    response_header: float = default(RawTimeouts, "response_header")
    # swapd `idleRead`: seconds without a body byte from the engine
    idle_read: float = default(RawTimeouts, "idle_read")


@dataclass(frozen=True, slots=True)
class GpuConfig:
    """One GPU of a node: its index and memory in bytes (declared or discovered)."""

    index: int
    memory: int


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """``nodes.<name>``: where Docker engines run (see swapd.nodes)."""

    name: str
    docker: str  # unix://…, tcp://host:port or ssh://user@host; "" = the default socket
    gpus: tuple[GpuConfig, ...] | None = None  # None: discover (NVML / nvidia-smi)


@dataclass(frozen=True, slots=True)
class Resources:
    """``resources``: what a model declares it needs (swapd.demand adds estimates and what
    was learned; swapd.placement decides where it runs)."""

    gpus: int | None = None  # devices it spans; 0 = a CPU engine (system RAM); None = unsaid
    memory: int = 0  # bytes in total, split evenly over its devices; 0 = not declared
    devices: tuple[int, ...] = ()  # device indices it may use; () = any
    all_gpus: bool = False  # `gpus: all` (docker): every device of the node

    def __bool__(self) -> bool:
        return self != Resources()


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    """``placement``: memory-aware placement (see swapd.placement)."""

    enabled: bool | None = None  # None: auto (on when a GPU is seen or any memory declared)
    headroom: int = 512 * 1024 * 1024  # bytes kept free on every device
    refresh: float = 10.0  # seconds between inventory refreshes


@dataclass(frozen=True, slots=True)
class OllamaConfig:
    """``ollama``: the opt-in Ollama-compatible API (swapd.proxy.ollama)."""

    enabled: bool = default(RawOllama, "enabled")
    version: str = default(RawOllama, "version")  # what GET /api/version reports


@dataclass(frozen=True, slots=True)
class RayClusterConfig:
    """``cluster.ray``: the Ray cluster ``driver: ray`` models run on (swapd.raycluster)."""

    address: str = default(RawRayCluster, "address")  # auto | ray://host:10001 | host:6379
    namespace: str = default(RawRayCluster, "namespace")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``cluster``: cluster engines whose nodes run models (only Ray so far)."""

    ray: RayClusterConfig | None = None  # None: no ``cluster.ray`` block


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str
    cmd: tuple[str, ...]  # argv after comment stripping, continuation joining and shell-words
    cmd_stop: tuple[str, ...] = ()  # argv; may contain the literal "${PID}", replaced at stop
    proxy: str = ""  # upstream base URL, e.g. http://127.0.0.1:5800
    aliases: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # None means "none": ready as soon as spawned
    check_endpoint: str | None = default(RawModel, "check_endpoint")
    ttl: float = default(RawTop, "global_ttl")  # effective idle seconds before unload; 0 = never
    unload_timeout: float = default(RawTop, "unload_timeout")  # stop wait before SIGKILL
    health_check_timeout: float = default(RawTop, "health_check_timeout")  # start deadline
    unlisted: bool = False
    use_model_name: str = ""
    name: str = ""
    description: str = ""
    concurrency_limit: int = default(RawModel, "concurrency_limit")
    filters: Filters = field(default_factory=Filters)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    send_loading_state: bool = default(RawTop, "send_loading_state")
    group: str = DEFAULT_GROUP
    port: int | None = None  # allocated ${PORT}, if the cmd uses it
    # driver name, resolved through the swapd.drivers registry
    driver: str = default(RawModel, "driver")
    # the block named like the driver: typed for docker/process, a mapping for a plugin driver;
    # a plain mapping given here becomes the driver's options (see swapd.config.options)
    options: DriverOptions = field(default_factory=ProcessOptions)
    kv_cache: KvCacheConfig | None = None
    source: str | None = None  # e.g. the GGUF file a discovered model was made from
    recipe: str | None = None  # swapd: the recipe the driver spec was rendered from
    node: str | None = None  # swapd: pinned node
    nodes: tuple[NodeConfig, ...] = ()  # swapd: candidate nodes, in placement order
    sleep_level: int | None = None  # swapd: evict = sleep at this level instead of stop
    timeouts: Timeouts = field(default_factory=Timeouts)  # proxy → engine waits
    capabilities: Capabilities = field(default_factory=Capabilities)
    # `compat.ignoreWebsockets`: WebSocket upgrades bypass the scheduler (409 if not ready)
    ignore_websockets: bool = False
    resources: Resources = field(default_factory=Resources)  # swapd: declared need
    swappable: bool = True  # swapd: false = never evicted to make room for another model

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", options_for(self.driver, self.options))

    def fingerprint(self) -> str:
        """Hash of everything that affects the running engine; equal → keep it over a reload."""
        data: dict[str, Any] = {
            "cmd": self.cmd,
            "cmd_stop": self.cmd_stop,
            "proxy": self.proxy,
            "env": dict(sorted(self.env.items())),
            "check_endpoint": self.check_endpoint,
            "driver": self.driver,
            "options": self.options.as_dict(),
        }
        if self.nodes or self.sleep_level is not None:  # swapd: docker placement and sleep
            data["nodes"] = [(n.name, n.docker) for n in self.nodes]
            data["sleep_level"] = self.sleep_level
        if self.resources:  # swapd: where it may run
            data["resources"] = [self.resources.gpus, self.resources.devices]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    swap: bool = default(RawGroup, "swap")
    exclusive: bool = default(RawGroup, "exclusive")
    persistent: bool = default(RawGroup, "persistent")
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """``peers.<id>``: a remote OpenAI-compatible server; its models are ``<id>/<model>``."""

    id: str
    proxy: str  # base URL, e.g. https://openrouter.ai/api
    api_key: str = ""  # sent as Bearer and x-api-key; "" = no credentials sent at all
    models: tuple[str, ...] = ()  # model ids at the peer, duplicates dropped
    filters: Filters = field(default_factory=Filters)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(response_header=60.0))


@dataclass(frozen=True, slots=True)
class MatrixSet:
    """One named set of the matrix: its DSL and the model sets it allows (alternatives)."""

    name: str
    dsl: str
    alternatives: tuple[frozenset[str], ...]  # real model ids; each may run together


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    """``routing.router.settings.matrix`` (or legacy top-level ``matrix``)."""

    # in topological-then-definition order (referenced sets first): ties go to the earlier
    sets: tuple[MatrixSet, ...] = ()
    evict_costs: Mapping[str, int] = field(default_factory=dict)  # model id -> cost (default 1)
    vars: Mapping[str, str] = field(default_factory=dict)  # var -> model id (as written)

    def cost(self, model_id: str) -> int:
        return self.evict_costs.get(model_id, 1)


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """``profiles.<id>``: model-id rewrites active while the profile is."""

    id: str
    description: str = ""
    pins: Mapping[str, str | None] = field(default_factory=dict)  # name -> target; None: 404


SelectorStrategy = Literal["pin", "warm", "spillover"]


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    """``selectors.<id>``: a virtual model id resolved per request to one of ``targets``."""

    id: str
    strategy: SelectorStrategy
    targets: tuple[str, ...]  # as written: model, alias or peer model names
    spillover: int = 1  # `settings.spillover`
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


Router = Literal["group", "matrix"]
# /upstream/{model}/… paths matched by these need more than the inference scope. Admin: engine
# control, any method (vLLM sleep mode, profiler, LoRA, cache resets; SGLang weights, memory and
# cache). Read: engine status for GET/HEAD; any other method on them is control and needs admin
# (llama.cpp's POST /slots/{id}?action=save|restore|erase, POST /lora-adapters).
UPSTREAM_ADMIN_PATHS: tuple[str, ...] = (
    r"^/(sleep|wake_up|collective_rpc|pause|resume|scale_elastic_ep)\b",
    r"^/(start|stop)_profile\b",
    r"^/reset_(prefix|mm)_cache\b",
    r"^/(v1/)?(load|unload)_lora_adapter\b",
    r"^/(flush_cache|update_weights|release_memory_occupation|resume_memory_occupation)",
)
UPSTREAM_READ_PATHS: tuple[str, ...] = (r"^/(slots|is_sleeping|metrics|lora-adapters)\b",)
KeyScope = Literal["inference", "read", "admin"]
ALL_SCOPES: frozenset[KeyScope] = frozenset({"inference", "read", "admin"})


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One entry of ``apiKeys``: a plain string is a key with every scope and every model."""

    key: str
    name: str = ""  # shown in logs and activity instead of the key
    scopes: frozenset[KeyScope] = ALL_SCOPES
    models: tuple[str, ...] = ()  # glob patterns of model names it may use; () = all


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``server:``: limits and trust at swapd's own HTTP edge."""

    max_header_bytes: int = 64 * 1024  # request line + headers; above: 431
    header_timeout: float = 10.0  # seconds to receive a request's headers
    keepalive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 0  # concurrent connections; 0 = derived from RLIMIT_NOFILE
    max_json_depth: int = 128  # nesting of a JSON request body; deeper: 400
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted beyond loopback and the listen one
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed
    workers: int = 0  # data-plane worker processes (swapd.dataplane); 0: all in one process


@dataclass(frozen=True, slots=True)
class Config:
    models: Mapping[str, ModelConfig] = field(default_factory=dict)  # sorted by id
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)  # always has DEFAULT_GROUP
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> model id
    health_check_timeout: float = default(RawTop, "health_check_timeout")
    log_level: str = default(RawTop, "log_level")
    log_to_stdout: LogToStdout = _LOG_TO_STDOUT
    start_port: int = default(RawTop, "start_port")
    global_ttl: float = default(RawTop, "global_ttl")
    unload_timeout: float = default(RawTop, "unload_timeout")
    preload: tuple[str, ...] = ()  # real model ids (aliases resolved, unknown dropped)
    api_keys: tuple[str, ...] = ()
    send_loading_state: bool = default(RawTop, "send_loading_state")
    include_aliases_in_list: bool = default(RawTop, "include_aliases_in_list")
    # swapd: `maxBodySize`, 413 above it
    max_body_bytes: int = parse_size(default(RawTop, "max_body_size")) or 0
    # activity records kept in memory
    metrics_max_in_memory: int = default(RawTop, "metrics_max_in_memory")
    store_path: str | None = None  # `store.path`: SQLite file for activity records
    log_ring_bytes: int | None = None  # `logs.ringBytes`: per-model log ring size
    nodes: Mapping[str, NodeConfig] = field(default_factory=dict)  # swapd: Docker nodes
    router: Router = "group"  # `routing.router.use`
    matrix: MatrixConfig | None = None  # set when router == "matrix"
    priorities: Mapping[str, int] = field(default_factory=dict)  # fifo priority by model id
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)
    profiles: Mapping[str, ProfileConfig] = field(default_factory=dict)
    selectors: Mapping[str, SelectorConfig] = field(default_factory=dict)
    # `upstream.ignorePaths`: regexes; /upstream paths matching one never start a model
    ignore_paths: tuple[str, ...] = (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)
    # swapd `upstream.adminPaths` / `readPaths`: regexes over /upstream/{model} paths that need
    # the admin scope (engine control) or, for GET/HEAD, the read scope (engine status)
    upstream_admin_paths: tuple[str, ...] = UPSTREAM_ADMIN_PATHS
    upstream_read_paths: tuple[str, ...] = UPSTREAM_READ_PATHS
    capture_bytes: int = 5 * 1024 * 1024  # `captureBuffer` (MB) in bytes; 0 = no captures
    log_time_format: str = ""  # `logTimeFormat`: a Go layout name; "" = no timestamp
    log_requests: bool = False  # `logRequests`: one line per proxied request
    keys: tuple[ApiKey, ...] = ()  # `apiKeys` with their scopes (api_keys: the values alone)
    server: ServerConfig = field(default_factory=ServerConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    ollama: OllamaConfig = field(default_factory=OllamaConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # swapd: `cluster`
    # values substituted from ${env.NAME}: never shown to clients (swapd.secrets adds the
    # env: entries and keys)
    secrets: frozenset[str] = frozenset()
    sources: tuple[str, ...] = ()  # files the config was read from
    blank: frozenset[str] = frozenset()  # those of them that were empty (a reload may too)
    warnings: tuple[ConfigIssue, ...] = ()  # unknown keys etc., with their location

    def resolve(self, name: str) -> ModelConfig | None:
        """A model by id or alias."""
        model = self.models.get(name)
        if model is None and (real := self.aliases.get(name)) is not None:
            model = self.models.get(real)
        return model
