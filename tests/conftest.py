from __future__ import annotations

import pytest

from swapd.testing import free_port_range


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start_port() -> int:
    """The first of 8 free consecutive ports, for a config's ``startPort``."""
    return free_port_range(8)
