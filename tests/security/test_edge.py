"""swapd's own HTTP edge: the ``server:`` limits, enforced on real ``swapd serve`` processes."""

from __future__ import annotations

import pytest

from swapd.config import Config, load_text
from swapd.errors import ConfigError

MODELS = "models: {a: {cmd: 'x ${PORT}'}}\n"


def load(text: str) -> Config:
    return load_text(text, "c.yaml", env={})


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(i) for i in info.value.issues]


def test_server_block_defaults_when_absent() -> None:
    server = load(MODELS).server
    assert (server.max_header_bytes, server.header_timeout, server.keepalive_timeout) == (
        64 * 1024,
        10.0,
        5.0,
    )
    assert (server.max_connections, server.max_json_depth) == (0, 128)
    assert server.allowed_hosts == () and server.trusted_proxies == ()


def test_server_block_reads_sizes_hosts_and_networks() -> None:
    server = load(
        MODELS
        + """
server:
  maxHeaderBytes: 32KiB
  headerTimeout: 2.5
  keepAliveTimeout: 1
  maxConnections: 50
  maxJsonDepth: 16
  allowedHosts: [Swapd.Example.com, "*"]
  trustedProxies: [10.0.0.1, 192.168.0.0/16, "::1", "*"]
"""
    ).server
    assert server.max_header_bytes == 32 * 1024
    assert (server.header_timeout, server.keepalive_timeout) == (2.5, 1.0)
    assert (server.max_connections, server.max_json_depth) == (50, 16)
    assert server.allowed_hosts == ("swapd.example.com", "*")
    assert server.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128", "*")


def test_server_block_bad_values_point_at_their_line() -> None:
    found = errors(
        MODELS
        + """server:
  maxHeaderBytes: lots
  headerTimeout: 0
  maxConnections: -3
  maxJsonDepth: 0
  trustedProxies: [10.0.0.300]
  allowedHosts: ["http://x/"]
  maxHeaders: 1
"""
    )
    assert found[0].startswith("c.yaml:3:19: server.maxHeaderBytes: expected a size")
    assert any(e.startswith("c.yaml:4:18: server.headerTimeout") for e in found)
    assert any(e.startswith("c.yaml:5:19: server.maxConnections") for e in found)
    assert any(e.startswith("c.yaml:6:17: server.maxJsonDepth") for e in found)
    assert any("c.yaml:7:20: server.trustedProxies[0]: expected an IP address" in e for e in found)
    assert any("c.yaml:8:18: server.allowedHosts[0]: expected a host name" in e for e in found)
    assert any("server.maxHeaders: unknown key" in e and "maxHeaderBytes" in e for e in found)
