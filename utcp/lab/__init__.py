"""utcp.lab: network namespaces and kernel endpoints for interop experiments."""

from utcp.lab.netns import Namespace, NamespaceError, netns, run_in_namespace, unique_name

__all__ = ["Namespace", "NamespaceError", "netns", "run_in_namespace", "unique_name"]
