"""utcp.tcp: the sans-IO TCP engine (see docs/engine-api.md).

The heavy modules load lazily so that `utcp.policy` can import `utcp.tcp.seq`/`utcp.tcp.state` without a
cycle through `utcp.tcp.connection` (which imports `utcp.policy`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from utcp.tcp.config import TcpConfig
from utcp.tcp.errors import (
    ConnectionAborted,
    ConnectionFailed,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    TcpUsageError,
)
from utcp.tcp.state import TcpState

if TYPE_CHECKING:
    from utcp.tcp.connection import Connection, ConnectionStats, Negotiated
    from utcp.tcp.host import Host, Listener

__all__ = [
    "Connection",
    "ConnectionAborted",
    "ConnectionFailed",
    "ConnectionRefused",
    "ConnectionReset",
    "ConnectionStats",
    "ConnectionTimedOut",
    "Host",
    "Listener",
    "Negotiated",
    "TcpConfig",
    "TcpState",
    "TcpUsageError",
]

_LAZY = {
    "Connection": "utcp.tcp.connection",
    "ConnectionStats": "utcp.tcp.connection",
    "Negotiated": "utcp.tcp.connection",
    "Host": "utcp.tcp.host",
    "Listener": "utcp.tcp.host",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'utcp.tcp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
