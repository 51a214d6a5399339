"""The ``docker`` driver: an engine in a container on one of the configured nodes (docker-py).

The model's ``docker:`` block (or its rendered recipe, see :mod:`swapd.recipes`) is the container
spec. Modules: ``driver`` (one engine's lifecycle, sleep/wake), ``container`` (labels, config
hash, ``containers.run`` arguments), ``clients`` (docker-py clients per endpoint) and ``runtime``
(the state all engines of one swapd share: instance label, adoption, clients, GPU placements;
startup ``reconcile`` and shutdown ``cleanup``).

``SPEC`` is the spec the driver registry finds (``swapd.drivers.docker:SPEC``), bound to
``RUNTIME``; ``DockerRuntime().spec()`` makes another with state of its own.
"""

from swapd.drivers.docker.container import config_hash
from swapd.drivers.docker.driver import DockerDriver
from swapd.drivers.docker.runtime import DockerRuntime

__all__ = ["RUNTIME", "SPEC", "DockerDriver", "DockerRuntime", "config_hash"]

RUNTIME = DockerRuntime()
SPEC = RUNTIME.spec()
