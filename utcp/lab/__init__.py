"""The lab: namespaces, TUN and veth wiring, and endpoints that play a role (kernel or utcp) behind one
interface, with observers in one vocabulary. See docs/lab-api.md."""

from utcp.lab.endpoints import Endpoint, KernelEndpoint, SocketOptions, SocketState, UtcpEndpoint, parse_ss
from utcp.lab.netns import Namespace, NamespaceError, netns, run_in_namespace, unique_name
from utcp.lab.topology import Lab, LabError

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
