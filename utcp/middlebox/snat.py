"""SNAT / masquerade: inside clients share one outside address (SCENARIOS.md D).

Port choice follows Linux `get_unique_tuple` (net/netfilter/nf_nat_core.c) for a source manip:
1. an inside address:port that already has a mapping reuses its outside port if the new tuple is unique
   (`find_appropriate_src`);
2. otherwise the original port is kept when the translated tuple is unique (`nf_nat_used_tuple`: nothing
   tracked already uses its reply tuple server:port -> outside:port) and lies in the range;
3. else `nf_nat_l4proto_unique_tuple` searches the range: by default the range of the original port's
   class (1-511, 600-1023 or 1024-65535), from a random offset (`get_random_u16`, Linux 5.x+: at most 128
   attempts, then halving rounds from new random offsets while >= 16), or sequentially from a rover (older
   kernels: the next search starts where the last one ended). `preserve_port=False` skips steps 1-2
   (NF_NAT_RANGE_PROTO_RANDOM_ALL).
So two inside clients using the same source port towards different servers both keep it; towards the
same server:port the second one gets another port.

Only the address and port change: sequence numbers and options (timestamps included: that is the point
of scenario D) pass untouched, and so does the IP ident. The TTL is decremented as a Linux router does
(`decrement_ttl`; TTL <= 1 is dropped, where Linux also sends ICMP time exceeded). Replies (towards the
outside address) are un-NATed through the entry's reply tuple. Entries are created by an inside SYN only
(Linux also picks up mid-stream flows, nf_conntrack_tcp_loose; not modelled) and expire after Linux
nf_conntrack timeouts on the DPVS state table (utcp.middlebox.conntrack). A new SYN on an entry in
TIME_WAIT or CLOSE reuses it, mapping included, as conntrack re-opens such an entry. Only TCP is
translated: other protocols and IP fragments are dropped (`dropped_not_tcp`).
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from utcp.middlebox.base import (
    DROPPED_NOT_TCP,
    Direction,
    Emit,
    FlowTuple,
    Stats,
    address_in,
    coerce_packet,
    flow_of,
    is_syn_only,
)
from utcp.middlebox.conntrack import NF_CONNTRACK_TCP_TIMEOUTS, ConnEntry, ConnTrack, FlowDir, TcpConnState
from utcp.middlebox.rewrite import Rewrite, apply_rewrite
from utcp.wire.packet import IPv4Packet, TcpSegment

__all__ = ["PortSelection", "Snat", "SnatConfig", "SnatMapping"]

NF_NAT_MAX_ATTEMPTS = 128  # nf_nat_core.c

# Counter names.
MAPPED = "snat_conn_mapped"
PORT_KEPT = "snat_port_preserved"
PORT_REUSED = "snat_port_reused"  # find_appropriate_src
PORT_CHANGED = "snat_port_changed"
OUT_PACKETS = "snat_out_packets"
IN_PACKETS = "snat_in_packets"
EXPIRED = "snat_conn_expired"
PASSED = "snat_passed"
DROP_NO_CONN = "snat_dropped_no_conn"
DROP_NO_PORT = "snat_dropped_no_port"
DROP_TTL = "snat_dropped_ttl_exceeded"


class PortSelection(enum.Enum):
    RANDOM = "random"  # Linux 5.x+: random offset into the range
    SEQUENTIAL = "sequential"  # older kernels: a rover walking the range


@dataclass(frozen=True, slots=True)
class SnatConfig:
    outside_address: str
    inside_networks: tuple[str, ...] = ()  # empty: every client-side packet is masqueraded
    port_range: tuple[int, int] | None = None  # None: Linux's range for the original port's class
    preserve_port: bool = True
    port_selection: PortSelection = PortSelection.RANDOM
    seed: int | None = None
    decrement_ttl: bool = True
    timeouts: Mapping[TcpConnState, float] = field(default_factory=lambda: dict(NF_CONNTRACK_TCP_TIMEOUTS))

    def __post_init__(self) -> None:
        if self.port_range is not None:
            lo, hi = self.port_range
            if not 1 <= lo <= hi <= 65535:
                raise ValueError(f"bad port range {self.port_range}")


@dataclass(slots=True)
class SnatMapping:
    inside: tuple[str, int]
    outside: tuple[str, int]


class Snat:
    """The masquerading box. TO_SERVER is inside -> outside, TO_CLIENT the replies."""

    def __init__(self, config: SnatConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.conntrack: ConnTrack[SnatMapping] = ConnTrack(config.timeouts)
        self._inside = tuple(ipaddress.IPv4Network(net) for net in config.inside_networks)
        self._rng = random.Random(config.seed)
        self._rover = 0
        self._by_inside: dict[tuple[str, int], list[ConnEntry[SnatMapping]]] = {}  # nf_nat bysource hash

    # --- the Middlebox interface ---------------------------------------------------------------------

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        self._expire(now)
        pkt = coerce_packet(packet, self.stats)
        if pkt is None:
            return []
        if not isinstance(pkt.payload, TcpSegment):
            self.stats[DROPPED_NOT_TCP] += 1
            return []
        if direction is Direction.TO_SERVER:
            out = self._outbound(pkt, now)
        else:
            out = self._inbound(pkt, now)
        return [] if out is None else [Emit(out, direction)]

    def next_deadline(self) -> float | None:
        return self.conntrack.next_deadline()

    def on_timer(self, now: float) -> list[Emit]:
        self._expire(now)
        return []

    # --- inspection ----------------------------------------------------------------------------------

    def entries(self) -> list[ConnEntry[SnatMapping]]:
        return self.conntrack.entries()

    def format_entries(self, now: float) -> str:
        return self.conntrack.format_entries(now)

    # --- translation ---------------------------------------------------------------------------------

    def _outbound(self, pkt: IPv4Packet, now: float) -> IPv4Packet | None:
        flow = flow_of(pkt)
        if self._inside and not address_in(flow.src, self._inside):
            self.stats[PASSED] += 1
            return pkt
        if not self._ttl_ok(pkt):
            return None
        found = self.conntrack.lookup(flow)
        if found is None or found[1] is not FlowDir.ORIGINAL:
            if not is_syn_only(pkt.tcp.flags):
                self.stats[DROP_NO_CONN] += 1
                return None
            port = self._unique_port(flow)
            if port is None:
                self.stats[DROP_NO_PORT] += 1
                return None
            mapping = SnatMapping(inside=(flow.src, flow.sport), outside=(self.config.outside_address, port))
            reply = FlowTuple(flow.dst, flow.dport, self.config.outside_address, port)
            entry = self.conntrack.add(flow, reply, mapping, now)
            self._by_inside.setdefault(mapping.inside, []).append(entry)
            self.stats[MAPPED] += 1
        else:
            entry = found[0]
        self.conntrack.update(entry, FlowDir.ORIGINAL, pkt.tcp.flags, now)
        self.stats[OUT_PACKETS] += 1
        address, port = entry.ext.outside
        return apply_rewrite(pkt, Rewrite(src=address, sport=port, ttl_decrement=self._ttl_step))

    def _inbound(self, pkt: IPv4Packet, now: float) -> IPv4Packet | None:
        found = self.conntrack.lookup(flow_of(pkt))
        if found is None or found[1] is not FlowDir.REPLY:
            if pkt.dst == self.config.outside_address:
                self.stats[DROP_NO_CONN] += 1
                return None
            self.stats[PASSED] += 1
            return pkt
        if not self._ttl_ok(pkt):
            return None
        entry = found[0]
        self.conntrack.update(entry, FlowDir.REPLY, pkt.tcp.flags, now)
        self.stats[IN_PACKETS] += 1
        address, port = entry.ext.inside
        return apply_rewrite(pkt, Rewrite(dst=address, dport=port, ttl_decrement=self._ttl_step))

    @property
    def _ttl_step(self) -> int:
        return 1 if self.config.decrement_ttl else 0

    def _ttl_ok(self, pkt: IPv4Packet) -> bool:
        if self.config.decrement_ttl and pkt.ttl <= 1:
            self.stats[DROP_TTL] += 1  # ip_forward: the TTL would reach 0
            return False
        return True

    def _used(self, flow: FlowTuple, port: int) -> bool:
        """nf_nat_used_tuple: is the reply tuple of `flow` translated to `port` already tracked?"""
        return self.conntrack.tuple_in_use(FlowTuple(flow.dst, flow.dport, self.config.outside_address, port))

    def _in_range(self, port: int) -> bool:
        if self.config.port_range is None:
            return True
        lo, hi = self.config.port_range
        return lo <= port <= hi

    def _unique_port(self, flow: FlowTuple) -> int | None:
        """get_unique_tuple for a source manip onto the outside address."""
        if self.config.preserve_port:
            current = self._by_inside.get((flow.src, flow.sport))
            if current:  # find_appropriate_src: this inside endpoint's current mapping
                port = current[0].ext.outside[1]
                if self._in_range(port) and not self._used(flow, port):
                    self.stats[PORT_REUSED] += 1
                    return port
            if self._in_range(flow.sport) and not self._used(flow, flow.sport):
                self.stats[PORT_KEPT] += 1
                return flow.sport
        found = self._search(flow)
        if found is not None:
            self.stats[PORT_CHANGED] += 1
        return found

    def _search(self, flow: FlowTuple) -> int | None:
        """nf_nat_l4proto_unique_tuple."""
        if self.config.port_range is not None:
            low, high = self.config.port_range
        elif flow.sport < 512:
            low, high = 1, 511
        elif flow.sport < 1024:
            low, high = 600, 1023
        else:
            low, high = 1024, 65535
        size = high - low + 1
        if self.config.port_selection is PortSelection.SEQUENTIAL:
            for i in range(size):
                port = low + (self._rover + i) % size
                if not self._used(flow, port):
                    self._rover = (self._rover + i) % size
                    return port
            return None
        offset = self._rng.randrange(1 << 16)
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        while True:
            for i in range(attempts):
                port = low + (offset + i) % size
                if not self._used(flow, port):
                    return port
            if attempts >= size or attempts < 16:
                return None
            attempts //= 2
            offset = self._rng.randrange(1 << 16)

    def _expire(self, now: float) -> None:
        for entry in self.conntrack.expire(now):
            self.stats[EXPIRED] += 1
            same_source = self._by_inside.get(entry.ext.inside, [])
            if entry in same_source:
                same_source.remove(entry)
                if not same_source:
                    del self._by_inside[entry.ext.inside]
