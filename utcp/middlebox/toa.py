"""The RS side of TOA: what a real server behind a FullNAT LB does with the client address it carries.

Two modes (SCENARIOS.md A needs both, to compare outcomes):

`ToaMode.GETPEERNAME` (Alibaba's stock `toa.ko`): packets pass untouched. The module hooks
`tcp_v4_syn_recv_sock` and `inet_getname`: the TOA of the segment that completes the handshake is kept on
the socket and `getpeername()` reports it instead of the LB's local address. Here: the TOA of any
segment towards the RS (LVS puts it on the SYN and on the segments that ACK the RS's ISN+1) is recorded per
connection, the last one seen winning, and `client_address(local, remote)` answers with it. The RS stack
still sees LIP:lport, so a client connecting to the RS both directly and through the LB from one source
port gets two distinct 4-tuples: no crossing.

`ToaMode.REWRITE` (`slb_toa`, address rewriting at the IP layer): towards the RS, a packet from an LVS
tuple (LIP:lport -> RS:port) whose TOA is known (carried now, or remembered for that tuple) gets its source
rewritten to the client address:port; from the RS, a packet to a client address:port that has a mapping
gets its destination rewritten back to LIP:lport. The mapping is keyed by what the RS stack sees:
(RS address, RS port, client address, client port), i.e. it is an address translation of the 4-tuple,
with no notion of which path a packet took. That is what happened in production (seed 000): the client
also connected directly to RS:3269 from the same port 61902, so at the RS both connections are
RS:3269 <-> C:61902 (one socket), and everything the RS sends on that 4-tuple, direct connection
included, is rewritten to LIP:lport and leaves through the LB, which translates it to VIP:3306 -> C:61902
with the RS's own seq and IP id. The direct connection never sees its ACKs; the client sees ACKs and RSTs
from VIP:3306 carrying the direct connection's numbers. Packets of the direct connection towards the RS
carry no TOA and come from C itself, so they pass unchanged.

A new TOA for an RS-side 4-tuple already mapped to another LVS tuple replaces the older mapping (last
writer wins: a flow-keyed table has one slot per key), counted as `toa_mapping_replaced`. The TOA option
itself is kept on rewritten packets by default (kernels ignore option kind 254; `strip_option=True` removes
it, which shrinks the header: the checksum is then recomputed in full by the encoder). Entries are tracked
with the DPVS state table and Linux nf_conntrack timeouts (utcp.middlebox.conntrack), so a mapping lives
as long as a kernel's conntrack entry would.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from utcp.middlebox.base import Direction, Emit, FlowTuple, Stats, coerce_packet, flow_of
from utcp.middlebox.conntrack import NF_CONNTRACK_TCP_TIMEOUTS, ConnEntry, ConnTrack, FlowDir, TcpConnState
from utcp.middlebox.rewrite import Rewrite, apply_rewrite, strip_options
from utcp.wire.packet import IPv4Packet, TcpSegment, Toa

__all__ = ["RsToa", "RsToaConfig", "ToaMapping", "ToaMode"]

# Counter names.
TOA_SEEN = "toa_seen"
TOA_RECORDED = "toa_recorded"
MAPPING_REPLACED = "toa_mapping_replaced"
IN_REWRITTEN = "toa_in_rewritten"
OUT_REWRITTEN = "toa_out_rewritten"
PASSED = "toa_passed"
EXPIRED = "toa_mapping_expired"
NOT_TCP = "toa_passed_not_tcp"


class ToaMode(enum.Enum):
    GETPEERNAME = "getpeername"  # toa.ko: packets unchanged, the address is only reported
    REWRITE = "rewrite"  # slb_toa: the address is rewritten in the packets


@dataclass(frozen=True, slots=True)
class RsToaConfig:
    mode: ToaMode = ToaMode.GETPEERNAME
    strip_option: bool = False  # REWRITE mode: remove the TOA from rewritten packets
    timeouts: Mapping[TcpConnState, float] = field(default_factory=lambda: dict(NF_CONNTRACK_TCP_TIMEOUTS))


@dataclass(slots=True)
class ToaMapping:
    """Per LVS tuple: the client address its TOA carried."""

    client: tuple[str, int]
    lvs: tuple[str, int]  # the LB's local address:port as the packets arrive


class RsToa:
    """The RS-side TOA box. TO_SERVER is LB -> RS, TO_CLIENT is RS -> anywhere."""

    def __init__(self, config: RsToaConfig | None = None) -> None:
        self.config = config if config is not None else RsToaConfig()
        self.stats = Stats()
        self.conntrack: ConnTrack[ToaMapping] = ConnTrack(self.config.timeouts)

    # --- the Middlebox interface ---------------------------------------------------------------------

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        self._expire(now)
        pkt = coerce_packet(packet, self.stats)
        if pkt is None:
            return []
        if not isinstance(pkt.payload, TcpSegment):
            self.stats[NOT_TCP] += 1
            return [Emit(pkt, direction)]
        if direction is Direction.TO_SERVER:
            return [Emit(self._inbound(pkt, now), direction)]
        return [Emit(self._outbound(pkt, now), direction)]

    def next_deadline(self) -> float | None:
        return self.conntrack.next_deadline()

    def on_timer(self, now: float) -> list[Emit]:
        self._expire(now)
        return []

    # --- inspection ----------------------------------------------------------------------------------

    def client_address(self, local: tuple[str, int], remote: tuple[str, int]) -> tuple[str, int] | None:
        """What `getpeername()` reports under toa.ko for the RS socket `local` <-> `remote` (the LB's
        LIP:lport), or None when no TOA was seen for it."""
        found = self.conntrack.lookup(FlowTuple(remote[0], remote[1], local[0], local[1]))
        if found is None or found[1] is not FlowDir.ORIGINAL:
            return None
        return found[0].ext.client

    def entries(self) -> list[ConnEntry[ToaMapping]]:
        return self.conntrack.entries()

    def format_entries(self, now: float) -> str:
        return self.conntrack.format_entries(now)

    # --- the two directions --------------------------------------------------------------------------

    def _reply_tuple(self, flow: FlowTuple, client: tuple[str, int]) -> FlowTuple:
        if self.config.mode is ToaMode.REWRITE:
            return FlowTuple(flow.dst, flow.dport, client[0], client[1])  # what the RS stack answers on
        return flow.reversed()

    def _inbound(self, pkt: IPv4Packet, now: float) -> IPv4Packet:
        seg = pkt.tcp
        flow = flow_of(pkt)
        toa = seg.option(Toa)
        found = self.conntrack.lookup(flow)
        entry = found[0] if found is not None and found[1] is FlowDir.ORIGINAL else None
        if toa is not None:
            self.stats[TOA_SEEN] += 1
            client = (toa.address, toa.port)
            if entry is None or entry.ext.client != client:
                entry = self._record(flow, client, now, entry)
        if entry is None:
            self.stats[PASSED] += 1
            return pkt
        self.conntrack.update(entry, FlowDir.ORIGINAL, seg.flags, now)
        if self.config.mode is ToaMode.GETPEERNAME:
            self.stats[PASSED] += 1
            return pkt
        self.stats[IN_REWRITTEN] += 1
        client = entry.ext.client
        new = apply_rewrite(pkt, Rewrite(src=client[0], sport=client[1]))
        if self.config.strip_option and toa is not None:
            new = replace(new, payload=replace(new.tcp, options=strip_options(new.tcp.options, Toa)))
        return new

    def _record(
        self, flow: FlowTuple, client: tuple[str, int], now: float, existing: ConnEntry[ToaMapping] | None
    ) -> ConnEntry[ToaMapping]:
        """Map this LVS tuple to `client` (a changed TOA re-maps it, keeping the tracked state)."""
        reply = self._reply_tuple(flow, client)
        other = self.conntrack.lookup(reply)
        if other is not None and other[0] is not existing:
            self.stats[MAPPING_REPLACED] += 1  # another LVS tuple loses this RS-side 4-tuple
        self.stats[TOA_RECORDED] += 1
        mapping = ToaMapping(client=client, lvs=(flow.src, flow.sport))
        entry = self.conntrack.add(flow, reply, mapping, now, replace=True)
        if existing is not None:
            entry.state = existing.state
            entry.seen_reply = existing.seen_reply
            entry.assured = existing.assured
        return entry

    def _outbound(self, pkt: IPv4Packet, now: float) -> IPv4Packet:
        found = self.conntrack.lookup(flow_of(pkt))
        if found is None or found[1] is not FlowDir.REPLY:
            self.stats[PASSED] += 1
            return pkt
        entry = found[0]
        self.conntrack.update(entry, FlowDir.REPLY, pkt.tcp.flags, now)
        if self.config.mode is ToaMode.GETPEERNAME:
            self.stats[PASSED] += 1
            return pkt
        self.stats[OUT_REWRITTEN] += 1
        lip, lport = entry.ext.lvs
        return apply_rewrite(pkt, Rewrite(dst=lip, dport=lport))

    def _expire(self, now: float) -> None:
        self.stats[EXPIRED] += len(self.conntrack.expire(now))
