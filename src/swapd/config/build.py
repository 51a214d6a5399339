"""From validated raw values to the final ``Config``: defaults, cross-checks, normalisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from swapd.config.command import parse_command
from swapd.config.issues import Issues
from swapd.config.model import (
    DEFAULT_GROUP,
    Filters,
    GroupConfig,
    KvCacheConfig,
    LogToStdout,
    ModelConfig,
    Timeouts,
)
from swapd.config.options import DriverOptions
from swapd.config.schema import RawGroup, RawModel, RawTop, default, parse_size
from swapd.config.tree import MapNode, Path, Pos, locate

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_TO_STDOUT: tuple[LogToStdout, ...] = ("proxy", "upstream", "both", "none")


class Builder:
    def __init__(self, root: MapNode, issues: Issues) -> None:
        self.root = root
        self.issues = issues

    def at(self, path: Path, *, key: bool = False) -> Pos:
        return locate(self.root, path, key=key)

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.error(self.at(path, key=key), message, path)

    # -- groups -------------------------------------------------------------------------------
    def groups(
        self, top: RawTop, model_ids: set[str], aliases: Mapping[str, str]
    ) -> dict[str, GroupConfig]:
        raw: dict[str, RawGroup] = {}
        base: Path = ("groups",)
        if top.groups is not None:
            raw = top.groups
            if top.routing.router is not None:
                self.error(
                    ("groups",),
                    "config uses both the legacy top-level 'groups' key "
                    "and the new 'routing.router' block; use only one",
                    key=True,
                )
        elif top.routing.router is not None:
            router = top.routing.router
            if router.use == "matrix":
                self.issues.warn(
                    self.at(("routing", "router", "use")),
                    "routing.router.use 'matrix' is not supported by swapd yet (using groups)",
                )
            elif router.use != "group":
                self.error(
                    ("routing", "router", "use"),
                    f'routing.router.use: unknown router "{router.use}" (valid: group, matrix)',
                )
            raw = router.settings.groups or {}
            base = ("routing", "router", "settings", "groups")
        if top.routing.scheduler.use != "fifo":
            self.error(
                ("routing", "scheduler", "use"),
                f"routing.scheduler.use: unknown "
                f'scheduler "{top.routing.scheduler.use}" (valid: fifo)',
            )
        owner: dict[str, str] = {}
        groups: dict[str, GroupConfig] = {}
        for name, group in raw.items():
            if name == DEFAULT_GROUP:
                self.error((*base, name), f"group name '{DEFAULT_GROUP}' is reserved", key=True)
                continue
            members: list[str] = []
            for i, member in enumerate(group.members):
                path = (*base, name, "members", i)
                if member not in model_ids:
                    hint = (
                        f" ('{member}' is an alias of '{aliases[member]}')"
                        if member in aliases
                        else ""
                    )
                    self.error(path, f"group {name}: unknown model '{member}'{hint}")
                elif member in members:
                    self.error(path, f"duplicate model member {member} found in group: {name}")
                elif member in owner:
                    self.error(
                        path,
                        f"model member {member} is used in multiple groups: "
                        f"{owner[member]} and {name}",
                    )
                else:
                    owner[member] = name
                    members.append(member)
            groups[name] = GroupConfig(
                name, group.swap, group.exclusive, group.persistent, tuple(members)
            )
        rest = tuple(sorted(model_ids - set(owner)))
        groups[DEFAULT_GROUP] = GroupConfig(DEFAULT_GROUP, members=rest)
        return groups

    # -- aliases ------------------------------------------------------------------------------
    def aliases(self, models: Mapping[str, RawModel]) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for model_id in models:  # file order: the second use of an alias is the error
            for i, alias in enumerate(models[model_id].aliases):
                path = ("models", model_id, "aliases", i)
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
        if raw.recipe is not None and driver == "process":
            driver = "docker"  # swapd: a recipe runs in a container
        cmd = self.command((*base, "cmd"), raw.cmd, driver == "process")
        cmd_stop = self.command((*base, "cmdStop"), raw.cmd_stop, False)
        if raw.proxy:
            try:
                url = urlsplit(raw.proxy)
                _ = url.port
                ok = url.scheme in ("http", "https") and bool(url.hostname)
            except ValueError:
                ok = False
            if not ok:
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
        timeouts = self.timeouts(model_id, raw)
        check = raw.check_endpoint.strip()
        kv_cache = None  # a llama.cpp extension adds --slot-save-path (swapd.extensions)
        if raw.kv_cache is not None:
            kv_cache = KvCacheConfig(raw.kv_cache.persist, raw.kv_cache.dir)
        strip = {
            p.strip()
            for p in f"{raw.filters.strip_params},{raw.filters.strip_params_legacy}".split(",")
        }
        return ModelConfig(
            id=model_id,
            cmd=cmd,
            cmd_stop=cmd_stop,
            proxy=raw.proxy,
            aliases=tuple(raw.aliases),
            env=env,
            check_endpoint=None if check == "none" else check,
            ttl=max(ttl, 0.0),
            unload_timeout=raw.unload_timeout or self.unload_timeout(top),
            health_check_timeout=top.health_check_timeout,
            unlisted=raw.unlisted,
            use_model_name=raw.use_model_name,
            name=raw.name.strip(),
            description=raw.description.strip(),
            concurrency_limit=(
                raw.concurrency_limit
                if raw.concurrency_limit > 0
                else default(RawModel, "concurrency_limit")
            ),
            filters=Filters(
                strip_params=tuple(sorted(strip - {"", "model"})),
                set_params={k: v for k, v in raw.filters.set_params.items() if k != "model"},
            ),
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
        )

    def timeouts(self, model_id: str, raw: RawModel) -> Timeouts:
        values = {
            "connect": raw.timeouts.connect,
            "responseHeader": raw.timeouts.response_header,
            "idleRead": raw.timeouts.idle_read,
        }
        for key, value in values.items():
            if value < 0:
                self.error(
                    ("models", model_id, "timeouts", key),
                    f"model {model_id}: timeouts.{key} must be >= 0 (0 = no timeout)",
                )
        return Timeouts(
            connect=max(raw.timeouts.connect, 0.0),
            response_header=max(raw.timeouts.response_header, 0.0),
            idle_read=max(raw.timeouts.idle_read, 0.0),
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
        for i, key in enumerate(top.api_keys):
            if not key:
                self.error(("apiKeys", i), "empty api key found in apiKeys")
            elif any(c.isspace() for c in key):
                self.error(("apiKeys", i), f"apiKeys[{i}]: api key cannot contain spaces")
        max_body = parse_size(top.max_body_size)
        if max_body is None:
            self.error(
                ("maxBodySize",),
                f"maxBodySize: expected a size in bytes like "
                f"33554432, 32MiB or 10MB, got {top.max_body_size!r}",
            )
            max_body = parse_size(default(RawTop, "max_body_size"))
        return {
            "health_check_timeout": top.health_check_timeout,
            "log_level": level,
            "log_to_stdout": to_stdout,
            "start_port": top.start_port,
            "global_ttl": top.global_ttl,
            "unload_timeout": self.unload_timeout(top),
            "api_keys": tuple(top.api_keys),
            "send_loading_state": top.send_loading_state,
            "include_aliases_in_list": top.include_aliases_in_list,
            "max_body_bytes": max_body,
            "metrics_max_in_memory": top.metrics_max_in_memory,
            "store_path": top.store.path or None,
            "log_ring_bytes": top.logs.ring_bytes if top.logs else None,
        }

    def preload(
        self, top: RawTop, model_ids: set[str], aliases: Mapping[str, str]
    ) -> tuple[str, ...]:
        preload: list[str] = []
        for i, name in enumerate(top.hooks.on_startup.preload):
            name = name.strip()
            real = name if name in model_ids else aliases.get(name)
            if real is None:
                if name:
                    self.issues.warn(
                        self.at(("hooks", "on_startup", "preload", i)),
                        f"hooks.on_startup.preload: unknown model '{name}' (ignored)",
                    )
            elif real not in preload:
                preload.append(real)
        return tuple(preload)
