"""LVS FullNAT load balancer, after DPVS (src/ipvs/ip_vs_proto_tcp.c, ip_vs_xmit.c) and Alibaba's LVS.

Client C:cport -> VIP:vport becomes LIP:lport -> RS:rsport on the way in; RS:rsport -> LIP:lport becomes
VIP:vport -> C:cport on the way out. What each packet goes through, as DPVS does it:

Scheduling (`tcp_conn_sched`): only a SYN without ACK/FIN/RST creates a connection. The real server comes
from the service's scheduler (round robin `ip_vs_rr`, weighted round robin `ip_vs_wrr`; weight 0 servers
are skipped). The local address is taken round robin from the pool, the local port from that address's
own counter (Alibaba LVS: a per-laddr port counter; next port = range start + counter mod range size),
skipping ports whose RS-side tuple is still tracked. A SYN that hits an entry in TIME_WAIT or CLOSE
retires it and schedules afresh (Linux IPVS `conn_reuse_mode`).

Client -> RS (`tcp_fnat_in_handler`):
- SYN: the timestamp option is overwritten by NOPs (`tcp_in_remove_ts`: the LIP is shared by many
  clients whose TS clocks differ; switch: `remove_timestamps`); the ISN is re-seeded once per entry
  (`tcp_in_init_seq`: keyed hash of the LVS tuple LIP, RS, lport, rsport plus a 64 ns clock, here
  `utcp.tcp.isn.IsnGenerator`; a retransmitted SYN keeps it), delta = new ISN - client ISN; TOA inserted.
- a segment that ACKs the RS's ISN+1 (`fdata_seq`) without SYN/RST/FIN: TOA inserted (third ACK, early
  data, and their retransmissions). DPVS does not look at the ACK bit here; we require it.
- TOA (kind 254, len 8, client port, client IPv4) goes right after the fixed header. Skipped and counted
  when the packet would exceed the MTU (`toa_skipped_mtu`, DPVS EDPVS_FRAG) or the TCP header would
  exceed 60 bytes (`toa_skipped_no_room`, DPVS EDPVS_NOROOM). Switch: `insert_toa`.
- seq += delta; addresses and ports translated.

RS -> client (`tcp_fnat_out_handler`):
- remembers the RS's last seq/ack (`tcp_out_save_seq`, not for RSTs, not for an ACK older than the
  last one) for the expiry RSTs;
- SYN-ACK: MSS adjusted (`tcp_out_adjust_mss` lowers it by the TOA length; or clamp to a value, as
  iptables TCPMSS; or off) and `fdata_seq` = its seq + 1 (`tcp_out_init_seq`);
- ack -= delta and every SACK edge -= delta (`tcp_out_adjust_seq`); DPVS shifts the ack field even
  without the ACK bit, we leave a field that means nothing alone (RFC 9293 3.1);
- addresses and ports translated back to VIP:vport -> C:cport.

Expiry (`tcp_conn_expire` / `tcp_send_rst`): an entry that times out in ESTABLISHED gets an RST to the
RS (LIP:lport -> RS, seq = the RS's last ack) and one to the client (VIP -> C, seq = the RS's last
seq + its length), IP id 0, TTL 64, DF, window 0, in that order. Switch: `rst_on_expire`. DPVS builds
the client RST on the RS side and translates it, which turns its zero ack field into -delta; ours is 0.

IP header: the ident is kept (DPVS and Linux IPVS never touch it: which is why, in SCENARIOS.md A, the
client sees the RS's IP ids on packets from the VIP), TOS, DF and IP options are kept, the TTL is kept
unless `decrement_ttl` (DPVS `xmit_ttl`, off by default; a packet with TTL <= 1 is then dropped, where
DPVS would also send ICMP time exceeded). Checksums: `process` returns values and the encoder computes
them; `process_bytes` patches them incrementally (RFC 1624) for every packet whose header keeps its length
and falls back to a full re-encode for the SYN, the TOA-carrying ACK and the SYN-ACK with MSS change.

Packets for neither a VIP nor a local address pass unchanged (`pass_unknown`), so a box on the path does
not break direct connections; non-SYN packets for a VIP or a LIP without an entry are dropped, and so are
non-TCP packets and IP fragments for them (`dropped_not_tcp`; DPVS tcp_hdr: "do not support frags").
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from utcp.middlebox.base import (
    DROPPED_NOT_TCP,
    MAX_TCP_HEADER,
    Direction,
    Emit,
    FlowTuple,
    RawEmit,
    Stats,
    coerce_packet,
    is_syn_only,
    seq_add,
)
from utcp.middlebox.conntrack import (
    DPVS_TCP_TIMEOUTS,
    ConnEntry,
    ConnTrack,
    FlowDir,
    TcpConnState,
)
from utcp.middlebox.rewrite import (
    HeaderView,
    Rewrite,
    adjust_mss,
    apply_rewrite,
    insert_option_first,
    nop_out_timestamps,
    peek_tcp,
    rewrite_bytes,
    view_of,
)
from utcp.tcp.isn import IsnGenerator
from utcp.wire.checksum import internet_checksum, tcp_checksum
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment, Toa

__all__ = [
    "FullNat",
    "FullNatConfig",
    "FullNatConn",
    "MssAdjust",
    "RealServer",
    "Scheduler",
    "VirtualService",
]

TOA_LENGTH = 8  # TCPOLEN_ADDR / TCP_OLEN_IP4_ADDR

# Counter names.
SCHEDULED = "lb_conn_scheduled"
REUSED = "lb_conn_reused"
EXPIRED = "lb_conn_expired"
EXPIRE_RST = "lb_expire_rst_sent"
IN_PACKETS = "lb_in_packets"
OUT_PACKETS = "lb_out_packets"
PASSTHROUGH = "lb_passthrough"
DROP_NO_CONN = "lb_dropped_no_conn"
DROP_NOT_FOR_US = "lb_dropped_unknown"
DROP_NO_DEST = "lb_dropped_no_dest"
DROP_NO_PORT = "lb_dropped_no_local_port"
DROP_TTL = "lb_dropped_ttl_exceeded"
TOA_INSERTED = "toa_inserted"
TOA_NO_ROOM = "toa_skipped_no_room"
TOA_MTU = "toa_skipped_mtu"
TS_REMOVED = "ts_removed"
MSS_ADJUSTED = "mss_adjusted"
BYTES_FAST = "lb_bytes_fast_path"
BYTES_SLOW = "lb_bytes_slow_path"


class MssAdjust(enum.Enum):
    """What happens to the MSS option of the RS's SYN-ACK."""

    OFF = "off"
    SUBTRACT_TOA = "subtract_toa"  # DPVS tcp_out_adjust_mss: mss -= TOA length
    CLAMP = "clamp"  # iptables TCPMSS --set-mss style: lowered to `mss_clamp`, never raised


