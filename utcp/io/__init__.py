"""utcp.io: the trio runtime (TUN device, in-memory links, the host-driving task) and the user API.

Names are imported on first use, so `import utcp.io` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from utcp.io.api import UtcpListener, UtcpStream, open_tcp_listeners, open_tcp_stream, serve_workers
    from utcp.io.memory import MemoryLink, memory_link_pair
    from utcp.io.runtime import HostRuntime
    from utcp.io.stack import UtcpStack
    from utcp.io.tun import TunDevice

_EXPORTS = {
    "HostRuntime": "utcp.io.runtime",
    "MemoryLink": "utcp.io.memory",
    "TunDevice": "utcp.io.tun",
    "UtcpListener": "utcp.io.api",
    "UtcpStack": "utcp.io.stack",
    "UtcpStream": "utcp.io.api",
    "memory_link_pair": "utcp.io.memory",
    "open_tcp_listeners": "utcp.io.api",
    "open_tcp_stream": "utcp.io.api",
    "serve_workers": "utcp.io.api",
}

__all__ = [
    "HostRuntime",
    "MemoryLink",
    "TunDevice",
    "UtcpListener",
    "UtcpStack",
    "UtcpStream",
    "memory_link_pair",
    "open_tcp_listeners",
    "open_tcp_stream",
    "serve_workers",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'utcp.io' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
