"""Typed, fully resolved configuration: what the loader produces and everything else consumes.

All values here are final: macros expanded, ports allocated, defaults applied, TTL resolved
against ``globalTTL``. Objects are frozen; a reload builds new ones and compares fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from swapd.errors import ConfigIssue

DEFAULT_GROUP = "(default)"
LogToStdout = Literal["proxy", "upstream", "both", "none"]


@dataclass(frozen=True, slots=True)
class Filters:
    """JSON body rewrites applied before forwarding (``model`` is never touched by these)."""

    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KvCacheConfig:
    """``kvCache``: keep a llama-server's KV cache across swaps (see swapd.llamacpp.kvcache)."""

    persist: bool = False
    dir: str | None = None  # None: under swapd's state dir


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``timeouts``: how long the proxy waits on the engine, in seconds; 0 = no limit.

    There is deliberately no whole-request timeout: generations are long. llama-swap's other
    transport keys (``keepalive``, ``tlsHandshake``, ``expectContinue``, ``idleConn``) are
    accepted and ignored: swapd's upstream connection pool manages its own connections.
    """

    connect: float = 30.0  # TCP connect to the engine
    response_header: float = 0.0  # `responseHeader`: request sent → response headers
    idle_read: float = 300.0  # swapd `idleRead`: seconds without a body byte from the engine


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
class ModelConfig:
    id: str
    cmd: tuple[str, ...]  # argv after comment stripping, continuation joining and shell-words
    cmd_stop: tuple[str, ...] = ()  # argv; may contain the literal "${PID}", replaced at stop
    proxy: str = ""  # upstream base URL, e.g. http://127.0.0.1:5800
    aliases: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    check_endpoint: str | None = "/health"  # None means "none": ready as soon as spawned
    ttl: float = 0.0  # effective idle seconds before unload; 0 = never
    unload_timeout: float = 10.0  # graceful stop wait before SIGKILL
    health_check_timeout: float = 120.0  # start deadline
    unlisted: bool = False
    use_model_name: str = ""
    name: str = ""
    description: str = ""
    concurrency_limit: int = 10
    filters: Filters = field(default_factory=Filters)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    send_loading_state: bool = False
    group: str = DEFAULT_GROUP
    port: int | None = None  # allocated ${PORT}, if the cmd uses it
    driver: str = "process"  # driver name, resolved through the swapd.drivers registry
    options: Mapping[str, Any] = field(default_factory=dict)  # driver-specific block, untyped
    kv_cache: KvCacheConfig | None = None
    source: str | None = None  # e.g. the GGUF file a discovered model was made from
    recipe: str | None = None  # swapd: the recipe the driver spec was rendered from
    node: str | None = None  # swapd: pinned node
    nodes: tuple[NodeConfig, ...] = ()  # swapd: candidate nodes, in placement order
    gpu_memory: int = 0  # swapd: bytes of GPU memory the model needs (placement)
    sleep_level: int | None = None  # swapd: evict = sleep at this level instead of stop
    timeouts: Timeouts = field(default_factory=Timeouts)  # proxy → engine waits

    def fingerprint(self) -> str:
        """Hash of everything that affects the running engine; equal → keep it over a reload."""
        data: dict[str, Any] = {
            "cmd": self.cmd,
            "cmd_stop": self.cmd_stop,
            "proxy": self.proxy,
            "env": dict(sorted(self.env.items())),
            "check_endpoint": self.check_endpoint,
            "driver": self.driver,
            "options": self.options,
        }
        if self.nodes or self.sleep_level is not None:  # swapd: docker placement and sleep
            data["nodes"] = [(n.name, n.docker) for n in self.nodes]
            data["sleep_level"] = self.sleep_level
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    models: Mapping[str, ModelConfig] = field(default_factory=dict)  # sorted by id
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)  # always has DEFAULT_GROUP
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> model id
    health_check_timeout: float = 120.0
    log_level: str = "info"
    log_to_stdout: LogToStdout = "proxy"
    start_port: int = 5800
    global_ttl: float = 0.0
    unload_timeout: float = 10.0
    preload: tuple[str, ...] = ()  # real model ids (aliases resolved, unknown dropped)
    api_keys: tuple[str, ...] = ()
    send_loading_state: bool = False
    include_aliases_in_list: bool = False
    max_body_bytes: int = 32 * 1024 * 1024  # swapd: `maxBodySize`, 413 above it
    metrics_max_in_memory: int = 1000  # activity records kept in memory
    store_path: str | None = None  # `store.path`: SQLite file for activity records
    log_ring_bytes: int | None = None  # `logs.ringBytes`: per-model log ring size
    nodes: Mapping[str, NodeConfig] = field(default_factory=dict)  # swapd: Docker nodes
    sources: tuple[str, ...] = ()  # files the config was read from
    warnings: tuple[ConfigIssue, ...] = ()  # unknown keys etc., with their location

    def resolve(self, name: str) -> ModelConfig | None:
        """A model by id or alias."""
        model = self.models.get(name)
        if model is None and (real := self.aliases.get(name)) is not None:
            model = self.models.get(real)
        return model
