"""Config sources: read the files, substitute ``${env.…}``, parse YAML into positioned nodes.

Sources are the ``--config`` file, then the ``*.yml``/``*.yaml`` files at the top of
``--config-dir`` sorted by name. Empty or comment-only files are skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from swapd.config import env as envvars
from swapd.config.issues import Issues
from swapd.config.tree import ColMap, MapNode, Pos, convert

DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value', re.DOTALL)
FLOW_HINT = (
    "; hint: a ${…} macro inside a [ … ] flow list must be quoted, e.g. "
    '["${MODELS}/q.gguf"], or use a block list or a block scalar (cmd: |)'
)


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # as reported in issues
    text: str


def read_sources(
    path: str | os.PathLike[str] | None, config_dir: str | os.PathLike[str] | None, issues: Issues
) -> list[Source]:
    sources: list[Source] = []
    if path is None and config_dir is None:
        issues.error(
            Pos("(none)", 1, 1), "no configuration given: pass a config file, a config dir, or both"
        )
        return sources
    files: list[FsPath] = []
    if path is not None:
        files.append(FsPath(path))
    if config_dir is not None:
        folder = FsPath(config_dir)
        try:
            names = sorted(
                p.name for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()
            )
        except OSError as exc:
            issues.error(Pos(str(folder), 1, 1), f"cannot read config dir: {exc.strerror or exc}")
            names = []
        if path is not None and FsPath(path).resolve().parent == folder.resolve():
            issues.error(
                Pos(str(path), 1, 1), f"config file is also inside the config dir {str(folder)!r}"
            )
            return sources
        files.extend(folder / n for n in names)
    for file in files:
        try:
            sources.append(Source(str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            issues.error(Pos(str(file), 1, 1), f"cannot read config file: {reason}")
    return sources


def _syntax_error(
    exc: MarkedYAMLError, text: str, file: str, colmap: ColMap, issues: Issues
) -> None:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark is not None else (0, 0)
    message = exc.problem or exc.context or "invalid YAML"
    if duplicate := DUPLICATE_KEY.match(message):
        message = f'duplicate key "{duplicate.group(1)}"'
    elif message == "mapping values are not allowed here":
        message += " (check this line's indentation, or quote a value that contains ': ')"
    if exc.context and exc.problem and exc.context_mark is not None:
        cm = exc.context_mark
        where = f"line {cm.line + 1}, column {colmap(cm.line, cm.column) + 1}"
        message += f" ({exc.context} at {where})"
    lines = text.split("\n")
    here = lines[line][col:] if line < len(lines) else ""
    before = lines[line][:col] if line < len(lines) else ""
    if "flow sequence" in str(exc.context) and (here.startswith("{") and before.endswith("$")):
        message += FLOW_HINT
        col -= 1  # point at the "$" of the macro
    issues.error(Pos(file, line + 1, colmap(line, col) + 1), message)


def parse(source: Source, env: Mapping[str, str], issues: Issues) -> MapNode | None:
    """One file as a positioned mapping; None when empty or broken (issues say why)."""
    before = len(issues.errors)
    text, colmap = envvars.substitute(source.text, source.name, env, issues)
    if len(issues.errors) > before:
        return None  # unset variables: parsing the half-substituted text only adds noise
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        _syntax_error(exc, text, source.name, colmap, issues)
        return None
    except (YAMLError, ValueError, TypeError) as exc:
        issues.error(Pos(source.name, 1, 1), f"invalid YAML: {exc}")
        return None
    except RecursionError:
        line, col = _deepest(text)
        issues.error(Pos(source.name, line + 1, colmap(line, col) + 1), "YAML nested too deeply")
        return None
    if data is None:
        return None
    try:
        root = convert(data, source.name, colmap, text.count("\n") + 1)
    except RecursionError:
        issues.error(Pos(source.name, 1, 1), "YAML nested too deeply")
        return None
    if not isinstance(root, MapNode):
        issues.error(root.pos, "the top level of a config file must be a mapping (key: value)")
        return None
    return root


def _deepest(text: str) -> tuple[int, int]:
    """Where the flow collections (``[`` ``{``) of ``text`` first nest deepest (0-based)."""
    depth = best = 0
    where = (0, 0)
    for line_no, line in enumerate(text.split("\n")):
        for col, char in enumerate(line):
            if char in "[{":
                depth += 1
                if depth > best:
                    best, where = depth, (line_no, col)
            elif char in "]}":
                depth = max(0, depth - 1)
    return where
