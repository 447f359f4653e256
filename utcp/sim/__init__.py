"""Whole topologies (hosts, middleboxes, links) in one process on virtual time, deterministically.

Pure Python: no trio, no sockets, no wall clock. `Network` is the clock and the wires; `pair()` builds
the common two-host case; `RandomImpairment` is shared with the trio runtime.
"""

from utcp.sim.apps import (
    CLIENT_ADDRESS,
    SERVER_ADDRESS,
    Acceptor,
    BulkSender,
    EventLog,
    Exchange,
    ExchangeResult,
    Reader,
    SimPair,
    pair,
)
from utcp.sim.capture import ladder, pcap_bytes, write_pcap
from utcp.sim.impair import Impairment, ImpairmentStats, RandomImpairment
from utcp.sim.network import (
    CaptureRecord,
    Link,
    LinkDirection,
    Network,
    Node,
    SimulationError,
    ipv4_wire_length,
)
from utcp.sim.nodes import HoldBack, Router, ScriptedNode

__all__ = [
    "CLIENT_ADDRESS",
    "SERVER_ADDRESS",
    "Acceptor",
    "BulkSender",
    "CaptureRecord",
    "EventLog",
    "Exchange",
    "ExchangeResult",
    "HoldBack",
    "Impairment",
    "ImpairmentStats",
    "Link",
    "LinkDirection",
    "Network",
    "Node",
    "RandomImpairment",
    "Reader",
    "Router",
    "ScriptedNode",
    "SimPair",
    "SimulationError",
    "ipv4_wire_length",
    "ladder",
    "pair",
    "pcap_bytes",
    "write_pcap",
]
