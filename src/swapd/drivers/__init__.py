"""Runtimes that run an engine for a model: built-ins and third-party, through one registry."""
