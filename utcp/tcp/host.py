"""A host: local addresses, connections demultiplexed by 4-tuple, listeners, timers, self-delivery.

The sans-IO surface a runtime drives (docs/engine-api.md): `receive`, `packets_to_send`, `next_deadline`,
`on_timer`, `events`, plus `listen`, `connect`, `bind_port`. Time always comes in as `now`.
"""

from __future__ import annotations

import heapq
import random
import secrets
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Literal

from utcp.policy.base import Policy, Verdict
from utcp.policy.linux import LinuxPolicy
from utcp.tcp.clock import TimestampClock
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import SYN_ACK, Connection
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.events import DataReceived, Event, SegmentDropped, SendSpace
from utcp.tcp.isn import IsnGenerator
from utcp.tcp.ports import LinuxPortAllocator, PortAllocator
from utcp.tcp.seq import SEQ_MASK
from utcp.tcp.state import States, TcpState
from utcp.tcp.syncookies import SynCookies
from utcp.wire.codec import build_ipv4, parse_ipv4, parse_ipv4_fields
from utcp.wire.errors import ChecksumError, WireError
from utcp.wire.fastpath import PlainSegment, SynSegment, ntoa, plain_segment, plain_tcp_segment, syn_segment
from utcp.wire.format import format_flags
from utcp.wire.packet import (
    F_ACK,
    F_FIN,
    F_RST,
    F_SYN,
    IPPROTO_TCP,
    IPv4Packet,
    Mss,
    TcpFlags,
    TcpSegment,
    Timestamps,
    Toa,
)

__all__ = ["Host", "Listener"]

ANY = "0.0.0.0"
_Key = tuple[str, int, str, int]
_SYNCOOKIE_VALID = 120.0  # s: cookie ACKs are looked for this long after a cookie (Linux TCP_SYNCOOKIE_VALID)
_TCP_MSS_DEFAULT = 536  # RFC 9293 3.7.1: the MSS assumed without the option
_LOOP_LIMIT = 1_000_000  # self-delivery rounds per packets_to_send call (a guard, never reached normally)
_BASE_CHECK_PASSIVE_SYN = Policy.check_passive_syn  # the stock check: accepts unless tw_recycle
_BASE_CHECK_TIME_WAIT = Policy.check_time_wait
_CLOSED = States.CLOSED  # a global read: Python 3.11 does not specialise class-attribute loads
_TIME_WAIT = States.TIME_WAIT
_NOT_IN_RUNS = F_SYN | F_RST | F_FIN  # flags that keep a packet out of receive_batch's runs (its own path)


class _Counters(Counter[str]):
    """`Host.counters`: a Counter (a name never counted reads 0) whose item assignment is dict's own C
    slot. Counter's __delitem__ (Python, to not raise for a missing name) makes CPython route every
    `counters[name] += 1` through a Python-level lookup of __setitem__ and its wrapper, several times
    per packet. The engine never deletes a counter; `del` of a missing name raises, as for a dict."""

    __slots__ = ()
    __delitem__ = dict.__delitem__  # type: ignore[assignment]  # keys are str here, as Counter's


class Listener:
    """A passive OPEN (RFC 9293 3.10.1) on `address` ("0.0.0.0": any local address) and `port`.

    The SYN queue holds SYN-RECEIVED connections, the accept queue the established ones not yet taken;
    as on Linux each holds up to `backlog` + 1 (sk_acceptq_is_full / inet_csk_reqsk_queue_is_full use >).
    """

    def __init__(  # noqa: PLR0917
        self, host: Host, address: str, port: int, backlog: int, config: TcpConfig, policy: Policy
    ) -> None:
        self._host = host
        self.address = address
        self.port = port
        self.backlog = backlog
        self.config = config
        self.policy = policy
        self.closed = False
        self._syn_queue: dict[Connection, None] = {}
        self._accept_queue: deque[Connection] = deque()
        self._last_overflow: float | None = None  # last SYN cookie sent (Linux tcp_synq_overflow)

    def __repr__(self) -> str:
        return f"<Listener {self.address}:{self.port} backlog={self.backlog}>"

    @property
    def pending(self) -> int:
        """Established connections waiting in the accept queue."""
        return len(self._accept_queue)

    @property
    def syn_pending(self) -> int:
        """Connections still in SYN-RECEIVED."""
        return len(self._syn_queue)

    def accept(self) -> Connection | None:
        """The oldest established connection, or None."""
        while self._accept_queue:
            conn = self._accept_queue.popleft()
            if conn.state is not TcpState.CLOSED or conn.readable or conn.eof_received:
                return conn
        return None

    def close(self) -> None:
        """Stop listening. Queued established connections are reset (Linux inet_csk_listen_stop ->
        tcp_disconnect); SYN-RECEIVED ones are dropped silently."""
        if self.closed:
            return
        self.closed = True
        self._host._remove_listener(self)
        for conn in list(self._syn_queue):
            conn._terminate(None, None)
        self._syn_queue.clear()
        while self._accept_queue:
            self._accept_queue.popleft().abort()


