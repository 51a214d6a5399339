"""The HTTP surface: a pure-ASGI proxy that asks the scheduler for leases and streams bytes."""
