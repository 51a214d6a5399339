"""The matrix router's DSL: named sets of models that may run together.

A set is an expression over models: ``&`` (may run together) binds tighter than ``|`` (either
side), parentheses group, and ``+name`` inlines another set. An identifier (unicode letters and
digits, ``_``, ``-``, ``.``) is a var (a short name from ``vars``) or a real model id; a var wins
over a model of the same name. Aliases are not identifiers here (as in llama-swap), but the error
says which model the alias names.

Each set expands to its *alternatives*: ``(a|b)&c`` → ``{a,c}``, ``{b,c}``. Sets have subset
semantics (a set says what *may* coexist), so an alternative contained in another alternative of
the same set can never be the better choice and is dropped. Sets are ordered
topological-then-definition (a referenced set comes before the sets that reference it); the
solver (``swapd.policy``) breaks cost ties toward the earlier set.

Differences from llama-swap, on purpose:

- Every mistake is reported in one run (llama-swap stops at the first), each at its key.
- A var and its model given different ``evict_costs`` is an error; llama-swap keeps whichever
  its map iteration visits last.
- A cycle names every set on it (``a -> b -> a``); syntax errors give a 1-based column.
- An alias used where a model id belongs is still refused, but the message names its model.
- Sets are expanded when the config loads; a set of more than ``MAX_ALTERNATIVES``
  combinations is refused (llama-swap solves without expanding and has no limit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any, TypeAlias

from swapd.config.model import MatrixConfig, MatrixSet
from swapd.config.tree import Path

ErrorSink: TypeAlias = Callable[[Path, str], None]
Alternatives: TypeAlias = tuple[frozenset[str], ...]

_VAR_KEY = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")
# alternatives one set may expand to; beyond it the config is refused with a clear error
MAX_ALTERNATIVES = 4096


class DslError(Exception):
    """A syntax error in one set's expression; ``column`` is 1-based in the expression."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        if self.column is None:
            return self.message
        return f"{self.message} at column {self.column}"


# ── syntax ──────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "ref", "&", "|", "(", ")", "end"
    text: str
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class Leaf:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]


Expr: TypeAlias = Leaf | Ref | And | Or


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_-."


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "&|()":
            tokens.append(Token(ch, ch, i + 1))
            i += 1
        elif ch == "+" or _ident_char(ch):
            start = i + (ch == "+")
            end = start
            while end < len(text) and _ident_char(text[end]):
                end += 1
            if end == start:
                raise DslError('expected a set name after "+"', i + 1)
            kind = "ref" if ch == "+" else "name"
            tokens.append(Token(kind, text[start:end], i + 1))
            i = end
        else:
            raise DslError(f'unexpected character "{ch}"', i + 1)
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def either(self) -> Expr:
        parts = [self.both()]
        while self.peek().kind == "|":
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def both(self) -> Expr:
        parts = [self.atom()]
        while self.peek().kind == "&":
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def atom(self) -> Expr:
        token = self.take()
        if token.kind == "name":
            return Leaf(token.text, token.column)
        if token.kind == "ref":
            return Ref(token.text, token.column)
        if token.kind == "(":
            inner = self.either()
            if self.peek().kind != ")":
                raise DslError(f'missing ")" to close the "(" at column {token.column}')
            self.take()
            return inner
        expected = 'expected a model, a var, "+set" or "("'
        if token.kind == "end":
            raise DslError(f"{expected} at the end")
        raise DslError(f'{expected}, found "{token.text}"', token.column)


def parse(text: str) -> Expr:
    """Parse one set's expression, or raise ``DslError``."""
    if not text.strip():
        raise DslError("empty expression")
    parser = _Parser(tokenize(text))
    expr = parser.either()
    extra = parser.peek()
    if extra.kind != "end":
        raise DslError(f'unexpected "{extra.text}" after the expression', extra.column)
    return expr


def _walk(expr: Expr) -> Iterable[Leaf | Ref]:
    if isinstance(expr, Leaf | Ref):
        yield expr
    else:
        for part in expr.parts:
            yield from _walk(part)


# ── expansion ───────────────────────────────────────────────────────────────────────────────


class TooLarge(Exception):
    pass


def maximal(alternatives: Iterable[frozenset[str]]) -> Alternatives:
    """Drop duplicates and alternatives contained in another; keep first-seen order."""
    unique = list(dict.fromkeys(alternatives))
    by_size = sorted(unique, key=len, reverse=True)
    kept: list[frozenset[str]] = []
    for alt in by_size:
        if not any(alt < other for other in kept):
            kept.append(alt)
    keep = set(kept)
    return tuple(a for a in unique if a in keep)


def expand(
    expr: Expr, resolve: Callable[[str], str], sets: Mapping[str, Alternatives]
) -> Alternatives:
    """Alternatives of ``expr``: leaves resolved to model ids, references from ``sets``."""
    if isinstance(expr, Leaf):
        return (frozenset((resolve(expr.name),)),)
    if isinstance(expr, Ref):
        return sets[expr.name]
    if isinstance(expr, Or):
        return maximal(alt for part in expr.parts for alt in expand(part, resolve, sets))
    combined: Alternatives = (frozenset(),)
    for part in expr.parts:
        right = expand(part, resolve, sets)
        if len(combined) * len(right) > MAX_ALTERNATIVES:
            raise TooLarge
        combined = maximal(left | alt for left in combined for alt in right)
    return combined