class Scheduler(enum.Enum):
    RR = "rr"  # ip_vs_rr
    WRR = "wrr"  # ip_vs_wrr


@dataclass(frozen=True, slots=True)
class RealServer:
    address: str
    port: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class VirtualService:
    vip: str
    vport: int
    real_servers: tuple[RealServer, ...]
    scheduler: Scheduler = Scheduler.RR


@dataclass(frozen=True, slots=True)
class FullNatConfig:
    services: tuple[VirtualService, ...]
    local_addresses: tuple[str, ...]  # the LIP pool
    local_port_range: tuple[int, int] = (5000, 65000)  # inclusive
    isn: IsnGenerator | None = None  # None: a keyed generator seeded by `seed`
    seed: int | None = None
    remove_timestamps: bool = True
    insert_toa: bool = True
    mss_adjust: MssAdjust = MssAdjust.SUBTRACT_TOA
    mss_clamp: int = 1452
    mtu: int = 1500  # of the RS-side link: TOA is skipped where it would exceed it
    rst_on_expire: bool = True
    decrement_ttl: bool = False
    pass_unknown: bool = True
    timeouts: Mapping[TcpConnState, float] = field(default_factory=lambda: dict(DPVS_TCP_TIMEOUTS))

    def __post_init__(self) -> None:
        if not self.local_addresses:
            raise ValueError("FullNAT needs at least one local address")
        lo, hi = self.local_port_range
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"bad local port range {self.local_port_range}")
        for svc in self.services:
            if not svc.real_servers:
                raise ValueError(f"service {svc.vip}:{svc.vport} has no real server")
            if any(rs.weight < 0 for rs in svc.real_servers):
                raise ValueError("weights must be >= 0")


