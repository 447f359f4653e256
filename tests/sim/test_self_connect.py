"""SCENARIOS.md E end to end: reconnecting to a closed port in the ephemeral range ends in a self-connect.

One utcp host on virtual time, `ip_local_port_range = 40000 40010`, nothing listening: each connect() is
refused (RST) until the allocator hands out the destination port itself; then the SYN meets itself
(simultaneous open, scenario C) and the connection talks to itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from utcp.sim import EventLog, Network
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.ports import LinuxPortAllocator
from utcp.tcp.state import TcpState

ADDR = "198.18.0.1"
DONE = (TcpState.CLOSED, TcpState.ESTABLISHED)


def settled(conn: Connection) -> Callable[[], bool]:
    return lambda: conn.state in DONE


def reconnect_until_established(
    seed: int, port: int, *, step_one: bool = False, limit: int = 200
) -> list[int]:
    """Source ports of successive connects to ADDR:port; the last one self-connected (if any did)."""
    net = Network()
    allocator = LinuxPortAllocator((40000, 40010), seed=seed, step_one=step_one)
    host = Host([ADDR], seed=seed, port_allocator=allocator)
    net.add_node("host", host)
    net.add_hook(EventLog(host).poll)
    ports = []
    for _ in range(limit):
        conn = host.connect(ADDR, port, net.now)
        ports.append(conn.local[1])
        assert net.run_until(settled(conn), timeout=10.0)
        if conn.state is TcpState.ESTABLISHED:
            assert conn.local == conn.remote == (ADDR, port)
            conn.send(b"ping")
            net.run_for(1.0)
            assert conn.read(100) == b"ping"  # it talks to itself
            break
        assert conn.error is not None  # refused
    return ports


def test_reconnecting_to_40006_self_connects_and_never_uses_odd_ports_or_40010() -> None:
    attempts = []
    for seed in range(30):
        ports = reconnect_until_established(seed, 40006)
        assert ports[-1] == 40006
        assert set(ports) <= {40000, 40002, 40004, 40006, 40008}
        attempts.append(len(ports))
    assert 2.5 < statistics.mean(attempts) < 8.5  # ~5: one of five even ports per attempt


def test_an_odd_port_is_never_self_connected() -> None:
    ports = reconnect_until_established(7, 40007, limit=150)
    assert len(ports) == 150
    assert 40007 not in ports


def test_step_one_lets_an_odd_port_self_connect() -> None:
    ports = reconnect_until_established(7, 40007, step_one=True)
    assert ports[-1] == 40007
