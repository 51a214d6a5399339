"""Enough of a Dockerfile's semantics to run its build stages without Docker (CI cannot pull
base images): parse stages, apply ``.dockerignore`` to the context, and carry out WORKDIR, ENV,
ARG, COPY (from the context or ``--from`` a stage) and RUN in one directory per stage, where a
container path ``/a/b`` is ``<stage root>/a/b``. RUN commands run on this machine with its tools
(node, pip), so they must use paths relative to WORKDIR.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[-1].strip()
        form = json.loads(text) if text.startswith("[") else None
        assert form is None or all(isinstance(w, str) for w in form)
        return form


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile (line continuations joined, comments dropped)."""
    stages: list[Stage] = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        start = start or number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).strip().partition(" ")
        logical, at = "", start
        start = 0
        if keyword.upper() == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            stages[-1].instructions.append(Instruction(keyword.upper(), args.strip(), at))
    return stages


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over relative paths."""
    glob = str(PurePosixPath(glob.strip("/")))
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class Context:
    """The build context: a directory and its .dockerignore rules (last match wins; a rule
    matching a parent directory matches everything in it)."""

    root: Path
    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (include?, pattern)

    @classmethod
    def of(cls, root: Path) -> Context:
        ignore = root / ".dockerignore"
        rules: list[tuple[bool, re.Pattern[str]]] = []
        lines = ignore.read_text().splitlines() if ignore.is_file() else []
        for line in (raw.strip() for raw in lines):
            if line and not line.startswith("#"):
                negated = line.startswith("!")
                rules.append((negated, _pattern(line.removeprefix("!"))))
        return cls(root, tuple(rules))

    def included(self, relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        keep = True
        for include, pattern in self.rules:
            if any(pattern.match(c) for c in candidates):
                keep = include
        return keep

    def copy(self, source: str, target: Path) -> None:
        """COPY of ``source`` (a file or directory of the context) to ``target``."""
        origin = self.root / source.strip("/")
        if origin.is_file():
            if self.included(source):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
            return
        for path in sorted(origin.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if path.is_file() and self.included(relative):
                dest = target / path.relative_to(origin)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


@dataclass
class Build:
    """Runs stages in ``workspace``: stage N's filesystem is ``workspace/<name or N>``."""

    context: Context
    workspace: Path
    env: Mapping[str, str]  # the host environment RUN commands get (plus the stage's ENV/ARG)
    roots: dict[str, Path] = field(default_factory=dict)

    def run(self, stage: Stage, index: int) -> Path:
        root = self.workspace / (stage.name or str(index))
        root.mkdir(parents=True)
        self.roots[stage.name or str(index)] = root
        workdir, env = PurePosixPath("/"), dict(self.env)
        for step in stage.instructions:
            if step.keyword == "WORKDIR":
                workdir = workdir / step.args
                self._inside(root, workdir).mkdir(parents=True, exist_ok=True)
            elif step.keyword in ("ENV", "ARG"):
                for word in shlex.split(step.args):
                    name, _, value = word.partition("=")
                    env[name] = value
            elif step.keyword == "COPY":
                self._copy(step, root, workdir)
            elif step.keyword == "RUN":
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", step.args],
                    cwd=self._inside(root, workdir),
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise AssertionError(
                        f"Dockerfile line {step.line}: RUN {step.args} exited {done.returncode}\n"
                        f"{done.stdout}{done.stderr}"
                    )
        return root

    @staticmethod
    def _inside(root: Path, path: PurePosixPath) -> Path:
        return root / str(path).lstrip("/")

    def _copy(self, step: Instruction, root: Path, workdir: PurePosixPath) -> None:
        words = shlex.split(step.args)
        stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        *sources, dest = [w for w in words if not w.startswith("--")]
        to_dir = dest.endswith("/") or len(sources) > 1
        target = self._inside(root, workdir / dest)
        for source in sources:
            name = PurePosixPath(source.rstrip("/")).name
            if stage is None:
                origin = self.context.root / source.strip("/")
                self.context.copy(source, target / name if to_dir and origin.is_file() else target)
                continue
            origin = self._inside(self.roots[stage], PurePosixPath(source))
            if not origin.exists():
                raise AssertionError(f"Dockerfile line {step.line}: {source} not in stage {stage}")
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / name if to_dir else target)


def host_env(*first: Path) -> dict[str, str]:
    """This machine's environment with ``first`` directories put first on PATH."""
    path = os.pathsep.join([*(str(d) for d in first), os.environ.get("PATH", os.defpath)])
    return {**os.environ, "PATH": path}
