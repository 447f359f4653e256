"""The lab: namespaces, TUN and veth wiring, and endpoints that play a role (kernel or utcp) behind one
interface, with observers in one vocabulary. See docs/lab-api.md.

The runtime (utcp.io) uses `utcp.lab.netns` to open devices inside namespaces, and the lab's endpoints
use the runtime: the names below that need utcp.io load on first use, so importing either side first works.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from utcp.lab.netns import Namespace, NamespaceError, netns, run_in_namespace, unique_name

if TYPE_CHECKING:
    from utcp.lab.endpoints import (
        Endpoint,
        KernelEndpoint,
        SocketOptions,
        SocketState,
        UtcpEndpoint,
        parse_ss,
    )
    from utcp.lab.topology import Lab, LabError

_LAZY = {
    "Endpoint": "utcp.lab.endpoints",
    "KernelEndpoint": "utcp.lab.endpoints",
    "SocketOptions": "utcp.lab.endpoints",
    "SocketState": "utcp.lab.endpoints",
    "UtcpEndpoint": "utcp.lab.endpoints",
    "parse_ss": "utcp.lab.endpoints",
    "Lab": "utcp.lab.topology",
    "LabError": "utcp.lab.topology",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'utcp.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Endpoint",
    "KernelEndpoint",
    "Lab",
    "LabError",
    "Namespace",
    "NamespaceError",
    "SocketOptions",
    "SocketState",
    "UtcpEndpoint",
    "netns",
    "parse_ss",
    "run_in_namespace",
    "unique_name",
]