@dataclass(slots=True)
class FullNatConn:
    """What FullNAT keeps per connection (DPVS struct dp_vs_conn, the parts that matter here)."""

    service: VirtualService
    client: tuple[str, int]
    real_server: RealServer
    local: tuple[str, int]
    isn: int | None = None  # the ISN the RS sees (fnat_seq.isn)
    delta: int = 0  # RS-side seq = client seq + delta (fnat_seq.delta)
    fdata_seq: int | None = None  # RS ISN + 1 (fnat_seq.fdata_seq)
    rs_end_seq: int | None = None
    rs_end_ack: int | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do to one packet, decided from its header fields alone (shared by both paths)."""

    direction: Direction
    rewrite: Rewrite
    remove_ts: bool = False
    toa: Toa | None = None
    mss_adjust: bool = False

    @property
    def structural(self) -> bool:
        return self.remove_ts or self.toa is not None or self.mss_adjust


@dataclass(frozen=True, slots=True)
class _Pass:
    """Forward unchanged."""


@dataclass(frozen=True, slots=True)
class _Drop:
    reason: str


class _WrrState:
    """ip_vs_wrr_schedule: walk the servers, lowering the current weight by the gcd each lap."""

    __slots__ = ("cw", "i")

    def __init__(self) -> None:
        self.i = -1
        self.cw = 0

    def pick(self, weights: list[int]) -> int | None:
        positive = [w for w in weights if w > 0]
        if not positive:
            return None
        gcd = math.gcd(*positive)
        top = max(positive)
        while True:
            self.i = (self.i + 1) % len(weights)
            if self.i == 0:
                self.cw -= gcd
                if self.cw <= 0:
                    self.cw = top
            if weights[self.i] >= self.cw:
                return self.i


class FullNat:
    """The load balancer box. `process` for values, `process_bytes` for the byte fast path."""

    def __init__(self, config: FullNatConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.conntrack: ConnTrack[FullNatConn] = ConnTrack(config.timeouts)
        self._isn = config.isn if config.isn is not None else IsnGenerator(rng_seed=config.seed)
        self._services = {(svc.vip, svc.vport): svc for svc in config.services}
        self._vips = {svc.vip for svc in config.services}
        self._lips = set(config.local_addresses)
        self._rr_cursor: dict[tuple[str, int], int] = {}
        self._wrr: dict[tuple[str, int], _WrrState] = {}
        self._lip_cursor = 0
        self._port_counter = dict.fromkeys(config.local_addresses, 0)

    # --- the Middlebox interface -------------------------------------------------------------------

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        out = self._expire(now)
        pkt = coerce_packet(packet, self.stats)
        if pkt is None:
            return out
        if not isinstance(pkt.payload, TcpSegment):
            return out + self._non_tcp(pkt, direction)
        decision = self._decide(view_of(pkt), now)
        if isinstance(decision, _Drop):
            self.stats[decision.reason] += 1
        elif isinstance(decision, _Pass):
            out.append(Emit(pkt, direction))
        else:
            out.append(Emit(self._apply(pkt, decision), decision.direction))
        return out

    def next_deadline(self) -> float | None:
        return self.conntrack.next_deadline()

    def on_timer(self, now: float) -> list[Emit]:
        return self._expire(now)

    # --- the byte path -----------------------------------------------------------------------------

    def process_bytes(self, data: bytes, direction: Direction, now: float) -> list[RawEmit]:
        """Same as `process` on encoded packets: rewrites in place with incremental checksums where the
        header keeps its length, re-encodes otherwise. Outputs are byte-for-byte what `process` followed
        by `build_ipv4` gives."""
        out = [RawEmit(build_ipv4(e.packet), e.direction) for e in self._expire(now)]
        view = peek_tcp(data)
        if view is None or not _checksums_ok(data, view):
            # Not a plain TCP packet, or a bad one: the value path parses, counts and decides.
            self.stats[BYTES_SLOW] += 1
            emitted = self.process(data, direction, now)
            return out + [RawEmit(build_ipv4(e.packet), e.direction) for e in emitted]
        decision = self._decide(view, now)
        if isinstance(decision, _Drop):
            self.stats[decision.reason] += 1
        elif isinstance(decision, _Pass):
            out.append(RawEmit(bytes(data[: view.total_length]), direction))
        elif decision.structural:
            self.stats[BYTES_SLOW] += 1
            pkt = parse_ipv4(data, verify_checksums=False)  # verified above
            out.append(RawEmit(build_ipv4(self._apply(pkt, decision)), decision.direction))
        else:
            self.stats[BYTES_FAST] += 1
            out.append(RawEmit(rewrite_bytes(data, decision.rewrite, view), decision.direction))
        return out

    # --- inspection ----------------------------------------------------------------------------------

    def entries(self) -> list[ConnEntry[FullNatConn]]:
        return self.conntrack.entries()

    def format_entries(self, now: float) -> str:
        return self.conntrack.format_entries(now)

    # --- decisions -----------------------------------------------------------------------------------

    def _non_tcp(self, pkt: IPv4Packet, direction: Direction) -> list[Emit]:
        if pkt.dst in self._vips or pkt.dst in self._lips:
            self.stats[DROPPED_NOT_TCP] += 1
            return []
        if self.config.pass_unknown:
            self.stats[PASSTHROUGH] += 1
            return [Emit(pkt, direction)]
        self.stats[DROP_NOT_FOR_US] += 1
        return []

    def _decide(self, view: HeaderView, now: float) -> _Plan | _Pass | _Drop:
        flow = view.flow
        found = self.conntrack.lookup(flow)
        if (
            found is not None
            and found[1] is FlowDir.ORIGINAL
            and is_syn_only(view.flags)
            and found[0].state in (TcpConnState.TIME_WAIT, TcpConnState.CLOSE)
        ):
            self.conntrack.remove(found[0])  # conn_reuse_mode: a new SYN retires the old entry
            self.stats[REUSED] += 1
            found = None
        if found is None:
            svc = self._services.get((flow.dst, flow.dport))
            if svc is None:
                if flow.dst in self._vips or flow.dst in self._lips:
                    return _Drop(DROP_NO_CONN)
                if self.config.pass_unknown:
                    self.stats[PASSTHROUGH] += 1
                    return _Pass()
                return _Drop(DROP_NOT_FOR_US)
            if not is_syn_only(view.flags):
                return _Drop(DROP_NO_CONN)  # tcp_conn_sched: only a SYN is scheduled
            if self.config.decrement_ttl and view.ttl <= 1:
                return _Drop(DROP_TTL)  # xmit_ttl: the TTL would reach 0
            scheduled = self._schedule(svc, flow, now)
            if isinstance(scheduled, _Drop):
                return scheduled
            entry, fdir = scheduled, FlowDir.ORIGINAL
        else:
            entry, fdir = found
            if self.config.decrement_ttl and view.ttl <= 1:
                return _Drop(DROP_TTL)
        self.conntrack.update(entry, fdir, view.flags, now)
        if fdir is FlowDir.ORIGINAL:
            self.stats[IN_PACKETS] += 1
            return self._plan_in(entry.ext, view, now)
        self.stats[OUT_PACKETS] += 1
        return self._plan_out(entry.ext, view)

    def _plan_in(self, conn: FullNatConn, view: HeaderView, now: float) -> _Plan:
        """tcp_fnat_in_handler."""
        flags = view.flags
        lip, lport = conn.local
        want_toa = False
        remove_ts = False
        if flags & TcpFlags.SYN and not flags & TcpFlags.ACK:
            remove_ts = self.config.remove_timestamps
            if conn.isn is None:  # tcp_in_init_seq: once per entry, retransmitted SYNs keep it
                conn.isn = self._isn.isn(lip, lport, conn.real_server.address, conn.real_server.port, now)
                conn.delta = seq_add(conn.isn, -view.seq)
            want_toa = True
        elif (
            conn.fdata_seq is not None
            and view.ack == conn.fdata_seq
            and flags & TcpFlags.ACK
            and not flags & (TcpFlags.SYN | TcpFlags.RST | TcpFlags.FIN)
        ):
            want_toa = True  # "add toa to first data packet": third ACK, early data
        toa = None
        if want_toa and self.config.insert_toa:
            if view.total_length + TOA_LENGTH > self.config.mtu:
                self.stats[TOA_MTU] += 1
            elif view.tcp_header_length + TOA_LENGTH > MAX_TCP_HEADER:
                self.stats[TOA_NO_ROOM] += 1
            else:
                self.stats[TOA_INSERTED] += 1
                toa = Toa(port=conn.client[1], address=conn.client[0])
        rewrite = Rewrite(
            src=lip,
            dst=conn.real_server.address,
            sport=lport,
            dport=conn.real_server.port,
            seq_delta=conn.delta,
            ttl_decrement=1 if self.config.decrement_ttl else 0,
        )
        return _Plan(Direction.TO_SERVER, rewrite, remove_ts=remove_ts, toa=toa)

    def _plan_out(self, conn: FullNatConn, view: HeaderView) -> _Plan:
        """tcp_fnat_out_handler."""
        flags = view.flags
        syn_ack = bool(flags & TcpFlags.SYN and flags & TcpFlags.ACK)
        if not flags & TcpFlags.RST:  # tcp_out_save_seq
            stale = conn.rs_end_ack is not None and _seq_before(view.ack, conn.rs_end_ack)
            if not stale:
                conn.rs_end_seq = seq_add(view.seq, 1 if syn_ack else view.payload_length)
                conn.rs_end_ack = view.ack
        if syn_ack:
            conn.fdata_seq = seq_add(view.seq, 1)  # tcp_out_init_seq
        rewrite = Rewrite(
            src=conn.service.vip,
            dst=conn.client[0],
            sport=conn.service.vport,
            dport=conn.client[1],
            ack_delta=-conn.delta,
            sack_delta=-conn.delta,
            ttl_decrement=1 if self.config.decrement_ttl else 0,
        )
        mss = syn_ack and self.config.mss_adjust is not MssAdjust.OFF
        return _Plan(Direction.TO_CLIENT, rewrite, mss_adjust=mss)

    def _apply(self, pkt: IPv4Packet, plan: _Plan) -> IPv4Packet:
        new = apply_rewrite(pkt, plan.rewrite)
        if not plan.structural:
            return new
        seg = new.tcp
        options = seg.options
        if plan.remove_ts:
            stripped = nop_out_timestamps(options)
            if stripped != options:
                self.stats[TS_REMOVED] += 1
            options = stripped
        if plan.mss_adjust:
            adjusted = adjust_mss(options, self._adjust_mss_value)
            if adjusted != options:
                self.stats[MSS_ADJUSTED] += 1
            options = adjusted
        if plan.toa is not None:
            options = insert_option_first(options, plan.toa)
        return replace(new, payload=replace(seg, options=options))

    def _adjust_mss_value(self, mss: int) -> int:
        if self.config.mss_adjust is MssAdjust.SUBTRACT_TOA:
            return max(mss - TOA_LENGTH, 0)
        return min(mss, self.config.mss_clamp)

    # --- scheduling and local address binding ---------------------------------------------------------

    def _schedule(self, svc: VirtualService, flow: FlowTuple, now: float) -> ConnEntry[FullNatConn] | _Drop:
        rs = self._pick_real_server(svc)
        if rs is None:
            return _Drop(DROP_NO_DEST)
        local = self._bind_local(rs)
        if local is None:
            return _Drop(DROP_NO_PORT)
        conn = FullNatConn(service=svc, client=(flow.src, flow.sport), real_server=rs, local=local)
        reply = FlowTuple(rs.address, rs.port, local[0], local[1])
        self.stats[SCHEDULED] += 1
        return self.conntrack.add(flow, reply, conn, now)

    def _pick_real_server(self, svc: VirtualService) -> RealServer | None:
        key = (svc.vip, svc.vport)
        servers = svc.real_servers
        if svc.scheduler is Scheduler.WRR:
            index = self._wrr.setdefault(key, _WrrState()).pick([rs.weight for rs in servers])
            return None if index is None else servers[index]
        start = self._rr_cursor.get(key, -1)
        for step in range(1, len(servers) + 1):  # ip_vs_rr_schedule: next server with weight > 0
            index = (start + step) % len(servers)
            if servers[index].weight > 0:
                self._rr_cursor[key] = index
                return servers[index]
        return None

    def _bind_local(self, rs: RealServer) -> tuple[str, int] | None:
        lips = self.config.local_addresses
        lo, hi = self.config.local_port_range
        size = hi - lo + 1
        for k in range(len(lips)):
            lip = lips[(self._lip_cursor + k) % len(lips)]
            for _ in range(size):
                port = lo + self._port_counter[lip] % size
                self._port_counter[lip] += 1
                if not self.conntrack.tuple_in_use(FlowTuple(rs.address, rs.port, lip, port)):
                    self._lip_cursor = (self._lip_cursor + k + 1) % len(lips)
                    return lip, port
        return None

    # --- expiry --------------------------------------------------------------------------------------

    def _expire(self, now: float) -> list[Emit]:
        out: list[Emit] = []
        for entry in self.conntrack.expire(now):
            self.stats[EXPIRED] += 1
            if self.config.rst_on_expire and entry.state is TcpConnState.ESTABLISHED:
                out.extend(self._expire_rsts(entry.ext))
        return out

    def _expire_rsts(self, conn: FullNatConn) -> list[Emit]:
        """tcp_send_rst, both ways: the RS first, then the client."""
        self.stats[EXPIRE_RST] += 2
        to_rs = IPv4Packet(
            src=conn.local[0],
            dst=conn.real_server.address,
            ident=0,
            ttl=64,
            payload=TcpSegment(
                src_port=conn.local[1],
                dst_port=conn.real_server.port,
                seq=conn.rs_end_ack or 0,
                ack=0,
                flags=TcpFlags.RST,
                window=0,
            ),
        )
        to_client = IPv4Packet(
            src=conn.service.vip,
            dst=conn.client[0],
            ident=0,
            ttl=64,
            payload=TcpSegment(
                src_port=conn.service.vport,
                dst_port=conn.client[1],
                seq=conn.rs_end_seq or 0,
                ack=0,
                flags=TcpFlags.RST,
                window=0,
            ),
        )
        return [Emit(to_rs, Direction.TO_SERVER), Emit(to_client, Direction.TO_CLIENT)]


def _seq_before(a: int, b: int) -> bool:
    """RFC 9293 3.4 / DPVS seq_before: a < b in sequence space."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def _checksums_ok(data: bytes, view: HeaderView) -> bool:
    """Both checksums verify (what `parse_ipv4(verify_checksums=True)` checks)."""
    if internet_checksum(data[: view.ihl]) != 0:
        return False
    return tcp_checksum(view.src, view.dst, data[view.ihl : view.total_length]) == 0