class Host:
    """A TCP host (see docs/engine-api.md)."""

    def __init__(  # noqa: PLR0917 (the documented positional API)
        self,
        addresses: Iterable[str],
        config: TcpConfig | None = None,
        policy: Policy | None = None,
        mtu: int = 1500,
        seed: int | None = None,
        port_allocator: PortAllocator | None = None,
        closed_port_reply: Literal["rst", "drop"] = "rst",
        ts_clock: TimestampClock | None = None,
        *,
        isn_generator: IsnGenerator | None = None,
        loopback_visible: bool = False,
        toa: Literal["getpeername"] | None = None,
        ack_per_batch: bool = False,
        verify_checksums: bool = True,
        wire_output: bool = False,
        max_connections: int | None = None,
    ) -> None:
        self.addresses = tuple(addresses)
        if not self.addresses:
            raise TcpUsageError("a host needs at least one address")
        self._addr_set = frozenset(self.addresses)
        self.config = config if config is not None else TcpConfig()
        self.policy = policy if policy is not None else LinuxPolicy()
        if mtu < 68:
            raise TcpUsageError("mtu must be at least 68")
        self.mtu = mtu
        if closed_port_reply not in ("rst", "drop"):
            raise TcpUsageError("closed_port_reply must be 'rst' or 'drop'")
        self.closed_port_reply = closed_port_reply
        self.loopback_visible = loopback_visible
        if toa not in (None, "getpeername"):
            raise TcpUsageError("toa must be None or 'getpeername'")
        self.toa = toa
        # A runtime that feeds whole batches of reads before packets_to_send() sets this: the ACK due
        # every second segment, and data an incoming ACK releases, then go out once per batch.
        self.ack_per_batch = ack_per_batch
        # False only for links whose packets the kernel checksummed itself (a TUN device, no offloads).
        self.verify_checksums = verify_checksums
        # A runtime that drains datagrams_to_send() sets this: plain segments (data and ACKs of an
        # established connection, no SACK blocks) are then queued already encoded, no values built.
        self.wire_output = wire_output
        self._wire_conns: dict[bytes, Connection] = {}  # packet bytes 12..23 -> connection (fast path)
        if max_connections is not None and max_connections < 1:
            raise TcpUsageError("max_connections must be at least 1 (or None: no limit)")
        # every connection the host holds counts, SYN-RECEIVED and TIME-WAIT included
        self.max_connections = max_connections
        # SYN cookie key: from the seed without drawing from _rng (which would shift IP IDs and ports)
        self._cookies = SynCookies(
            random.Random(seed ^ 0x5C00C1E5).randbytes(16) if seed is not None else secrets.token_bytes(16)
        )
        self._rng = random.Random(seed)
        sub = [self._rng.getrandbits(64) for _ in range(3)] if seed is not None else [None, None, None]
        self._isn = isn_generator if isn_generator is not None else IsnGenerator(rng_seed=sub[0])
        self._ts_clock = ts_clock if ts_clock is not None else TimestampClock(seed=sub[1])
        self._ports: PortAllocator = (
            port_allocator if port_allocator is not None else LinuxPortAllocator(seed=sub[2])
        )
        self.counters: Counter[str] = _Counters()
        self._conns: dict[_Key, Connection] = {}
        self._listeners: dict[tuple[str, int], Listener] = {}
        # (local address, port) -> users; a dict, not a Counter: Counter's __missing__ and __delitem__ are
        # Python code, run (from C) for every connection registered and unlinked
        self._bound: dict[tuple[str, int], int] = {}
        self._events: list[Event] = []
        self._outbox: list[IPv4Packet | bytes] = []  # bytes only with wire_output
        self._loop: deque[IPv4Packet] = deque()
        self._dirty: dict[Connection, None] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._heap_seq = 0
        self._now = 0.0

    def __repr__(self) -> str:
        return f"<Host {', '.join(self.addresses)}>"

    # =====================================================================================================
    # runtime surface
    # =====================================================================================================

    def receive(self, packet: IPv4Packet | bytes | bytearray | memoryview, now: float) -> None:
        """Process one packet from the network. Bytes are parsed; bad ones are counted and dropped."""
        self._now = now
        if type(packet) is bytes:
            if len(packet) > 33 and packet[33] & F_SYN:
                # SYN in TCP's flags byte (after an IPv4 header without options, the only one either fast
                # shape takes): syn_segment's shape, never plain_segment's (no header unpacked twice)
                syn = syn_segment(packet, self.verify_checksums)
                if syn is not None and self._receive_syn_fast(packet, syn, now):
                    return
            else:
                shape = plain_segment(packet, self.verify_checksums)
                if shape is not None:
                    # _receive_plain, written out: a call less for every packet on this path
                    if self._receive_fast(packet, shape, now):
                        return
                    dst = ntoa(shape[1])
                    if dst in self._addr_set:
                        self._deliver(ntoa(shape[0]), dst, plain_tcp_segment(packet, shape), now)
                        return
        if isinstance(packet, IPv4Packet):
            src, dst, seg, protocol = packet.src, packet.dst, packet.payload, packet.protocol
            fragment = packet.more_fragments or packet.fragment_offset
        else:
            try:
                # the fields, not an IPv4Packet: only these five are read, the value would be thrown away
                fields = parse_ipv4_fields(packet, verify_checksums=self.verify_checksums)
            except ChecksumError as exc:
                self.counters["InErrs"] += 1
                self.counters["InCsumErrors"] += 1
                self._emit(SegmentDropped(str(exc), "InCsumErrors"))
                return
            except WireError as exc:
                self.counters["InErrs"] += 1
                self._emit(SegmentDropped(str(exc), "InErrs"))
                return
            src, dst, seg, protocol = fields[0], fields[1], fields[2], fields[3]
            fragment = fields[8] or fields[9]
        if dst not in self._addr_set:
            # RFC 4293 ipSystemStatsInAddrErrors (Linux ip_rcv_finish -> IPSTATS_MIB_INADDRERRORS)
            self.counters["InAddrErrors"] += 1
            self._emit(SegmentDropped(f"not addressed to this host: {dst}", "InAddrErrors"))
            return
        if protocol != IPPROTO_TCP or not isinstance(seg, TcpSegment):
            if fragment:
                reason, counter = "IPv4 fragment (no reassembly)", "ReasmFails"  # RFC 4293 ReasmFails
            else:
                # Linux ip_protocol_deliver_rcu: no handler -> IPSTATS_MIB_INUNKNOWNPROTOS
                reason, counter = f"not TCP (protocol {protocol})", "InUnknownProtos"
            self.counters[counter] += 1
            self._emit(SegmentDropped(reason, counter))
            return
        self._deliver(src, dst, seg, now)

    def receive_batch(self, batch: list[bytes], now: float) -> None:
        """`receive` for each packet of `batch` (what one read of the device gave), in order, with the
        same result. A run of in-order data segments for one connection, a bulk sender's burst, goes to
        Connection._fast_data_run in one call (Linux GRO's idea, on the headers plain_segment reads
        anyway): one connection lookup and one pass through the per-segment bookkeeping for the run."""
        first = batch[0] if batch else b""
        if (
            len(batch) < 3
            or len(first) <= 40
            or first[12:24] != batch[1][12:24]
            or len(first) <= 20 + (first[32] >> 4) * 4  # no payload (read as plain_segment's shape would)
        ):
            # Not opening with a flow's burst of data (connection churn: a packet or two for each of
            # several 4-tuples; a sender's stream of pure ACKs): looking for runs would cost more than it
            # saves. (The first two packets, not the first and the last: bulk flows read interleaved
            # still open with a run, and _receive_runs finds every run of the batch.)
            for raw in batch:
                self.receive(raw, now)
            return
        self._receive_runs(batch, now)

    def _receive_runs(self, batch: list[bytes], now: float) -> None:
        """receive_batch's work: each packet to `receive`, but runs of data segments for one connection
        to Connection._fast_data_run."""
        self._now = now
        n = len(batch)
        verify = self.verify_checksums
        wire_conns = self._wire_conns
        i = 0
        while i < n:
            raw = batch[i]
            i += 1
            if type(raw) is not bytes or len(raw) <= 33 or raw[33] & _NOT_IN_RUNS:
                self.receive(raw, now)
                continue
            shape = plain_segment(raw, verify)
            if shape is None:
                self.receive(raw, now)  # the general parser reports what is wrong with it
                continue
            key = raw[12:24]
            # a run starts with data followed by a packet of the same 4-tuple, for a connection we hold
            conn = (
                wire_conns.get(key)
                if i < n and shape[9] < len(raw) and type(batch[i]) is bytes and batch[i][12:24] == key
                else None
            )
            if conn is None:
                if not self._receive_plain(raw, shape, now):
                    self.receive(raw, now)  # not ours: receive counts it
                continue
            # the data segments that follow for the same 4-tuple: the run's candidates
            raws = [raw]
            shapes = [shape]
            while i < n:
                nxt = batch[i]
                if type(nxt) is not bytes or len(nxt) <= 33 or nxt[33] & _NOT_IN_RUNS or nxt[12:24] != key:
                    break
                nxt_shape = plain_segment(nxt, verify)
                if nxt_shape is None or nxt_shape[9] >= len(nxt):
                    break  # not plain, or no data: the outer loop takes it (parsing it again, once a run)
                raws.append(nxt)
                shapes.append(nxt_shape)
                i += 1
            taken = conn._fast_data_run(raws, shapes, now) if len(raws) > 1 else 0
            if taken:
                self.counters["InSegs"] += taken
            for k in range(taken, len(raws)):  # a run's packets are ours: the connection holds their key
                self._receive_plain(raws[k], shapes[k], now)

    def _receive_plain(self, raw: bytes, shape: PlainSegment, now: float) -> bool:
        """`receive` for a packet plain_segment parsed (`shape`) and addressed to us: the fast path, else
        the general one. False (nothing done) when it is not for one of our addresses."""
        if self._receive_fast(raw, shape, now):
            return True
        dst = ntoa(shape[1])
        if dst in self._addr_set:
            # the general path for the value parse_ipv4 would give, from the fields already read
            # (checksums verified once, by plain_segment)
            self._deliver(ntoa(shape[0]), dst, plain_tcp_segment(raw, shape), now)
            return True
        return False

    def _receive_fast(self, raw: bytes, shape: PlainSegment, now: float) -> bool:
        """Header prediction (Linux tcp_rcv_established fast path): an in-order data segment for an
        ESTABLISHED connection goes straight into its receive buffer, a pure ACK of new data straight
        into its send side, and the handshake's last ACK and the segments of an orderly close straight
        to their transitions (Connection._fast_input), no packet values built. False: nothing was done,
        take the general path."""
        src, dst, sport, dport, seq, ack, window, tsval, tsecr, start, flags = shape
        # the 4-tuple as it sits in the packet (addresses, then ports): one slice, one lookup
        wire_key = raw[12:24]
        conn = self._wire_conns.get(wire_key)
        if conn is None:  # once per connection: from then on the wire key finds it
            conn = self._learn_wire_key(wire_key, ntoa(dst), dport, ntoa(src), sport)
            if conn is None:
                return False
        payload = memoryview(raw)[start:] if start < len(raw) else b""
        if not conn._fast_input(seq, ack, flags, window, tsval, tsecr, payload, now):
            return False
        self.counters["InSegs"] += 1
        return True

    def _receive_syn_fast(self, raw: bytes, syn: SynSegment, now: float) -> bool:
        """Header prediction for the handshake (utcp.wire.fastpath.syn_segment's shape): the SYN-ACK
        answering a connection in SYN-SENT (Connection._fast_synack), a SYN for a listener and no
        connection (_fast_passive_open). False: nothing was done, take the general path. (The shape
        carries no TOA option: with Host(toa=...) set, _deliver's _note_toa would find none either.)"""
        wire_key = raw[12:24]
        conn = self._wire_conns.get(wire_key)
        if conn is None:
            src, dst, sport, dport = syn[0], syn[1], syn[2], syn[3]
            laddr = ntoa(dst)
            raddr = ntoa(src)
            conn = self._learn_wire_key(wire_key, laddr, dport, raddr, sport)
            if conn is None:
                return self._fast_passive_open(laddr, raddr, wire_key, syn, now)
        _, _, _, _, seq, ack, window, flags, mss, wscale, sack, tsval, tsecr = syn
        if flags != SYN_ACK:
            if flags == F_SYN and conn.state is _TIME_WAIT:
                return self._fast_time_wait_reuse(conn, wire_key, syn, now)
            return False  # a SYN for a connection: its state decides (retransmission, a simultaneous open)
        if not conn._fast_synack(seq, ack, window, mss, wscale, sack, tsval, tsecr, now):
            return False
        self.counters["InSegs"] += 1
        return True

    def _learn_wire_key(
        self, wire_key: bytes, laddr: str, lport: int, raddr: str, rport: int
    ) -> Connection | None:
        """The connection holding this 4-tuple, from now on found by `wire_key` (the packet's address and
        port bytes, Host._receive_fast); None if there is none."""
        conn = self._conns.get((laddr, lport, raddr, rport))
        if conn is not None:
            self._bind_wire_key(wire_key, conn)
        return conn

    def _bind_wire_key(self, wire_key: bytes, conn: Connection) -> None:
        # only connections we hold, forgotten in _unlink: as bounded as _conns
        self._wire_conns[wire_key] = conn
        conn._wire_key = wire_key

    def _fast_time_wait_reuse(self, tw: Connection, wire_key: bytes, syn: SynSegment, now: float) -> bool:
        """Header prediction for a SYN that reopens a TIME-WAIT connection, as a client reusing its port
        sends (Linux tcp_timewait_state_process -> TCP_TW_SYN, then tcp_conn_request with the ISN
        tcp_tw_isn above the old SND.NXT): the stock policy accepts it, and _fast_passive_open takes it.
        Does what _deliver -> Connection._input -> _rcv_time_wait -> _reopen would; returns False,
        having changed nothing, when any other rule could apply (then the caller takes the general
        path)."""
        policy = tw.policy
        if type(policy).check_time_wait is not _BASE_CHECK_TIME_WAIT:
            return False  # a user policy decides TIME-WAIT itself: let it see the whole segment
        lst = self._listener_for(tw.local)
        if lst is None or not self._fast_open_allowed(lst, leaving=1):
            return False  # no listener (TCP_TW_ACK), or the listener's own rules apply: general path
        _, _, sport, dport, seq, _, window, _, _, _, _, tsval, tsecr = syn
        # what Policy.check_time_wait reads of the SYN: its flags, sequence number, length and TSval
        seg = TcpSegment(
            sport, dport, seq, 0, TcpFlags.SYN, window, (Timestamps(tsval, tsecr),) if tsval >= 0 else ()
        )
        if policy.check_time_wait(tw, seg, now).verdict is not Verdict.ACCEPT:
            return False  # PAWS, or neither a higher sequence number nor a newer TSval: general path
        # Connection._input and _rcv_time_wait, for the old connection
        self.counters["InSegs"] += 1
        tw._st_segs_in += 1
        isn = tw._reopen_isn()
        tw._terminate(None, None)
        self._open_request_fast(lst, tw.local[0], tw.remote[0], wire_key, syn, now, isn)
        tw._after_input(now)
        return True

    def _fast_open_allowed(self, lst: Listener, leaving: int = 0) -> bool:
        """_fast_passive_open's rules for the listener: the stock policy with nothing to check, room in
        both queues and under the connection limit (`leaving`: connections about to be deleted)."""
        policy = lst.policy
        if type(policy).check_passive_syn is not _BASE_CHECK_PASSIVE_SYN or policy.tw_recycle:
            return False  # Linux tcp_peer_is_proven (tw_recycle), or a user policy: let it see the SYN
        backlog = lst.backlog
        if len(lst._accept_queue) > backlog or len(lst._syn_queue) > backlog:
            return False  # Linux tcp_conn_request: a full queue drops the SYN or answers with a cookie
        return not self._at_connection_limit(leaving)  # Host(max_connections): TCPMaxConnectionsDrop

    def _fast_passive_open(
        self, laddr: str, raddr: str, wire_key: bytes, syn: SynSegment, now: float
    ) -> bool:
        """Header prediction for a SYN reaching a listener when no connection holds its 4-tuple (Linux
        tcp_v4_rcv finds the listener, tcp_conn_request accepts): the stock policy with nothing to
        check, room in both queues and under the connection limit. Does exactly what _deliver ->
        _listen_input -> _passive_open would do for it; returns False, having changed nothing,
        whenever any other rule could apply (then the caller takes the general path)."""
        dport, flags = syn[3], syn[7]
        if flags != F_SYN:
            return False  # RFC 9293 3.10.7.2 second: LISTEN answers an ACK with RST (or a SYN cookie ACK)
        if laddr not in self._addr_set:
            return False  # not ours (Linux ip_rcv_finish: InAddrErrors); a wildcard listener would match
        lst = self._listeners.get((laddr, dport)) or self._listeners.get((ANY, dport))
        if lst is None:
            return False  # RFC 9293 3.10.7.1 CLOSED: RST or drop
        if not self._fast_open_allowed(lst):
            return False
        self.counters["InSegs"] += 1
        self._open_request_fast(lst, laddr, raddr, wire_key, syn, now, None)
        return True

    def _open_request_fast(  # noqa: PLR0917
        self,
        lst: Listener,
        laddr: str,
        raddr: str,
        wire_key: bytes,
        syn: SynSegment,
        now: float,
        isn: int | None,
    ) -> None:
        """The request socket and its SYN-ACK, as _passive_open makes them for a SYN the fast paths
        vetted; `isn`: the one TIME-WAIT chose, None for a fresh one (RFC 6528)."""
        _, _, sport, dport, seq, _, window, _, mss, wscale, sack, tsval, _ = syn
        if isn is None:
            isn = self._isn.isn(laddr, dport, raddr, sport, now)
        conn = self._new_request(lst, (laddr, dport), (raddr, sport), isn)
        self._bind_wire_key(wire_key, conn)  # the third ACK finds it at once (Host._receive_fast)
        conn._open_request(seq, window, mss, wscale, sack, tsval, now)
        self._reschedule(conn)

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        """Everything ready to go out. Packets to our own addresses are delivered here, internally."""
        return [
            p if isinstance(p, IPv4Packet) else parse_ipv4(p, verify_checksums=False)
            for p in self._drain(now)
        ]

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """`packets_to_send`, encoded (codec.build_ipv4): with `wire_output`, plain segments are already
        bytes and cost no value on the way."""
        out: list[Any] = self._drain(now)  # (Any: all bytes when the loop below finds no value)
        if not out:
            return []  # a fresh list: an empty outbox stays the host's (_drain)
        for p in out:
            if isinstance(p, IPv4Packet):
                return [build_ipv4(p) if isinstance(p, IPv4Packet) else p for p in out]
        return out  # all encoded already, and the host handed it over (_drain): no comprehension (a call)

    def has_output(self) -> bool:
        """Whether `packets_to_send` would find anything to do: a connection with something to transmit,
        a self-delivered packet or a queued one (due timers are `next_deadline`'s business)."""
        return bool(self._dirty or self._loop or self._outbox)

    def _drain(self, now: float) -> list[IPv4Packet | bytes]:
        self._now = now
        rounds = 0
        while self._dirty or self._loop:
            rounds += 1
            if rounds > _LOOP_LIMIT:
                break
            if self._dirty:
                dirty = self._dirty
                self._dirty = {}
                for conn in dirty:
                    conn._transmit(now)
                    self._reschedule(conn)
            while self._loop:
                pkt = self._loop.popleft()
                seg = pkt.payload
                if isinstance(seg, TcpSegment):
                    self._deliver(pkt.src, pkt.dst, seg, now)
        out = self._outbox
        if out:
            self._outbox = []  # an empty one stays: both callers hand out a fresh list instead
        return out

    def next_deadline(self) -> float | None:
        """The earliest timer of any connection."""
        heap = self._heap
        while heap:
            d, _, conn = heap[0]
            live = conn._deadline
            if live is not None and live == d:  # floats only (see _reschedule)
                return d
            heapq.heappop(heap)  # stale: the connection's deadline moved
        return None

    def on_timer(self, now: float) -> None:
        """Fire every timer due at `now`."""
        self._now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, _, conn = heapq.heappop(heap)
            if conn._deadline != d:
                continue
            conn._deadline = None
            conn._on_timer(now)
            self._reschedule(conn)

    def events(self) -> list[Event]:
        """Drain the events produced since the last call."""
        evs = self._events
        if not evs:
            return []  # a fresh list, as below; ours stays empty
        self._events = []
        for ev in evs:
            if type(ev) is DataReceived:
                ev.connection._data_evt = False
            elif type(ev) is SendSpace:
                ev.connection._space_evt = False
        return evs

    # =====================================================================================================
    # user surface
    # =====================================================================================================

    def listen(
        self,
        address: str,
        port: int,
        backlog: int = 128,
        *,
        config: TcpConfig | None = None,
        policy: Policy | None = None,
    ) -> Listener:
        """Passive OPEN. Port 0 picks one (bind(0)). TcpUsageError if the address:port is taken.
        `config` and `policy` override the host's for this listener and every connection it accepts."""
        if address != ANY and address not in self._addr_set:
            raise TcpUsageError(f"{address} is not an address of this host")
        if port == 0:
            port = self.bind_port(address)
        if not 0 < port < 65536:
            raise TcpUsageError(f"bad port {port}")
        if (
            (address, port) in self._listeners
            or (address == ANY and any(p == port for (_, p) in self._listeners))
            or (ANY, port) in self._listeners
        ):
            raise TcpUsageError(f"address in use: {address}:{port}")
        backlog = max(backlog, 0)
        lst = Listener(
            self,
            address,
            port,
            backlog,
            config if config is not None else self.config,
            policy if policy is not None else self.policy,
        )
        self._listeners[(address, port)] = lst
        self._bound[(address, port)] = self._bound.get((address, port), 0) + 1
        return lst

    def connect(
        self,
        remote_address: str,
        remote_port: int,
        now: float,
        *,
        local_address: str | None = None,
        local_port: int = 0,
        config: TcpConfig | None = None,
        policy: Policy | None = None,
        hold_third_ack: bool = False,
        port_allocator: PortAllocator | None = None,
    ) -> Connection:
        """Active OPEN: a connection in SYN-SENT whose SYN is queued. local_port 0 asks the allocator
        (connect() semantics: the 4-tuple must be unique); a given local_port must make a unique 4-tuple.
        `policy` overrides the host's for this connection. `hold_third_ack`: once the SYN-ACK arrives the
        connection is ESTABLISHED but sends nothing, not even the third ACK, until
        `Connection.release_third_ack()` (segments can be crafted meanwhile with `Connection.craft`).
        `port_allocator` picks this connection's ephemeral port instead of the host's (a per-socket
        range, as Linux IP_LOCAL_PORT_RANGE gives one)."""
        self._now = now
        if local_address is None:
            local_address = remote_address if remote_address in self._addr_set else self.addresses[0]
        elif local_address not in self._addr_set:
            raise TcpUsageError(f"{local_address} is not an address of this host")
        if not 0 < remote_port < 65536:
            raise TcpUsageError(f"bad remote port {remote_port}")
        if local_port == 0:
            # TcpConfig.refuse_self_connect: the port that would connect us to ourselves counts as taken
            # (Go net.doDialTCPProto: "rather than expose the buggy effect to users, we close the fd").
            refuse_self = (config if config is not None else self.config).refuse_self_connect and (
                local_address == remote_address
            )

            def in_use(port: int) -> bool:
                if refuse_self and port == remote_port:
                    return True
                return (local_address, port, remote_address, remote_port) in self._conns or (
                    (local_address, port) in self._listeners or (ANY, port) in self._listeners
                )

            allocator = port_allocator if port_allocator is not None else self._ports
            port = allocator.connect_port(local_address, remote_address, remote_port, in_use)
            if port is None:
                raise TcpUsageError("no ephemeral port available (EADDRNOTAVAIL)")
            local_port = port
        elif not 0 < local_port < 65536:
            raise TcpUsageError(f"bad local port {local_port}")
        key = (local_address, local_port, remote_address, remote_port)
        if key in self._conns:
            raise TcpUsageError(
                f"address in use: {local_address}:{local_port} -> {remote_address}:{remote_port}"
            )
        if self._at_connection_limit():
            raise TcpUsageError(f"connection limit reached (max_connections={self.max_connections})")
        cfg = config if config is not None else self.config
        conn = Connection(
            self,
            (local_address, local_port),
            (remote_address, remote_port),
            cfg,
            policy if policy is not None else self.policy,
            self._isn.isn(local_address, local_port, remote_address, remote_port, now),  # iss
            self.mtu - 40,  # mtu_mss
            self._new_ip_id(),  # ip_id
        )
        conn._hold_third_ack = hold_third_ack
        self._register(conn)
        conn._open_active(now)
        self._reschedule(conn)
        return conn

    def bind_port(self, local_address: str) -> int:
        """A free port for bind(0) on `local_address` (Linux: the other parity than connect())."""

        def in_use(port: int) -> bool:
            if (local_address, port) in self._bound or (ANY, port) in self._bound:
                return True
            # binding the wildcard address collides with the port on any address
            return local_address == ANY and any(p == port for _, p in self._bound)

        port = self._ports.bind_port(local_address, in_use)
        if port is None:
            raise TcpUsageError("no port available (EADDRINUSE)")
        return port

    def connections(self) -> list[Connection]:
        """Every connection not CLOSED (TIME-WAIT included, SYN-RECEIVED of listeners included)."""
        return list(self._conns.values())

    def listeners(self) -> list[Listener]:
        return list(self._listeners.values())

    # =====================================================================================================
    # demultiplexing (RFC 9293 3.10.7)
    # =====================================================================================================

    def _deliver(self, src: str, dst: str, seg: TcpSegment, now: float) -> None:
        self.counters["InSegs"] += 1
        key = (dst, seg.dst_port, src, seg.src_port)
        conn = self._conns.get(key)
        if conn is not None:
            if self.toa is not None:
                _note_toa(conn, seg)
            conn._input(seg, now)
            return
        lst = self._listeners.get((dst, seg.dst_port)) or self._listeners.get((ANY, seg.dst_port))
        if lst is not None:
            self._listen_input(lst, src, dst, seg, now)
            if self.toa is not None and (conn := self._conns.get(key)) is not None:
                _note_toa(conn, seg)  # the SYN that created the request socket
            return
        self._closed_port(src, dst, seg)

    def _closed_port(self, src: str, dst: str, seg: TcpSegment) -> None:
        """CLOSED (RFC 9293 3.10.7.1): answer with RST unless the segment is one; or drop (configured)."""
        if self.closed_port_reply == "rst" and not seg.flags & TcpFlags.RST:
            self._emit(
                SegmentDropped("no connection or listener: reset sent", "OutRsts", _summary(src, dst, seg))
            )
            self._send_reset(dst, src, seg)
        else:
            self._emit(SegmentDropped("no connection or listener", None, _summary(src, dst, seg)))

    def _listen_input(self, lst: Listener, src: str, dst: str, seg: TcpSegment, now: float) -> None:
        """LISTEN (RFC 9293 3.10.7.2; Linux tcp_v4_do_rcv / tcp_rcv_state_process / tcp_conn_request)."""
        flags = int(seg.flags)  # plain int: IntFlag operators are ~10x slower
        # first, check for an RST: ignore it
        if flags & F_RST:
            self._listen_drop("LISTEN: RST ignored", None, src, dst, seg)
            return
        # second, check for an ACK: <SEQ=SEG.ACK><CTL=RST>; first the SYN cookie it may carry back
        if flags & F_ACK and not flags & F_SYN and self._cookie_ack(lst, src, dst, seg, now):
            return
        if flags & F_ACK:
            self._listen_drop("LISTEN: ACK answered with RST", "OutRsts", src, dst, seg)
            self._send_reset(dst, src, seg)
            return
        # third, check for a SYN
        if not flags & F_SYN:
            self._listen_drop("LISTEN: neither SYN, ACK nor RST", None, src, dst, seg)
            return
        if flags & F_FIN:
            self._listen_drop("LISTEN: SYN with FIN (Linux discards it)", None, src, dst, seg)
            return
        self._passive_open(lst, src, dst, seg, now, None)

    def _passive_open(  # noqa: PLR0917
        self, lst: Listener, src: str, dst: str, seg: TcpSegment, now: float, isn: int | None
    ) -> None:
        d = lst.policy.check_passive_syn(
            (dst, seg.dst_port), (src, seg.src_port), seg, now, via_time_wait=isn is not None
        )
        if d.verdict is not Verdict.ACCEPT:
            if d.counter:
                self.counters[d.counter] += 1
            self._listen_drop(d.reason, d.counter, src, dst, seg)
            return
        if len(lst._accept_queue) > lst.backlog:
            # Linux tcp_conn_request: sk_acceptq_is_full -> drop (ListenOverflows, ListenDrops)
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            self._listen_drop("accept queue full", "ListenOverflows", src, dst, seg)
            return
        if len(lst._syn_queue) > lst.backlog and isn is None and lst.config.syn_cookies:
            # SYN queue full: answer with a cookie, keep no state (Linux tcp_conn_request want_cookie)
            self.counters["TCPReqQFullDoCookies"] += 1
            self._send_cookie(lst, src, dst, seg, now)
            return
        if len(lst._syn_queue) > lst.backlog:
            # SYN queue full, no SYN cookies: drop (Linux TCPReqQFullDrop, ListenDrops)
            self.counters["TCPReqQFullDrop"] += 1
            self.counters["ListenDrops"] += 1
            self._listen_drop("SYN queue full", "ListenDrops", src, dst, seg)
            return
        if self._at_connection_limit():
            self._limit_drop(src, dst, seg)
            return
        if isn is None:
            isn = self._isn.isn(dst, seg.dst_port, src, seg.src_port, now)
        conn = self._new_request(lst, (dst, seg.dst_port), (src, seg.src_port), isn)
        conn._open_passive(seg, now)
        self._reschedule(conn)

    def _new_request(
        self, lst: Listener, local: tuple[str, int], remote: tuple[str, int], isn: int
    ) -> Connection:
        """A listener's request socket for an accepted SYN (Linux inet_reqsk_alloc), in its SYN queue."""
        # by position (Connection.__init__): iss, mtu_mss, ip_id (0: Linux request sockets), listener
        conn = Connection(self, local, remote, lst.config, lst.policy, isn, self.mtu - 40, 0, lst)
        lst._syn_queue[conn] = None
        self._register(conn)
        return conn

    # --- resource limits and SYN cookies ------------------------------------------------------------------

    def _at_connection_limit(self, leaving: int = 0) -> bool:
        """Host(max_connections) is reached, counting `leaving` connections about to be deleted out."""
        return self.max_connections is not None and len(self._conns) - leaving >= self.max_connections

    def _limit_drop(self, src: str, dst: str, seg: TcpSegment) -> None:
        """A peer's SYN (or cookie ACK) over Host(max_connections): counted and dropped, as a full SYN
        queue is (ListenDrops)."""
        self.counters["TCPMaxConnectionsDrop"] += 1
        self.counters["ListenDrops"] += 1
        self._listen_drop("connection limit reached", "TCPMaxConnectionsDrop", src, dst, seg)

    def _listen_drop(self, reason: str, counter: str | None, src: str, dst: str, seg: TcpSegment) -> None:
        # The summary string is built only for a drop: an accepted SYN pays nothing for reporting.
        self._emit(SegmentDropped(reason, counter, _summary(src, dst, seg)))

    def _cookie_mss(self, lst: Listener) -> int:
        base = lst.config.mss if lst.config.mss is not None else self.mtu - 40
        return max(min(base, 65535), 88)  # what a connection would advertise (Connection._adv_mss)

    def _send_cookie(self, lst: Listener, src: str, dst: str, seg: TcpSegment, now: float) -> None:
        """A stateless SYN-ACK whose ISN is a SYN cookie (Linux tcp_conn_request with want_cookie)."""
        peer_mss = _TCP_MSS_DEFAULT
        for opt in seg.options:
            if isinstance(opt, Mss):
                peer_mss = opt.value
                break
        mss = min(peer_mss, self._cookie_mss(lst))
        cookie = self._cookies.make((src, seg.src_port, dst, seg.dst_port), seg.seq, mss, now)
        lst._last_overflow = now
        synack = TcpSegment(
            seg.dst_port,
            seg.src_port,
            cookie,
            (seg.seq + 1) & SEQ_MASK,
            TcpFlags.SYN | TcpFlags.ACK,
            min(lst.config.recv_buffer, 65535),
            (Mss(self._cookie_mss(lst)),),
        )
        self.counters["SyncookiesSent"] += 1
        self._listen_drop("SYN queue full: SYN cookie sent", "SyncookiesSent", src, dst, seg)
        self._send(IPv4Packet(dst, src, synack))

    def _cookie_ack(self, lst: Listener, src: str, dst: str, seg: TcpSegment, now: float) -> bool:
        """An ACK to a listener that may return a SYN cookie (Linux cookie_v4_check). True when it was
        consumed (a connection made, or dropped for a full queue / the limit); False: go on to the RST."""
        last = lst._last_overflow
        if not lst.config.syn_cookies or last is None or now - last > _SYNCOOKIE_VALID:
            return False  # tcp_synq_no_recent_overflow: no cookie was sent lately
        sseq = (seg.seq - 1) & SEQ_MASK
        cookie = (seg.ack - 1) & SEQ_MASK
        mss = self._cookies.check((src, seg.src_port, dst, seg.dst_port), sseq, cookie, now)
        if mss is None:
            self.counters["SyncookiesFailed"] += 1
            return False
        self.counters["SyncookiesRecv"] += 1
        if len(lst._accept_queue) > lst.backlog:
            # tcp_get_cookie_sock -> syn_recv_sock: sk_acceptq_is_full
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            self._listen_drop("accept queue full (SYN cookie ACK)", "ListenOverflows", src, dst, seg)
            return True
        if self._at_connection_limit():
            self._limit_drop(src, dst, seg)
            return True
        # rebuild the request from the cookie: the SYN had sequence SEG.SEQ - 1 and (at least) this MSS
        syn = TcpSegment(seg.src_port, seg.dst_port, sseq, 0, TcpFlags.SYN, seg.window, (Mss(mss),))
        conn = self._new_request(lst, (dst, seg.dst_port), (src, seg.src_port), cookie)
        conn._open_passive(syn, now, send_synack=False)
        conn._input(seg, now)  # the ACK completes the handshake (and may carry data)
        self._reschedule(conn)
        return True

    def _reopen(
        self, local: tuple[str, int], remote: tuple[str, int], seg: TcpSegment, now: float, isn: int
    ) -> None:
        """A SYN accepted by TIME-WAIT (Linux TCP_TW_SYN): handled as if by the listener, with the ISN
        chosen above the old connection's."""
        lst = self._listener_for(local)
        if lst is None:
            self._closed_port(remote[0], local[0], seg)
            return
        self._passive_open(lst, remote[0], local[0], seg, now, isn)

    def _listener_for(self, local: tuple[str, int]) -> Listener | None:
        return self._listeners.get(local) or self._listeners.get((ANY, local[1]))

    # =====================================================================================================
    # services for connections
    # =====================================================================================================

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def _send(self, packet: IPv4Packet, retransmit: bool = False) -> None:
        if retransmit:
            self.counters["RetransSegs"] += 1
        else:
            self.counters["OutSegs"] += 1
        if packet.dst in self._addr_set:
            self._loop.append(packet)
            if self.loopback_visible:
                self._outbox.append(packet)
        else:
            self._outbox.append(packet)

    def _send_wire(self, raw: bytes, retransmit: bool = False) -> None:
        """`_send` for a packet a connection encoded itself (wire_output; never to our own address)."""
        if retransmit:
            self.counters["RetransSegs"] += 1
        else:
            self.counters["OutSegs"] += 1
        self._outbox.append(raw)

    def _send_wire_many(self, raws: list[bytes]) -> None:
        """`_send_wire` for a run of new (not retransmitted) segments."""
        self.counters["OutSegs"] += len(raws)
        self._outbox.extend(raws)

    def _send_reset(self, local_addr: str, remote_addr: str, seg: TcpSegment) -> None:
        """Reset generation (RFC 9293 3.10.7.1; Linux tcp_v4_send_reset: no options, IP id 0).

        If the segment has ACK: <SEQ=SEG.ACK><CTL=RST>; else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
        Never in answer to an RST."""
        if seg.flags & TcpFlags.RST:
            return
        if seg.flags & TcpFlags.ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, TcpFlags.RST, 0)
        else:
            rst = TcpSegment(
                seg.dst_port,
                seg.src_port,
                0,
                (seg.seq + seg.seg_len) & SEQ_MASK,
                TcpFlags.RST | TcpFlags.ACK,
                0,
            )
        self.counters["OutRsts"] += 1
        self._send(IPv4Packet(local_addr, remote_addr, rst))

    def _new_ip_id(self) -> int:
        """A random starting IP ID for a connection (Linux: inet_id = get_random_u16())."""
        return self._rng.getrandbits(16)

    def _register(self, conn: Connection) -> None:
        self._conns[conn._key] = conn
        local = conn.local
        self._bound[local] = self._bound.get(local, 0) + 1

    def _unlink(self, conn: Connection) -> None:
        key = conn._key
        if conn._wire_key is not None and self._wire_conns.get(conn._wire_key) is conn:
            del self._wire_conns[conn._wire_key]
        if self._conns.get(key) is conn:
            del self._conns[key]
            self._bound[conn.local] -= 1
            if self._bound[conn.local] <= 0:
                del self._bound[conn.local]
        lst = conn.listener
        if lst is not None:
            lst._syn_queue.pop(conn, None)

    def _remove_listener(self, lst: Listener) -> None:
        key = (lst.address, lst.port)
        if self._listeners.get(key) is lst:
            del self._listeners[key]
            self._bound[key] -= 1
            if self._bound[key] <= 0:
                del self._bound[key]

    def _accept_room(self, conn: Connection) -> bool:
        lst = conn.listener
        return lst is not None and not lst.closed and len(lst._accept_queue) <= lst.backlog

    def _promote(self, conn: Connection) -> None:
        """The handshake of a passive open completed: SYN queue -> accept queue."""
        lst = conn.listener
        if lst is None:
            return
        lst._syn_queue.pop(conn, None)
        lst._accept_queue.append(conn)

    def _mark_dirty(self, conn: Connection) -> None:
        self._dirty[conn] = None

    def _reschedule(self, conn: Connection) -> None:
        if conn.state is _CLOSED:
            d = None
        else:
            # the earliest of the connection's timers (this runs after every transmit and timer)
            d = conn._t_rtx
            t = conn._t_delack
            if t is not None and (d is None or t < d):
                d = t
            t = conn._t_keepalive
            if t is not None and (d is None or t < d):
                d = t
            t = conn._t_close
            if t is not None and (d is None or t < d):
                d = t
        if d is None:
            conn._deadline = None  # an entry it left in the heap is stale now: skipped where popped
            return
        old = conn._deadline
        if old is None or d != old:  # not `d != conn._deadline`: a float against None is a generic compare
            conn._deadline = d
            self._heap_seq += 1
            heapq.heappush(self._heap, (d, self._heap_seq, conn))
            if len(self._heap) > 4 * len(self._conns) + 64:
                self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        # Tie-breakers stay unique across rebuilds (a repeat would make heapq compare Connections).
        base = self._heap_seq + 1
        heap = [
            (c._deadline, base + i, c) for i, c in enumerate(self._conns.values()) if c._deadline is not None
        ]
        heapq.heapify(heap)
        self._heap = heap
        self._heap_seq = base + len(self._conns)


def _note_toa(conn: Connection, seg: TcpSegment) -> None:
    """toa.ko (getpeername mode): keep the client address of a TOA option (kind 254, RFC-less; LVS puts it
    on the SYN and the segments acking the RS's ISN+1); the last one seen wins. The 4-tuple is unchanged."""
    toa = seg.option(Toa)
    if toa is not None:
        conn.toa_peer = (toa.address, toa.port)


def _summary(src: str, dst: str, seg: TcpSegment) -> str:
    return (
        f"{src}:{seg.src_port} > {dst}:{seg.dst_port} [{format_flags(seg.flags)}] "
        f"seq {seg.seq} ack {seg.ack} len {len(seg.payload)}"
    )
