"""``${env.NAME}``: environment variables, substituted in the text of each file before parsing.

Working on the text (as llama-swap does) means a reference works anywhere, even unquoted in a
flow list (``[${env.KEY}]``). References inside YAML comments are ignored: the file is parsed
first (when it parses) to learn which names the data really uses. Unlike llama-swap, a value is
escaped only where the reference sits inside a quoted scalar (``\\``/``"`` in double quotes, ``'``
in single quotes); in a plain scalar the value goes in verbatim.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from swapd.config.issues import Issues
from swapd.config.tree import ColMap, Pos, convert, key_text, scalars

ENV_REF = re.compile(r"\$\{env\.([^}]*)\}")
ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _scan(line: str, stop: int) -> tuple[str | None, bool]:
    """Quote context (``'``, ``"`` or None) at ``stop``, and whether a comment started before."""
    quote: str | None = None
    i = 0
    while i < stop:
        c = line[i]
        if quote == '"' and c == "\\":
            i += 2
            continue
        if quote is None and c in "'\"" and (i == 0 or line[i - 1] in " \t[{,:-?"):
            quote = c
        elif quote is not None and c == quote:
            if quote == "'" and line[i + 1 : i + 2] == "'":
                i += 2
                continue
            quote = None
        elif quote is None and c == "#" and (i == 0 or line[i - 1] in " \t"):
            return None, True
        i += 1
    return quote, False


def _escape(value: str, quote: str | None) -> str:
    if quote == '"':
        return value.replace("\\", "\\\\").replace('"', '\\"')
    if quote == "'":
        return value.replace("'", "''")
    return value


def _names_in_data(text: str) -> set[str] | None:
    """Env names referenced by the parsed data (keys or values); None if it does not parse."""
    try:
        data = YAML(typ="rt").load(text)
    except (YAMLError, ValueError, TypeError, RecursionError):
        return None
    names: set[str] = set()
    if data is None:
        return names
    root = convert(data, "", lambda _line, col: col, 0)
    texts = [s.value for _, s in scalars(root) if isinstance(s.value, str)]

    def keys(obj: object) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                texts.append(key_text(k))
                keys(v)
        elif isinstance(obj, list):
            for v in obj:
                keys(v)

    keys(data)
    for t in texts:
        names.update(m.group(1) for m in ENV_REF.finditer(t))
    return names


class _Shifts:
    """Column bookkeeping: substituted text → the column the user wrote."""

    def __init__(self) -> None:
        # per line: (new_start, new_end, orig_start, orig_end), left to right
        self.lines: dict[int, list[tuple[int, int, int, int]]] = {}

    def add(self, line: int, span: tuple[int, int, int, int]) -> None:
        self.lines.setdefault(line, []).append(span)

    def __call__(self, line: int, col: int) -> int:
        spans = self.lines.get(line, [])
        i = bisect.bisect_right([s[0] for s in spans], col) - 1
        if i < 0:
            return col
        _, new_end, orig_start, orig_end = spans[i]
        return orig_start if col < new_end else col - new_end + orig_end


def substitute(text: str, file: str, env: Mapping[str, str], issues: Issues) -> tuple[str, ColMap]:
    """Replace ``${env.NAME}`` in ``text``; report unset or unusable variables where written."""
    used = _names_in_data(text)
    shifts = _Shifts()
    out: list[str] = []
    pending: dict[str, Pos] = {}  # unset names seen only in apparent comments
    reported: set[str] = set()
    for lineno, line in enumerate(text.split("\n")):
        pieces: list[str] = []
        last = 0
        delta = 0
        for m in ENV_REF.finditer(line):
            name = m.group(1)
            quote, in_comment = _scan(line, m.start())
            if used is not None and name not in used:
                continue  # only in comments
            pos = Pos(file, lineno + 1, m.start() + 1)
            value = env.get(name) if ENV_NAME.match(name) else None
            if value is None:
                if in_comment:
                    pending.setdefault(name, pos)
                elif name not in reported:
                    reported.add(name)
                    what = "is not set" if ENV_NAME.match(name) else "is not a valid name"
                    issues.error(pos, f"environment variable '{name}' {what}")
                continue
            if any(c in value for c in "\n\r\0"):
                if not in_comment and name not in reported:
                    reported.add(name)
                    issues.error(pos, f"environment variable '{name}' contains a newline or NUL")
                continue
            new = _escape(value, quote)
            pieces.append(line[last : m.start()])
            new_start = m.start() + delta
            pieces.append(new)
            shifts.add(lineno, (new_start, new_start + len(new), m.start(), m.end()))
            delta += len(new) - (m.end() - m.start())
            last = m.end()
        pieces.append(line[last:])
        out.append("".join(pieces))
    if used is not None:
        for name, pos in pending.items():
            if name not in reported:
                issues.error(pos, f"environment variable '{name}' is not set")
    return "\n".join(out), shifts


def referenced_values(texts: Iterable[str], env: Mapping[str, str]) -> frozenset[str]:
    """The values of the set variables that ``texts`` reference with ``${env.NAME}``: secrets
    that swapd must never show (``Config.secrets``). A reference in a comment counts too:
    hiding a value too many is harmless."""
    values: set[str] = set()
    for text in texts:
        for m in ENV_REF.finditer(text):
            value = env.get(m.group(1))
            if value:
                values.add(value)
    return frozenset(values)
