"""Data-plane worker processes (``server.workers``): the owner keeps the scheduler, workers relay.

swapd.dataplane.owner runs in ``swapd serve``; swapd.dataplane.worker is each worker's program;
swapd.dataplane.channel carries their messages; swapd.dataplane.wire what is not a plain value.
docs/dataplane.md has the design and the figures.
"""
