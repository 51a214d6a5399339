"""From validated raw values to the final ``Config``: defaults, cross-checks, normalisation."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from swapd.config.command import parse_command
from swapd.config.issues import Issues
from swapd.config.keys import build_control_paths, build_keys
from swapd.config.model import (
    Capabilities,
    ClusterConfig,
    Config,
    Filters,
    KvCacheConfig,
    LogToStdout,
    Modality,
    ModelConfig,
    OllamaConfig,
    PlacementConfig,
    RayClusterConfig,
    Resources,
    ServerConfig,
    Timeouts,
)
from swapd.config.options import DriverOptions
from swapd.config.schema import (
    RawCapabilities,
    RawCluster,
    RawFilters,
    RawModel,
    RawOllama,
    RawPlacement,
    RawResources,
    RawServer,
    RawTimeouts,
    RawTop,
    default,
    parse_size,
)
from swapd.config.tree import MapNode, Path, Pos, locate

LOG_LEVELS = ("debug", "info", "warn", "error")
MODALITIES: tuple[Modality, ...] = ("text", "audio", "image")
COMFYUI_MODEL = "comfyui_auto"  # the model llama-swap's /comfyui route serves
COMFYUI_CONCURRENCY = 50  # its concurrencyLimit is at least this
LOG_TO_STDOUT: tuple[LogToStdout, ...] = ("proxy", "upstream", "both", "none")
# drivers whose ``cmd`` is the engine's command line (required)
CMD_DRIVERS = ("process", "ray")
RAY_ADDRESS = re.compile(r"auto|ray://[^\s:/]+(:\d{1,5})?|[^\s:/]+:\d{1,5}")


def valid_url(text: str) -> bool:
    """An http(s) URL with a host (and a valid port, if any)."""
    try:
        url = urlsplit(text)
        _ = url.port
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


LOG_TIME_FORMATS = (
    "ansic",
    "unixdate",
    "rubydate",
    "rfc822",
    "rfc822z",
    "rfc850",
    "rfc1123",
    "rfc1123z",
    "rfc3339",
    "rfc3339nano",
    "kitchen",
    "stamp",
    "stampmilli",
    "stampmicro",
    "stampnano",
)
DEFAULT_IGNORE_PATHS: tuple[str, ...] = Config().ignore_paths
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}
DURATION_UNITS |= {"m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration (``1h30m``, ``15s``, ``0``); None if it is not one."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = DURATION.match(text, pos)
        if m is None:
            return None
        total += float(m.group(1)) * DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if text else None


class Builder:
    def __init__(self, root: MapNode, issues: Issues) -> None:
        self.root = root
        self.issues = issues
        self.alias_paths: dict[str, tuple[str, Path]] = {}  # alias -> (model id, where)
        self.params_aliases: dict[str, list[str]] = {}  # model id -> setParamsByID aliases

    def warn(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.warn(self.at(path, key=key), message)

    def at(self, path: Path, *, key: bool = False) -> Pos:
        return locate(self.root, path, key=key)

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.error(self.at(path, key=key), message, path)

    # -- aliases ------------------------------------------------------------------------------
    def aliases(self, models: Mapping[str, RawModel]) -> dict[str, str]:
        """alias -> model id: the ``aliases`` lists in file order (the second use of an alias
        is the error), then each ``filters.setParamsByID`` key that is not the model's own id,
        in model id order (as llama-swap registers them). ``alias_paths`` records where each
        was written."""
        aliases: dict[str, str] = {}
        for model_id in models:
            for i, alias in enumerate(models[model_id].aliases):
                path: Path = ("models", model_id, "aliases", i)
                if not alias.strip():
                    self.error(path, f"model {model_id}: empty alias")
                elif alias in models:
                    self.error(path, f"alias '{alias}' of model {model_id} is the id of a model")
                elif alias in aliases:
                    self.error(
                        path,
                        f"duplicate alias {alias} found in model: {model_id} "
                        f"(already used by model: {aliases[alias]})",
                    )
                else:
                    aliases[alias] = model_id
                    self.alias_paths[alias] = (model_id, path)
        for model_id in sorted(models):
            for key in models[model_id].filters.set_params_by_id:
                path = ("models", model_id, "filters", "setParamsByID", key)
                if key == model_id:
                    continue
                if key in models:
                    self.error(
                        path,
                        f"model {model_id} filters.setParamsByID: key '{key}' conflicts with "
                        "an existing model ID",
                        key=True,
                    )
                elif key in aliases:
                    if aliases[key] != model_id:
                        self.error(
                            path,
                            f"duplicate alias '{key}' in model {model_id} filters.setParamsByID, "
                            f"already used by model {aliases[key]}",
                            key=True,
                        )
                else:
                    aliases[key] = model_id
                    self.alias_paths[key] = (model_id, path)
                    self.params_aliases.setdefault(model_id, []).append(key)
        return aliases

    # -- one model ----------------------------------------------------------------------------
    def command(self, path: Path, text: str | None, required: bool) -> tuple[str, ...]:
        model_id = path[1]
        if text is None:
            if required:
                self.error(path[:2], f"model {model_id}: cmd is required", key=True)
            return ()
        try:
            argv = parse_command(text)
        except ValueError as exc:
            self.error(path, f"model {model_id}: cannot parse {path[-1]}: {exc}")
            return ()
        if not argv and required:
            self.error(path, f"model {model_id}: {path[-1]} is empty")
        return argv

    def model(
        self,
        model_id: str,
        raw: RawModel,
        top: RawTop,
        group: str,
        port: int | None,
        options: DriverOptions,
    ) -> ModelConfig:
        base: Path = ("models", model_id)
        driver = raw.driver.strip() or "process"
        if driver == "process" and (
            raw.recipe is not None or getattr(options, "driver", None) == "docker"
        ):  # a recipe whose value was rejected still chose the docker options
            driver = "docker"  # swapd: a recipe runs in a container
        cmd = self.command((*base, "cmd"), raw.cmd, driver in CMD_DRIVERS)
        if driver == "ray" and raw.proxy:
            self.error(
                (*base, "proxy"),
                f"model {model_id}: a ray model is reached where its actor runs "
                "(node_ip:${PORT}); drop proxy",
            )
        cmd_stop = self.command((*base, "cmdStop"), raw.cmd_stop, False)
        if raw.proxy and not valid_url(raw.proxy):
            self.error(
                (*base, "proxy"),
                f"model {model_id}: invalid proxy URL "
                f"'{raw.proxy}' (expected http://host:port or https://…)",
            )
        env: dict[str, str] = {}
        for i, entry in enumerate(raw.env):
            name, sep, value = entry.partition("=")
            if not sep or not name.strip():
                self.error(
                    (*base, "env", i),
                    f"model {model_id}: env entry must be KEY=VALUE, got '{entry}'",
                )
            else:
                env[name] = value
        ttl = top.global_ttl if raw.ttl == -1 else raw.ttl
        if ttl < 0:
            self.error((*base, "ttl"), f"model {model_id}: invalid TTL value {raw.ttl:g}")
        if raw.unload_timeout < 0:
            self.error((*base, "unloadTimeout"), f"model {model_id}: unloadTimeout must be >= 0")
        timeouts = self.timeouts(base, f"model {model_id}", raw.timeouts)
        check = raw.check_endpoint.strip()
        kv_cache = None  # a llama.cpp extension adds --slot-save-path (swapd.extensions)
        if raw.kv_cache is not None:
            kv_cache = KvCacheConfig(raw.kv_cache.persist, raw.kv_cache.dir)
        concurrency = (
            raw.concurrency_limit
            if raw.concurrency_limit > 0
            else default(RawModel, "concurrency_limit")
        )
        ignore_websockets = raw.compat.ignore_websockets
        if model_id == COMFYUI_MODEL:  # llama-swap's /comfyui model: its UI keeps sockets open
            concurrency = max(concurrency, COMFYUI_CONCURRENCY)
            ignore_websockets = True
        return ModelConfig(
            id=model_id,
            cmd=cmd,
            cmd_stop=cmd_stop,
            proxy=raw.proxy,
            aliases=(*raw.aliases, *self.params_aliases.get(model_id, ())),
            env=env,
            check_endpoint=None if check == "none" else check,
            ttl=max(ttl, 0.0),
            unload_timeout=raw.unload_timeout or self.unload_timeout(top),
            health_check_timeout=top.health_check_timeout,
            unlisted=raw.unlisted,
            use_model_name=raw.use_model_name,
            name=raw.name.strip(),
            description=raw.description.strip(),
            concurrency_limit=concurrency,
            filters=self.filters(raw.filters),
            metadata=raw.metadata,
            send_loading_state=(
                top.send_loading_state if raw.send_loading_state is None else raw.send_loading_state
            ),
            group=group,
            port=port,
            driver=driver,
            options=options,
            kv_cache=kv_cache,
            # any engine with vLLM's sleep surface; docker models are checked against recipes
            sleep_level=raw.sleep.level if raw.sleep is not None else None,
            timeouts=timeouts,
            capabilities=self.capabilities(model_id, raw.capabilities),
            ignore_websockets=ignore_websockets,
            resources=self.resources(base, model_id, raw.resources),
            swappable=raw.swappable,
        )

    def resources(self, base: Path, model_id: str, raw: RawResources | None) -> Resources:
        """``resources``: sizes parsed (``memory``, or its older name ``gpu_memory``)."""
        if raw is None:
            return Resources()
        key = "memory" if raw.memory is not None else "gpu_memory"
        given = raw.memory if raw.memory is not None else raw.gpu_memory
        memory = 0
        if given is not None:
            size = parse_size(given)
            if size is None:
                self.error(
                    (*base, "resources", key),
                    f"model {model_id}: resources.{key}: expected a size like 20GiB, got {given!r}",
                )
            memory = size or 0
        gpus = raw.gpus
        count: int | None = None
        devices = tuple(raw.devices or ())
        if isinstance(gpus, int):
            count = gpus
        elif isinstance(gpus, tuple):  # docker-style device ids: indices when numeric
            count = len(gpus)
            if not devices and all(g.isdigit() for g in gpus):
                devices = tuple(int(g) for g in gpus)
        if count is None and devices:
            count = len(devices)
        for i, index in enumerate(devices):
            if index < 0:
                self.error(
                    (*base, "resources", "devices", i),
                    f"model {model_id}: resources.devices: expected device indices >= 0",
                )
        if count is not None and devices and count > len(devices):
            self.error(
                (*base, "resources", "gpus"),
                f"model {model_id}: resources.gpus is {count} but only {len(devices)} "
                f"devices are allowed ({', '.join(map(str, devices))})",
            )
        return Resources(gpus=count, memory=memory, devices=devices, all_gpus=gpus == "all")

    def placement(self, raw: RawPlacement) -> PlacementConfig:
        headroom = 0 if raw.headroom in (0, "0") else parse_size(raw.headroom)  # 0: none
        if headroom is None:
            self.error(
                ("placement", "headroom"),
                f"placement.headroom: expected a size like 512MiB, got {raw.headroom!r}",
            )
        return PlacementConfig(
            enabled=None if raw.enabled == "auto" else bool(raw.enabled),
            headroom=headroom if headroom is not None else PlacementConfig().headroom,
            refresh=raw.refresh,
        )

    def filters(self, raw: RawFilters) -> Filters:
        """``model`` can never be stripped or set."""
        strip = {p.strip() for p in f"{raw.strip_params},{raw.strip_params_legacy}".split(",")}
        return Filters(
            strip_params=tuple(sorted(strip - {"", "model"})),
            set_params={k: v for k, v in raw.set_params.items() if k != "model"},
            set_params_by_id={
                name: {k: v for k, v in params.items() if k != "model"}
                for name, params in raw.set_params_by_id.items()
            },
        )

    def capabilities(self, model_id: str, raw: RawCapabilities) -> Capabilities:
        base = ("models", model_id, "capabilities")
        modalities: dict[str, tuple[Modality, ...]] = {}
        for key, given in (("in", raw.inputs), ("out", raw.outputs)):
            valid: list[Modality] = []
            for i, name in enumerate(given):
                for modality in MODALITIES:
                    if name == modality:
                        valid.append(modality)
                        break
                else:
                    self.error(
                        (*base, key, i),
                        f"model {model_id}: capabilities.{key}: invalid modality "
                        f'"{name}", must be one of: {", ".join(MODALITIES)}',
                    )
            modalities[key] = tuple(valid)
        if raw.context < 0:
            self.error((*base, "context"), f"model {model_id}: capabilities.context: must be >= 0")
        return Capabilities(
            inputs=modalities["in"],
            outputs=modalities["out"],
            tools=raw.tools,
            reranker=raw.reranker,
            context=max(raw.context, 0),
        )

    def timeouts(self, base: Path, label: str, raw: RawTimeouts) -> Timeouts:
        """``label``: whose timeouts (``model m``, ``peer p``) in messages."""
        values = {
            "connect": raw.connect,
            "responseHeader": raw.response_header,
            "idleRead": raw.idle_read,
        }
        for key, value in values.items():
            if value < 0:
                self.error(
                    (*base, "timeouts", key),
                    f"{label}: timeouts.{key} must be >= 0 (0 = no timeout)",
                )
        return Timeouts(
            connect=max(raw.connect, 0.0),
            response_header=max(raw.response_header, 0.0),
            idle_read=max(raw.idle_read, 0.0),
        )

    # -- top level ----------------------------------------------------------------------------
    def unload_timeout(self, top: RawTop) -> float:
        return top.unload_timeout or float(default(RawTop, "unload_timeout"))

    def top(self, top: RawTop) -> dict[str, Any]:
        if top.health_check_timeout < 1:
            self.error(("healthCheckTimeout",), "healthCheckTimeout must be >= 1")
        level = top.log_level.strip().lower()
        if level not in LOG_LEVELS:
            self.issues.warn(
                self.at(("logLevel",)),
                f"unknown logLevel '{top.log_level}' (valid: {', '.join(LOG_LEVELS)}); using info",
            )
            level = "info"
        to_stdout: LogToStdout = "proxy"
        for choice in LOG_TO_STDOUT:
            if top.log_to_stdout == choice:
                to_stdout = choice
                break
        else:
            self.error(("logToStdout",), "logToStdout must be one of: proxy, upstream, both, none")
        if not 1 <= top.start_port <= 65535:
            self.error(("startPort",), "startPort must be between 1 and 65535")
        if top.global_ttl < 0:
            self.error(("globalTTL",), "globalTTL must be >= 0")
        if top.unload_timeout < 0:
            self.error(("unloadTimeout",), "unloadTimeout must be >= 0")
        max_body = parse_size(top.max_body_size)
        if max_body is None:
            self.error(
                ("maxBodySize",),
                f"maxBodySize: expected a size in bytes like "
                f"33554432, 32MiB or 10MB, got {top.max_body_size!r}",
            )
            max_body = parse_size(default(RawTop, "max_body_size"))
        if top.capture_buffer < 0:
            self.error(("captureBuffer",), "captureBuffer must be >= 0 (MB; 0 = no captures)")
        time_format = top.log_time_format.strip().lower()
        if time_format and time_format not in LOG_TIME_FORMATS:
            self.warn(
                ("logTimeFormat",),
                f"unknown logTimeFormat '{top.log_time_format}' "
                f"(valid: {', '.join(LOG_TIME_FORMATS)}); logging without timestamps",
            )
            time_format = ""
        self.performance(top)
        return {
            "ignore_paths": self.ignore_paths(top),
            "capture_bytes": max(top.capture_buffer, 0) * 1024 * 1024,
            "log_time_format": time_format,
            "log_requests": top.log_requests,
            "health_check_timeout": top.health_check_timeout,
            "log_level": level,
            "log_to_stdout": to_stdout,
            "start_port": top.start_port,
            "global_ttl": top.global_ttl,
            "unload_timeout": self.unload_timeout(top),
            **build_keys(self, top),  # keys, api_keys
            **build_control_paths(self, top),
            "send_loading_state": top.send_loading_state,
            "include_aliases_in_list": top.include_aliases_in_list,
            "max_body_bytes": max_body,
            "metrics_max_in_memory": top.metrics_max_in_memory,
            "store_path": top.store.path or None,
            "log_ring_bytes": top.logs.ring_bytes if top.logs else None,
            "server": self.server(top.server),
            "placement": self.placement(top.placement),
            "ollama": self.ollama(top.ollama),
            "cluster": self.cluster(top.cluster),
        }

    def cluster(self, raw: RawCluster | None) -> ClusterConfig:
        """``cluster.ray``: the address must be auto, ray://host:port or host:port."""
        if raw is None or raw.ray is None:
            return ClusterConfig()
        address = raw.ray.address.strip()
        if not RAY_ADDRESS.fullmatch(address):
            self.error(
                ("cluster", "ray", "address"),
                "cluster.ray.address: expected auto, ray://host:10001 or host:6379, "
                f"got {raw.ray.address!r}",
            )
            address = RayClusterConfig().address
        namespace = raw.ray.namespace.strip()
        if not namespace:
            self.error(("cluster", "ray", "namespace"), "cluster.ray.namespace: must not be empty")
            namespace = RayClusterConfig().namespace
        return ClusterConfig(ray=RayClusterConfig(address=address, namespace=namespace))

    def ollama(self, raw: RawOllama) -> OllamaConfig:
        """``ollama:``: the version must look like ``0.12.0`` (clients compare it)."""
        version = raw.version.strip()
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            self.error(
                ("ollama", "version"),
                f"ollama.version: expected a version like 0.12.0, got {raw.version!r}",
            )
            version = OllamaConfig().version
        return OllamaConfig(enabled=raw.enabled, version=version)

    def server(self, raw: RawServer) -> ServerConfig:
        """``server:``: sizes parsed, host names lower-cased, proxies checked as IPs/CIDRs."""
        header_bytes = parse_size(raw.max_header_bytes)
        if header_bytes is None or header_bytes < 1024:
            self.error(
                ("server", "maxHeaderBytes"),
                "server.maxHeaderBytes: expected a size of at least 1KiB like 65536 or 64KiB, "
                f"got {raw.max_header_bytes!r}",
            )
            header_bytes = parse_size(default(RawServer, "max_header_bytes"))
        hosts: list[str] = []
        for i, host in enumerate(raw.allowed_hosts):
            name = host.strip().lower().rstrip(".")
            if not name or any(c.isspace() or c in "/@?#" for c in name):
                self.error(
                    ("server", "allowedHosts", i),
                    f"server.allowedHosts[{i}]: expected a host name such as example.com "
                    f"or '*', got {host!r}",
                )
            else:
                hosts.append(name)
        proxies: list[str] = []
        for i, proxy in enumerate(raw.trusted_proxies):
            text = proxy.strip()
            try:
                network = "*" if text == "*" else str(ipaddress.ip_network(text, strict=False))
                proxies.append(network)
            except ValueError:
                self.error(
                    ("server", "trustedProxies", i),
                    f"server.trustedProxies[{i}]: expected an IP address, a CIDR such as "
                    f"10.0.0.0/8, or '*', got {proxy!r}",
                )
        return ServerConfig(
            max_header_bytes=header_bytes or 64 * 1024,
            header_timeout=raw.header_timeout,
            keepalive_timeout=raw.keepalive_timeout,
            max_connections=raw.max_connections,
            max_json_depth=raw.max_json_depth,
            allowed_hosts=tuple(hosts),
            trusted_proxies=tuple(proxies),
            workers=raw.workers,
        )

    def ignore_paths(self, top: RawTop) -> tuple[str, ...]:
        """``upstream.ignorePaths``, each compiled once to check it; [] = the default."""
        paths: list[str] = []
        for i, pattern in enumerate(top.upstream.ignore_paths):
            try:
                re.compile(pattern)
            except re.error as exc:
                self.error(
                    ("upstream", "ignorePaths", i),
                    f'upstream.ignorePaths: invalid regular expression "{pattern}": {exc}',
                )
            else:
                paths.append(pattern)
        return tuple(paths) if top.upstream.ignore_paths else DEFAULT_IGNORE_PATHS

    def performance(self, top: RawTop) -> None:
        """``performance`` is read for its checks only: swapd's monitor has no settings."""
        every = top.performance.every.strip()
        seconds = go_duration(every) if every else 0.0
        if seconds is None:
            self.error(
                ("performance", "every"),
                f"performance.every: invalid duration '{every}' (e.g. 5s, 1m30s)",
            )
        elif 0 < seconds < 5:
            self.error(
                ("performance", "every"), f"performance: every must be at least 5s, got {every}"
            )

    def preload(
        self, top: RawTop, model_ids: set[str], aliases: Mapping[str, str]
    ) -> tuple[str, ...]:
        preload: list[str] = []
        for i, name in enumerate(top.hooks.on_startup.preload):
            name = name.strip()
            real = name if name in model_ids else aliases.get(name)
            if real is None:
                if name:
                    what = (
                        f"'{name}' is a selector, not a model"
                        if name in top.selectors
                        else f"unknown model '{name}'"
                    )
                    self.issues.warn(
                        self.at(("hooks", "on_startup", "preload", i)),
                        f"hooks.on_startup.preload: {what} (ignored)",
                    )
            elif real not in preload:
                preload.append(real)
        return tuple(preload)
