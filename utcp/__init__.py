"""utcp: an async userspace TCP stack over Linux TUN devices."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from utcp.io.api import UtcpListener, UtcpStream, open_tcp_listeners, open_tcp_stream
    from utcp.io.runtime import HostRuntime
    from utcp.io.stack import UtcpStack

__version__ = "0.1.0"

__all__ = [
    "HostRuntime",
    "UtcpListener",
    "UtcpStack",
    "UtcpStream",
    "__version__",
    "open_tcp_listeners",
    "open_tcp_stream",
]


def __getattr__(name: str) -> Any:
    # The runtime API is imported on first use, so the sans-IO layers never pull in trio.
    if name in __all__:
        return getattr(importlib.import_module("utcp.io"), name)
    raise AttributeError(f"module 'utcp' has no attribute {name!r}")
