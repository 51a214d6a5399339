"""Macros: ``${name}`` substitution on the positioned tree, ``${PORT}`` allocation, leftovers.

- Global ``macros`` apply to every top-level value except ``models``. Each model gets the list
  ``[MODEL_ID, globals…, its own…]`` (a model macro replaces a global of the same name in place)
  applied to every value of that model; map keys are never expanded.
- The list is applied from last to first, so a macro can use only macros declared before it: a
  forward reference is left over and reported as an unknown macro.
- A string that is exactly ``${m}`` takes the macro's typed value (int, float, bool).
- ``cmd``/``cmdStop`` comment lines are dropped first, so macros in them are ignored.
- ``filters.setParamsByID`` keys are the exception: they take the model's macros, ``${PORT}``
  included; two keys that expand alike are an error.
- ``${PORT}`` comes last: a model gets a port only if its expanded ``cmd`` uses ``${PORT}`` (for
  a driver other than ``process``: its cmd or its driver options block), or if it is a process
  model with neither ``proxy`` nor ``${PORT}``: it gets the default proxy on a port of its own,
  with a warning that the engine will not be found there (llama-swap's newest rule: only a
  ``proxy`` written with ``${PORT}`` and a cmd without it is an error). The port then applies
  throughout the model. On a first load, models are visited in sorted id order and each takes
  the next port from ``startPort`` (as llama-swap does). On a reload (swapd), a model that had a
  port keeps it, so adding a model does not renumber (and restart) the others; the new models
  take the lowest free ports from ``startPort``, in sorted id order. A changed ``startPort``
  renumbers everything.
- A ``driver: ray`` model gets no port here: its ``${PORT}`` (and ``${NODE_IP}``) are kept and
  the model's actor fills them with a free port and the address of the node it runs on
  (``swapd.drivers.ray``); it has no ``proxy``.
- ``${PID}`` is kept only in ``cmdStop`` (the driver substitutes it at stop time).
- ``${GPU}``, ``${GPUS}`` and the other placement macros of :data:`LATE` are kept in a model's
  settings unless a macro of that name is declared: the driver substitutes them at start time
  with the devices placement chose (``swapd.assignment``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swapd.config.command import parse_command, strip_comments
from swapd.config.issues import Issues
from swapd.config.schema import RawTop, default, driver_name
from swapd.config.tree import MapNode, Node, Path, Pos, Scalar, dotted, scalars

DEFAULT_PROXY = "http://127.0.0.1:${PORT}"
PORT_TOKEN = "${PORT}"
PID_TOKEN = "${PID}"
REFERENCE = re.compile(r"\$\{([^}]*)\}")
MACRO_NAME = re.compile(r"[a-zA-Z0-9_-]+\Z")
RESERVED = frozenset({"PID", "PORT", "MODEL_ID", "MODEL_PATH"})
# filled at start time by the driver from the placement (see swapd.assignment)
LATE = frozenset(
    {"GPU", "GPUS", "GPU_COUNT", "GPU_MEMORY_BYTES", "GPU_MEMORY_MIB", "GPU_MEMORY_FRACTION"}
)

# a ray model's actor fills these on its node (swapd.drivers.ray)
RAY_LATE = frozenset({"PORT", "NODE_IP"})

Macros = list[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class PreviousPorts:
    """The ``${PORT}`` numbers of the config being replaced (a reload)."""

    start: int  # its startPort: when that changes, every port is handed out afresh
    ports: Mapping[str, int] = field(default_factory=dict)  # model id -> port


def allocate_ports(
    users: list[str], start: int, previous: PreviousPorts | None = None
) -> dict[str, int]:
    """A port for each model id in ``users``: kept from ``previous`` where it had one, else the
    lowest port from ``start`` that no kept model holds (``users`` in sorted id order)."""
    ports: dict[str, int] = {}
    if previous is not None and previous.start == start:
        for model_id in users:
            port = previous.ports.get(model_id)
            if port is not None and port >= start and port not in ports.values():
                ports[model_id] = port
    taken = set(ports.values())
    port = start
    for model_id in users:
        if model_id in ports:
            continue
        while port in taken:
            port += 1
        ports[model_id] = port
        taken.add(port)
    return {model_id: ports[model_id] for model_id in users}


def format_value(value: Any) -> str:
    """A macro value inside a longer string (Go's ``%v`` for the common cases)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    return str(value)


def declare(node: Node | None, path: Path, prefix: str, issues: Issues) -> Macros:
    """The ordered, validated macros of one ``macros`` mapping."""
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return []
    if not isinstance(node, MapNode):
        issues.error(node.pos, f"{prefix}macros must be a mapping (name: value)", path)
        return []
    macros: Macros = []
    for name, value in node.items.items():
        where = node.key_pos(name)
        if len(name) >= 64:
            issues.error(where, f"{prefix}macro name '{name}' must be less than 64 characters")
        elif not MACRO_NAME.match(name):
            issues.error(where, f"{prefix}macro name '{name}' must match ^[a-zA-Z0-9_-]+$")
        elif name in RESERVED:
            issues.error(where, f"{prefix}macro name '{name}' is reserved")
        elif not isinstance(value, Scalar) or value.value is None:
            issues.error(value.pos, f"{prefix}macro '{name}' must be a string, number or bool")
        elif isinstance(value.value, str) and "${" + name + "}" in value.value:
            issues.error(value.pos, f"{prefix}macro '{name}' contains self-reference")
        else:
            macros.append((name, value.value))
    return macros


def substitute(value: Any, macros: Macros) -> Any:
    for name, replacement in reversed(macros):
        if not isinstance(value, str):
            break
        token = "${" + name + "}"
        if value == token:
            value = replacement
        elif token in value:
            value = value.replace(token, format_value(replacement))
    return value


def apply(node: Node, macros: Macros) -> None:
    for _, scalar in scalars(node):
        scalar.value = substitute(scalar.value, macros)


def _pinpoint(scalar: Scalar, token: str, texts: Mapping[str, list[str]]) -> Pos | None:
    """The position of ``token`` in the text of ``scalar``; None if it is not written there."""
    lines = texts.get(scalar.pos.file, [])
    first = scalar.pos.line
    for number in range(first, min(max(scalar.end, first), len(lines)) + 1):
        line = lines[number - 1]
        if line.strip().startswith("#"):
            continue
        found = line.find(token, scalar.pos.col - 1 if number == first else 0)
        if found >= 0:
            return Pos(scalar.pos.file, number, found + 1)
    return None


def check_leftovers(
    node: Node,
    path: Path,
    texts: Mapping[str, list[str]],
    issues: Issues,
    late: frozenset[str] = LATE,
) -> None:
    """Report every ``${…}`` that no macro replaced (except ``late`` ones in a model)."""
    for sub, scalar in scalars(node, path):
        if not isinstance(scalar.value, str):
            continue
        for m in REFERENCE.finditer(scalar.value):
            token = m.group(0)
            if token == PID_TOKEN and sub[-1:] == ("cmdStop",):
                continue
            name = m.group(1)
            if name in late and sub[:1] == ("models",):
                continue
            if name.startswith("env."):
                message = f"environment variable '{name[4:]}' is not set"
            else:
                message = f"unknown macro '{token}' in {dotted(sub)}"
            where = _pinpoint(scalar, token, texts)
            if where is None:
                where = scalar.pos
                message += " (from a macro value: a macro can only use macros declared before it)"
            issues.error(where, message, sub)
            break


def _text(node: Node | None) -> str:
    return node.value if isinstance(node, Scalar) and isinstance(node.value, str) else ""


def _key_text(key: str, macros: Macros) -> str:
    for name, replacement in reversed(macros):
        key = key.replace("${" + name + "}", format_value(replacement))
    return key


def expand_keys(model: MapNode, model_id: str, macros: Macros, issues: Issues) -> None:
    """Expand the keys of ``filters.setParamsByID`` (the only map keys that take macros)."""
    filters = model.get("filters")
    by_id = filters.get("setParamsByID") if isinstance(filters, MapNode) else None
    if not isinstance(filters, MapNode) or not isinstance(by_id, MapNode):
        return
    expanded = MapNode(by_id.pos)
    origin: dict[str, str] = {}
    for key, node in by_id.items.items():
        new = _key_text(key, macros)
        if new in expanded.items:
            issues.error(
                by_id.key_pos(key),
                f"model {model_id} filters.setParamsByID: keys "
                f'"{origin[new]}" and "{key}" resolve to the same value',
                ("models", model_id, "filters", "setParamsByID", new),
            )
            continue
        origin[new] = key
        expanded.put(new, node, by_id.key_pos(key))
    filters.put("setParamsByID", expanded, filters.key_pos("setParamsByID"))


def _check_key_leftovers(model: MapNode, model_id: str, issues: Issues) -> None:
    filters = model.get("filters")
    by_id = filters.get("setParamsByID") if isinstance(filters, MapNode) else None
    if not isinstance(by_id, MapNode):
        return
    for key in by_id.items:
        if (m := REFERENCE.search(key)) is not None:
            issues.error(
                by_id.key_pos(key),
                f"unknown macro '{m.group(0)}' found in model {model_id} filters.setParamsByID key",
                ("models", model_id, "filters", "setParamsByID", key),
            )


PORT_FLAG = re.compile(r"--?[a-z-]*port(?:=(\d+))?", re.IGNORECASE)


def port_in_command(text: str) -> tuple[str, int] | None:
    """``("--listen-port", 9999)`` for a fixed port flag written in a command line."""
    try:
        argv = parse_command(text)
    except ValueError:
        return None
    for i, arg in enumerate(argv):
        m = PORT_FLAG.fullmatch(arg)
        if m is None:
            continue
        value = m.group(1) or (argv[i + 1] if i + 1 < len(argv) else "")
        if value.isdigit() and 0 < int(value) < 65536:
            return arg.split("=")[0], int(value)
    return None


def _implicit_proxy_warning(model_id: str, model: MapNode, port: int) -> str:
    message = (
        f"model {model_id}: no proxy is set and cmd does not use ${{PORT}}, so requests go to "
        f"http://127.0.0.1:{port}, where the engine will not be found"
    )
    found = port_in_command(_text(model.get("cmd")))
    if found is not None:
        flag, fixed = found
        return f"{message}; set proxy: http://127.0.0.1:{fixed} (cmd has {flag} {fixed})"
    return f"{message}; use ${{PORT}} in cmd or set proxy"


def _uses_port(model: MapNode, driver: str) -> bool:
    if PORT_TOKEN in _text(model.get("cmd")):
        return True
    options = model.get(driver) if driver != "process" else None
    return options is not None and any(
        isinstance(s.value, str) and PORT_TOKEN in s.value for _, s in scalars(options)
    )


def expand(
    root: MapNode,
    texts: Mapping[str, list[str]],
    issues: Issues,
    previous: PreviousPorts | None = None,
) -> dict[str, int]:
    """Expand all macros in place; returns the allocated ``${PORT}`` of each model using one
    (keeping the ports of ``previous`` where it can)."""
    global_macros = declare(root.pop("macros"), ("macros",), "", issues)
    for key, node in root.items.items():
        if key != "models":
            apply(node, global_macros)
            check_leftovers(node, (key,), texts, issues)

    models = root.get("models")
    if not isinstance(models, MapNode):
        return {}
    for model_id, model in models.items.items():
        if not isinstance(model, MapNode):
            continue
        for key in ("cmd", "cmdStop"):
            command = model.get(key)
            if isinstance(command, Scalar) and isinstance(command.value, str):
                command.value = strip_comments(command.value)
        own = declare(
            model.pop("macros"), ("models", model_id, "macros"), f"model {model_id}: ", issues
        )
        merged = [("MODEL_ID", model_id), *global_macros]
        names = [name for name, _ in merged]
        for name, value in own:
            if name in names:
                merged[names.index(name)] = (name, value)
            else:
                merged.append((name, value))
        apply(model, merged)
        expand_keys(model, model_id, merged, issues)

    start = root.get("startPort")
    first = start.value if isinstance(start, Scalar) and type(start.value) is int else None
    if first is None:
        first = int(default(RawTop, "start_port"))
    users: list[str] = []
    implicit: set[str] = set()  # no proxy written, no ${PORT} in cmd: a port all the same
    for model_id, model in sorted(models.items.items()):
        if not isinstance(model, MapNode):
            continue
        driver = driver_name(model)
        if driver == "ray":
            continue  # the actor picks its port on its node
        if _uses_port(model, driver):
            users.append(model_id)
        elif driver == "process" and model.get("proxy") is None and _text(model.get("cmd")):
            users.append(model_id)
            implicit.add(model_id)
    ports = allocate_ports(users, first, previous)
    for model_id in sorted(models.items):
        model = models.items[model_id]
        if not isinstance(model, MapNode):
            continue
        driver = driver_name(model)
        proxy = model.get("proxy")
        if proxy is None and (model_id in ports or driver == "process"):
            at = models.key_pos(model_id)
            model.put("proxy", Scalar(DEFAULT_PROXY, at), at)
        if driver == "process" and model.get("cmd") is None:
            issues.mark_bad(("models", model_id, "proxy"))  # "cmd is required" says it all
        elif model_id in implicit:
            message = _implicit_proxy_warning(model_id, model, ports[model_id])
            issues.warn(models.key_pos(model_id), message)
        elif proxy is not None and PORT_TOKEN in _text(proxy) and model_id not in ports:
            issues.error(
                proxy.pos,
                f"model {model_id}: proxy uses ${{PORT}} but cmd does not - ${{PORT}} is only "
                "available when used in cmd",
                ("models", model_id, "proxy"),
            )
        if model_id in ports:
            apply(model, [("PORT", ports[model_id])])
            expand_keys(model, model_id, [("PORT", ports[model_id])], issues)
        late = LATE | RAY_LATE if driver == "ray" else LATE
        check_leftovers(model, ("models", model_id), texts, issues, late)
        _check_key_leftovers(model, model_id, issues)
    return ports
