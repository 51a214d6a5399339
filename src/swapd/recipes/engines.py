"""What swapd knows about each engine a recipe may name: its port and the model names it answers.

A request reaches the engine with a ``model`` field; vLLM answers 404 "The model `X` does not
exist" for a name it does not serve (SGLang's Python server accepts any name today, sglang#31404,
but reads LoRA ``base:adapter`` syntax from it, and PR 31419 would add the 404). vLLM's
``--served-model-name`` takes several names and llama-server's ``--alias`` a comma-separated list
(llama.cpp PR 19926, 2026-02), so their recipes serve under the swapd model id too. SGLang's
``--served-model-name`` takes one name and ``trtllm-serve`` serves the model under the name it
was given; for every recipe, ``swapd.recipes.container`` sets the model's ``useModelName`` to the
first name the engine answers to (the swapd id where it can), so the proxy forwards a name the
engine accepts, for an alias too. :func:`accepted_names` reads those names back from a rendered
command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swapd.config.command import flag_value


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    port: int  # where the engine listens by default
    several_names: bool  # it can answer to more than one model name


ENGINES: dict[str, Engine] = {
    "vllm": Engine("vllm", 8000, True),
    "trtllm": Engine("trtllm", 8000, False),
    "llamacpp": Engine("llamacpp", 8080, True),
    "sglang": Engine("sglang", 30000, False),
}


def _values(argv: Sequence[str], flag: str) -> list[str]:
    """The values after ``flag`` up to the next option (vLLM's ``nargs="+"``)."""
    if flag not in argv:
        return []
    start = len(argv) - 1 - list(reversed(argv)).index(flag) + 1
    out = []
    for arg in argv[start:]:
        if arg.startswith("-"):
            break
        out.append(arg)
    return out


def _positional(argv: Sequence[str]) -> str | None:
    return argv[0] if argv and not argv[0].startswith("-") else None


def accepted_names(engine: str, argv: Sequence[str]) -> tuple[str, ...]:
    """The model names the engine answers to when run with ``argv`` (its arguments after the
    entrypoint), in its own order (the first is the one it reports); () when any name goes."""
    names: list[str] = []
    if engine == "vllm":
        names = _values(argv, "--served-model-name") or [n for n in [_positional(argv)] if n]
    elif engine == "sglang":
        name = flag_value(argv, "--served-model-name") or flag_value(
            argv, "--model-path", "--model"
        )
        names = [name] if name else []
    elif engine == "llamacpp":
        alias = flag_value(argv, "--alias", "-a")
        names = [n.strip() for n in alias.split(",") if n.strip()] if alias else []
    elif engine == "trtllm":
        names = [n for n in [_positional(argv)] if n]
    return tuple(dict.fromkeys(names))