# ── the block ───────────────────────────────────────────────────────────────────────────────


def _order(
    names: list[str], deps: Mapping[str, list[str]], error: ErrorSink, base: Path
) -> list[str]:
    """Topological-then-definition order; a cycle is reported once, naming it."""
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    order: list[str] = []
    path: list[str] = []

    def visit(name: str) -> bool:
        if state.get(name) == 2:
            return True
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            error(
                (*base, "sets", cycle[0]), "circular reference between sets: " + " -> ".join(cycle)
            )
            return False
        state[name] = 1
        path.append(name)
        ok = all(visit(dep) for dep in deps.get(name, ()))
        path.pop()
        state[name] = 2
        if ok:
            order.append(name)
        return ok

    for name in names:
        visit(name)
    return order


def build_matrix(
    vars: Mapping[str, str],
    evict_costs: Mapping[str, Any],
    sets: Mapping[str, str],
    model_ids: Set[str],
    aliases: Mapping[str, str],
    error: ErrorSink,
    base: Path,
) -> MatrixConfig:
    """Check and expand the matrix block; report problems through ``error(path, message)``.

    Every problem is reported (a set with an error is left out of the result), so one run of
    ``swapd check`` shows them all.
    """
    good_vars: dict[str, str] = {}
    for key, model in vars.items():
        if not _VAR_KEY.match(key):
            error(
                (*base, "vars", key),
                f'var key "{key}" must be 1-32 letters, digits, "-" or "." (no "_")',
            )
        elif model not in model_ids:
            hint = f' ({model!r} is an alias of "{aliases[model]}")' if model in aliases else ""
            error((*base, "vars", key), f'var key "{key}" references unknown model "{model}"{hint}')
        else:
            good_vars[key] = model

    def lookup(name: str) -> str | None:
        if name in vars:
            return good_vars.get(name, "")  # "" = a var with its own error
        return name if name in model_ids else None

    def unknown(name: str) -> str:
        if name in aliases:
            return (
                f'unknown var or model "{name}" (it is an alias of "{aliases[name]}": '
                "use the model id or a var)"
            )
        return f'unknown var or model "{name}"'

    costs: dict[str, int] = {}
    cost_key: dict[str, str] = {}
    for key, value in evict_costs.items():
        path = (*base, "evict_costs", key)
        target = lookup(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            error(path, f'evict_cost for "{key}" must be a positive integer, got {value!r}')
        elif target is None:
            error(path, f"evict_costs: {unknown(key)}")
        elif not target:
            continue
        elif target in costs and costs[target] != value:
            error(
                path,
                f'evict_costs: "{key}" and "{cost_key[target]}" both set the cost of model '
                f'"{target}" ({value} and {costs[target]})',
            )
        else:
            costs[target] = value
            cost_key.setdefault(target, key)

    if not sets:
        error((*base, "sets"), "matrix must define at least one set")
        return MatrixConfig(evict_costs=costs, vars=good_vars)

    parsed: dict[str, Expr] = {}
    deps: dict[str, list[str]] = {}
    for name, dsl in sets.items():
        path = (*base, "sets", name)
        try:
            expr = parse(dsl)
        except DslError as exc:
            error(path, f'set "{name}": {exc}')
            continue
        problems: list[str] = []
        refs: list[str] = []
        for item in _walk(expr):
            if isinstance(item, Ref):
                if item.name not in sets:
                    problems.append(f'set "{name}" references undefined set "{item.name}"')
                elif item.name not in refs:
                    refs.append(item.name)
            elif lookup(item.name) is None:
                problems.append(f'set "{name}": {unknown(item.name)}')
            elif not lookup(item.name):
                problems.append("")  # the var's own error explains it
        if problems:
            if problems[0]:
                error(path, problems[0])
            continue
        parsed[name] = expr
        deps[name] = refs

    expanded: dict[str, Alternatives] = {}
    out: list[MatrixSet] = []
    for name in _order(list(sets), deps, error, base):
        expr_or_none = parsed.get(name)
        if expr_or_none is None or any(dep not in expanded for dep in deps[name]):
            continue  # its own error, or one of a set it uses, was reported
        try:
            alternatives = expand(expr_or_none, lambda n: good_vars.get(n, n), expanded)
        except TooLarge:
            error(
                (*base, "sets", name),
                f'set "{name}" expands to more than {MAX_ALTERNATIVES} combinations of models; '
                "split it into smaller sets",
            )
            continue
        expanded[name] = alternatives
        out.append(MatrixSet(name=name, dsl=sets[name], alternatives=alternatives))
    return MatrixConfig(sets=tuple(out), evict_costs=costs, vars=good_vars)
