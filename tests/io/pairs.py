"""Two utcp hosts joined by an in-memory link, each driven by its own HostRuntime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from utcp.io.memory import memory_link_pair
from utcp.io.runtime import HostRuntime
from utcp.tcp.config import TcpConfig
from utcp.tcp.host import Host

A_ADDRESS = "198.18.0.1"
B_ADDRESS = "198.18.0.2"


@asynccontextmanager
async def host_pair(
    *, mtu: int = 1500, config: Any = None, capacity: int = 4096, **runtime_options: Any
) -> AsyncIterator[tuple[HostRuntime, HostRuntime]]:
    cfg = config if config is not None else TcpConfig()
    link_a, link_b = memory_link_pair(mtu=mtu, capacity=capacity)
    host_a = Host(addresses=[A_ADDRESS], config=cfg, mtu=mtu, seed=1)
    host_b = Host(addresses=[B_ADDRESS], config=cfg, mtu=mtu, seed=2)
    async with HostRuntime(host_a, link_a, **runtime_options) as rt_a, HostRuntime(host_b, link_b) as rt_b:
        yield rt_a, rt_b
