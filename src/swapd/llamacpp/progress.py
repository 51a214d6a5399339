"""Load progress of a starting ``llama-server``, derived from its log lines.

Phases, in order: ``spawned`` (process started, nothing loaded yet) → ``loading`` (reading the
GGUF, allocating buffers) → ``warming up`` (context created, slots and warm-up run) → ``ready``
(model loaded, HTTP listening; swapd's health check is about to pass). The scheduler writes
``[swapd] starting <id>`` before spawning, so only the lines after the last such marker count.
"""

from __future__ import annotations

from collections.abc import Sequence

PHASE_LINES = 200  # log lines scanned for the current start
PHASES = ("spawned", "loading", "warming up", "ready")
START_MARKER = "[swapd] starting "

# (substring of a llama-server log line, phase it proves), later phases first.
_SIGNS: tuple[tuple[str, str], ...] = (
    ("server is listening", "ready"),
    ("listening on http", "ready"),
    ("model loaded", "ready"),
    ("warming up", "warming up"),
    ("initializing slots", "warming up"),
    ("initializing, n_slots", "warming up"),
    ("llama_context:", "warming up"),
    ("load_tensors:", "loading"),
    ("llama_model_loader:", "loading"),
    ("loading model", "loading"),
)


def phase_of(line: str) -> str | None:
    """The phase one log line proves, if any."""
    for sign, phase in _SIGNS:
        if sign in line:
            return phase
    return None


def load_phase(lines: Sequence[str]) -> tuple[str, str | None]:
    """(phase, latest engine line) of the start that ``lines`` (oldest first) end with."""
    start = 0
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(START_MARKER):
            start = i + 1
            break
    current = lines[start:]
    best = 0
    for line in current:
        phase = phase_of(line)
        if phase is not None:
            best = max(best, PHASES.index(phase))
    engine_lines = [ln for ln in current if not ln.startswith("[swapd]")]
    return PHASES[best], (engine_lines[-1] if engine_lines else None)
