"""swapd.testing's port helpers draw below the kernel's ephemeral range."""

from __future__ import annotations

import socket

from swapd.testing import PORT_RANGE, free_port, free_port_range


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except OSError:
        return 32768


def test_test_ports_never_come_from_the_ephemeral_range_client_sockets_use() -> None:
    assert PORT_RANGE[1] < ephemeral_low()
    for _ in range(50):
        assert PORT_RANGE[0] <= free_port() < PORT_RANGE[1]
        base = free_port_range(8)
        assert PORT_RANGE[0] <= base and base + 8 <= PORT_RANGE[1]


def test_a_port_range_is_free_to_bind() -> None:
    base = free_port_range(4)
    socks = [socket.socket() for _ in range(4)]
    try:
        for i, sock in enumerate(socks):
            sock.bind(("127.0.0.1", base + i))
    finally:
        for sock in socks:
            sock.close()
