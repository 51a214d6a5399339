"""Run the echo engine: ``python tests/fakes/engine.py --port P [--model NAME] ...``.

A thin wrapper over :mod:`swapd.echo` so configs can name a file path; see its ``--help``.
"""

from __future__ import annotations

from swapd.echo import main

if __name__ == "__main__":
    main()
