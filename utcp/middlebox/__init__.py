"""Pure packet rewriters: FullNAT LB with TOA, RS-side TOA, SNAT, a rule-driven impairment box.

Every box implements `Middlebox`: `process(packet, direction, now) -> list[Emit]`, `next_deadline()`,
`on_timer(now) -> list[Emit]`, and counts what it did in `stats`. No I/O, no clock, no logging: the same
box runs in utcp.sim on virtual time and in the trio runtime between TUN devices.
"""

from utcp.middlebox.base import (
    DROPPED_BAD_CHECKSUM,
    DROPPED_NOT_TCP,
    DROPPED_UNPARSEABLE,
    Direction,
    Emit,
    FlowTuple,
    Middlebox,
    RawEmit,
    Stats,
)
from utcp.middlebox.chain import Chain
from utcp.middlebox.conntrack import (
    DPVS_TCP_TIMEOUTS,
    NF_CONNTRACK_TCP_TIMEOUTS,
    ConnEntry,
    ConnTrack,
    FlowDir,
    TcpConnState,
    TupleClash,
)
from utcp.middlebox.fullnat import (
    FullNat,
    FullNatConfig,
    FullNatConn,
    MssAdjust,
    RealServer,
    Scheduler,
    VirtualService,
)
from utcp.middlebox.impair import Delay, Drop, Duplicate, HoldUntil, ImpairBox, Match, Reorder, Rule
from utcp.middlebox.node import MiddleboxNode, from_networks
from utcp.middlebox.rewrite import Rewrite, apply_rewrite, peek_tcp, rewrite_bytes
from utcp.middlebox.snat import PortSelection, Snat, SnatConfig, SnatMapping
from utcp.middlebox.toa import RsToa, RsToaConfig, ToaMapping, ToaMode

__all__ = [
    "DPVS_TCP_TIMEOUTS",
    "DROPPED_BAD_CHECKSUM",
    "DROPPED_NOT_TCP",
    "DROPPED_UNPARSEABLE",
    "NF_CONNTRACK_TCP_TIMEOUTS",
    "Chain",
    "ConnEntry",
    "ConnTrack",
    "Delay",
    "Direction",
    "Drop",
    "Duplicate",
    "Emit",
    "FlowDir",
    "FlowTuple",
    "FullNat",
    "FullNatConfig",
    "FullNatConn",
    "HoldUntil",
    "ImpairBox",
    "Match",
    "Middlebox",
    "MiddleboxNode",
    "MssAdjust",
    "PortSelection",
    "RawEmit",
    "RealServer",
    "Reorder",
    "Rewrite",
    "RsToa",
    "RsToaConfig",
    "Rule",
    "Scheduler",
    "Snat",
    "SnatConfig",
    "SnatMapping",
    "Stats",
    "TcpConnState",
    "ToaMapping",
    "ToaMode",
    "TupleClash",
    "VirtualService",
    "apply_rewrite",
    "from_networks",
    "peek_tcp",
    "rewrite_bytes",
]
