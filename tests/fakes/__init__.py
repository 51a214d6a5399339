"""Fake engines for tests. ``python tests/fakes/engine.py ARGS`` runs :mod:`swapd.echo`."""
