"""Observation: log rings, (later) events, activity and metrics."""
