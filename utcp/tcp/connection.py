"""One TCP connection: the RFC 9293 state machine, reliable transfer, flow and congestion control.

Segment processing follows RFC 9293 3.10.7 ("SEGMENT ARRIVES") step by step, with the Linux 6.x choices
where the RFC leaves one (tcp_rcv_state_process, tcp_validate_incoming, tcp_check_req,
tcp_rcv_synsent_state_process, tcp_timewait_state_process). Every acceptance decision goes through
`self.policy` (utcp.policy).

Internally, sequence numbers are unwrapped into unbounded stream offsets:
  send side:    offset 0 is our SYN (ISS), data byte k is offset k, our FIN follows the last byte;
  receive side: offset 0 is the peer's SYN (IRS), and so on.
`_w(x)` / `_rw(x)` turn offsets into 32-bit wire values; incoming numbers are unwrapped relative to
snd_una / rcv_nxt with `seq_diff`, so the hot path compares plain ints.

Not implemented: urgent data (URG is ignored and the urgent pointer never set, as RFC 9293 3.8.5 lets
new applications do), TCP Fast Open, ECN, MD5/AO, SYN cookies, PMTU discovery.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from math import floor
from typing import TYPE_CHECKING, Final, Literal

from utcp.policy.base import Decision, Policy, Verdict, tsecr_between
from utcp.tcp.clock import TICK_EPSILON
from utcp.tcp.config import TcpConfig
from utcp.tcp.congestion import CongestionControl
from utcp.tcp.errors import (
    ConnectionAborted,
    ConnectionFailed,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    TcpUsageError,
)
from utcp.tcp.events import Closed, Connected, DataReceived, EofReceived, Reset, SegmentDropped, SendSpace
from utcp.tcp.options import (
    MAX_WSCALE,
    TCP_MSS_DEFAULT,
    parse_syn_options,
    sack_options,
    syn_options,
    timestamp_options,
)
from utcp.tcp.recvbuf import EMPTY_READ_BUFFER, EMPTY_REASSEMBLY, ReadBuffer, Reassembly
from utcp.tcp.rtt import RttEstimator
from utcp.tcp.sack import EMPTY_SCOREBOARD, Scoreboard
from utcp.tcp.sendbuf import SendBuffer
from utcp.tcp.seq import SEQ_MASK, seq_diff
from utcp.tcp.state import (
    CLOSE_TRANSITIONS,
    FIN_ACKED_TRANSITIONS,
    FIN_RECEIVED_TRANSITIONS,
    SHUTDOWN_TRANSITIONS,
    SYNCHRONIZED,
    States,
    TcpState,
)
from utcp.wire.fastpath import PlainSegment, SegmentEncoder, aton, encode_bare, syn_option_bytes
from utcp.wire.format import format_flags
from utcp.wire.packet import (
    F_ACK,
    F_FIN,
    F_PSH,
    F_RST,
    F_SYN,
    IPv4Packet,
    Nop,
    Sack,
    TcpFlags,
    TcpOption,
    TcpSegment,
    Timestamps,
)

if TYPE_CHECKING:
    from utcp.tcp.host import Host, Listener

__all__ = ["Connection", "ConnectionStats", "Negotiated"]

# The states as module constants, read several times per segment: a global read costs least (TcpState.X
# goes through EnumType.__getattr__ on Python 3.11, ~10x; States.X is a class-attribute lookup).
S = States
_CLOSED: Final = S.CLOSED
_LISTEN: Final = S.LISTEN
_SYN_SENT: Final = S.SYN_SENT
_SYN_RECEIVED: Final = S.SYN_RECEIVED
_ESTABLISHED: Final = S.ESTABLISHED
_FIN_WAIT_1: Final = S.FIN_WAIT_1
_FIN_WAIT_2: Final = S.FIN_WAIT_2
_CLOSE_WAIT: Final = S.CLOSE_WAIT
_CLOSING: Final = S.CLOSING
_LAST_ACK: Final = S.LAST_ACK
_TIME_WAIT: Final = S.TIME_WAIT
# Sets of them for the membership tests a connection makes every time: a frozenset finds a member by its
# identity hash, where `state in (_A, _B)` builds the tuple on each test and compares every member it
# passes (Enum members have no C equality: ~100 instructions each).
_NO_SEND: Final = frozenset({_CLOSED, _LISTEN, _TIME_WAIT})  # send() refuses, send_space is 0
_DATA_TO_US: Final = frozenset({_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2})  # the peer may send data
_MAY_SEND_DATA: Final = frozenset({_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK})
_ESTABLISHED_ONCE: Final = frozenset({_ESTABLISHED, _CLOSE_WAIT})  # Linux tcp_set_state: EstabResets

SYN_ACK = F_SYN | F_ACK
RST_ACK = F_RST | F_ACK
_FLAGS: tuple[TcpFlags, ...] = tuple(TcpFlags(i) for i in range(256))  # int -> TcpFlags for output

_CA_OPEN = 0  # Linux TCP_CA_Open
_CA_RECOVERY = 1  # fast recovery (RFC 6582 / RFC 6675)
_CA_LOSS = 2  # after an RTO (Linux TCP_CA_Loss)

_DUPTHRESH = 3  # RFC 5681 3.2
_MAX_REORDERING = 300  # Linux sysctl_tcp_max_reordering
_TS_HZ = 1000  # TSval ticks per second (RFC 7323 5.4: 1 ms)
_TS_OPT_LEN = 12  # NOP NOP TS
_MIN_SND_MSS = 48  # Linux TCP_MIN_SND_MSS: a peer MSS below this is raised to it
_MAX_WINDOW = 65535
_SEQ_HALF = 0x80000000  # seq_diff inlined on the fast paths: ((a - b + half) & mask) - half


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the handshake settled (RFC 9293 3.7.1, RFC 7323, RFC 2018)."""

    mss: int  # largest payload we send (peer's MSS, our MTU, minus the timestamp option)
    snd_wscale: int  # shift applied to windows the peer advertises
    rcv_wscale: int  # shift applied to windows we advertise
    sack: bool
    timestamps: bool


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A snapshot of a connection's counters and estimators."""

    segments_sent: int
    segments_received: int
    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    retransmitted_segments: int
    retransmitted_bytes: int
    timeouts: int
    fast_retransmits: int
    srtt: float | None
    rttvar: float
    rto: float
    cwnd: int
    ssthresh: int
    snd_wnd: int
    rcv_wnd: int
    in_flight: int
    sacked_bytes: int


# The plain shapes header prediction takes (utcp.wire.fastpath.plain_segment), and the states it serves.
_FAST_FLAGS = frozenset((F_ACK, F_ACK | F_PSH, F_ACK | F_FIN, F_ACK | F_PSH | F_FIN))
_FAST_STATES = frozenset((_ESTABLISHED, _SYN_RECEIVED, _FIN_WAIT_1, _FIN_WAIT_2, _CLOSING, _LAST_ACK))
# The stock segment checks: a policy that keeps them lets the header-prediction fast paths run.
_BASE_CHECK_PAWS = Policy.check_paws
_BASE_CHECK_ACK = Policy.check_ack
_BASE_CHECK_REQUEST_PAWS = Policy.check_request_paws
_BASE_CHECK_SYNACK_TSECR = Policy.check_synack_tsecr


# The out-of-order queue holds at most recv_buffer / this many pieces: full-sized segments (MSS >= 512)
# never reach it, one-byte segments scattered over a 4 MiB window would (Linux bounds truesize).
_OFO_BYTES_PER_PIECE = 512


def _or_absent(value: int | None) -> int:
    """An option value as the SYN fast path gives it: -1 when the option is absent."""
    return -1 if value is None else value


def _syn_fields(seg: TcpSegment) -> tuple[int, int, int, int, bool, int]:
    """A SYN value's sequence number, window and offered options (`parse_syn_options`), as
    utcp.wire.fastpath.syn_segment gives them from bytes: MSS, window scale, SACK permitted, TSval."""
    opts = parse_syn_options(seg)
    return (
        seg.seq, seg.window, _or_absent(opts.mss), _or_absent(opts.wscale), opts.sack_permitted,
        _or_absent(opts.tsval),
    )  # fmt: skip


def _seg_len(seg: TcpSegment, flags: int) -> int:
    """SEG.LEN: payload plus one for SYN and one for FIN (RFC 9293 3.4)."""
    return len(seg.payload) + (flags & F_FIN) + ((flags & F_SYN) >> 1)


class Connection:
    """A TCP connection owned by a `Host`. Create with `Host.connect` or accept from a `Listener`."""

    # Slots: a ~95-attribute instance dict costs ~3 KB per connection (issue 6: <= 4 KB per idle
    # connection). "__dict__" stays so an attribute missing here still works, only costs memory.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_ack_batch",
        "_ack_now",
        "_ack_pending",
        "_adv_mss",
        "_bytes_acked",
        "_ca_state",
        "_cc",
        "_cork",
        "_data_evt",
        "_deadline",
        "_dsack",
        "_dupacks",
        "_encoder",
        "_eof",
        "_exposed",
        "_fin_abs",
        "_held_ack",
        "_high_rxt",
        "_hold_third_ack",
        "_host",
        "_in_seg",
        "_ip_id",
        "_key",
        "_laddr",
        "_last_oow_ack",
        "_last_rcv",
        "_lport",
        "_max_snd_wnd",
        "_mss",
        "_mtu_mss",
        "_nodelay",
        "_ofo",
        "_ofo_fin",
        "_orphan",
        "_peer_mss",
        "_pending_rst",
        "_persist_backoff",
        "_probes_out",
        "_raddr",
        "_rbuf",
        "_rcv_mss",
        "_rcv_nxt",
        "_rcv_wnd",
        "_rcv_wscale",
        "_rcv_wsize",
        "_rcv_wup",
        "_recover",
        "_reordering",
        "_request",
        "_retrans_hi",
        "_retransmits",
        "_rport",
        "_rtt",
        "_rtt_seq",
        "_rtt_time",
        "_rtx_is_persist",
        "_sack_ok",
        "_sb",
        "_sbuf",
        "_snd_nxt",
        "_snd_sml",
        "_snd_una",
        "_snd_wl1",
        "_snd_wnd",
        "_snd_wscale",
        "_space_evt",
        "_st_bytes_rcvd",
        "_st_bytes_sent",
        "_st_fast_rtx",
        "_st_rtx_bytes",
        "_st_rtx_segs",
        "_st_segs_in",
        "_st_segs_out",
        "_st_timeouts",
        "_syn_retransmits",
        "_syn_tsval",
        "_syn_tsval_last",
        "_t_close",
        "_t_delack",
        "_t_keepalive",
        "_t_rtx",
        "_third_ack_held",
        "_ts_off",
        "_ts_ok",
        "_ts_recent",
        "_ts_recent_stamp",
        "_tx_times",
        "_wire_key",
        "_wr_shutdown",
        "_ws_ok",
        "config",
        "error",
        "irs",
        "iss",
        "listener",
        "local",
        "policy",
        "remote",
        "state",
        "toa_peer",
    )

    def __init__(  # noqa: PLR0917 (Host passes every argument by position: see below)
        self,
        host: Host,
        local: tuple[str, int],
        remote: tuple[str, int],
        config: TcpConfig,
        policy: Policy,
        iss: int,
        mtu_mss: int,
        ip_id: int,
        listener: Listener | None = None,
    ) -> None:
        # Host passes every argument by position: a class called with keywords costs CPython 3.11 a
        # dict of them per connection (slot_tp_init), ~2,000 instructions
        self._host = host
        self.local = local
        self.remote = remote
        self._laddr, self._lport = local
        self._raddr, self._rport = remote
        self.config = config
        self.policy = policy
        self.listener = listener
        self.state = _CLOSED
        self.error: ConnectionFailed | None = None
        # Host(toa="getpeername"): the client address the LB's TOA option carried (toa.ko sk_user_data)
        self.toa_peer: tuple[str, int] | None = None
        self._key = (local[0], local[1], remote[0], remote[1])
        self._ip_id = ip_id
        self._exposed = listener is None  # the runtime knows it (active open, or passive once Connected)
        self._request = False  # SYN-RECEIVED request socket of a listener (Linux TCP_NEW_SYN_RECV)
        self._in_seg: TcpSegment | None = None  # the segment being processed (drop reports)
        self._hold_third_ack = False  # Host.connect(hold_third_ack=True): see release_third_ack()
        self._third_ack_held = False
        self._held_ack: TcpSegment | None = None
        self._encoder: SegmentEncoder | None = None  # made on first use (Host.wire_output)
        self._wire_key: bytes | None = None  # the host's receive fast-path key, once it has one

        # --- send sequence space (offsets from ISS) ---
        self.iss = iss & SEQ_MASK
        self._snd_una = 0
        self._snd_nxt = 0
        self._sbuf = SendBuffer(1)
        self._fin_abs: int | None = None  # offset of our FIN once queued
        self._snd_wnd = 0
        self._snd_wl1 = 0  # receive offset of the segment that last updated the window
        self._max_snd_wnd = 0
        self._bytes_acked = 0
        self._snd_sml = 0  # end of the last small segment sent (Nagle, Minshall variant)

        # --- receive sequence space (offsets from IRS) ---
        self.irs = 0
        self._rcv_nxt = 0
        self._rcv_wup = 0  # rcv_nxt when we last advertised a window (Linux rcv_wup, RFC 7323 Last.ACK.sent)
        self._rcv_wnd = 0  # window advertised then, in bytes
        self._rcv_wsize = -1  # bytes unread when _select_window advertised it (-1: not advertised by it)
        self._rbuf = ReadBuffer()
        self._ofo = EMPTY_REASSEMBLY  # its own on the first out-of-order segment (_process_data)
        self._ofo_fin: int | None = None  # offset of a FIN seen ahead of rcv_nxt
        self._eof = False
        self._dsack: tuple[int, int] | None = None  # receive offsets of a duplicate to report (RFC 2883)

        # --- options ---
        base_mss = config.mss if config.mss is not None else mtu_mss
        # min()/max() spelled as comparisons in the per-connection paths (same values; a builtin call each)
        adv_mss = base_mss if base_mss < 65535 else 65535
        self._adv_mss = adv_mss = adv_mss if adv_mss > 88 else 88  # the MSS we advertise
        self._mtu_mss = mtu_mss
        self._peer_mss = TCP_MSS_DEFAULT
        # payload per segment (set after the handshake)
        self._mss = mtu_mss if mtu_mss < TCP_MSS_DEFAULT else TCP_MSS_DEFAULT
        # estimate of the peer's segment size
        self._rcv_mss = adv_mss if adv_mss < TCP_MSS_DEFAULT else TCP_MSS_DEFAULT
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._ws_ok = False
        self._sack_ok = False
        self._ts_ok = False
        self._ts_recent = 0
        self._ts_recent_stamp: float | None = None
        self._syn_tsval: int | None = None
        self._syn_tsval_last: int | None = None
        self._ts_off = host._ts_clock.offset(local[0], remote[0])

        # --- timers (absolute deadlines) ---
        self._deadline: float | None = None  # min of the below, as the host scheduled it
        self._t_rtx: float | None = None
        self._rtx_is_persist = False
        self._t_delack: float | None = None
        self._t_keepalive: float | None = None
        self._t_close: float | None = None  # TIME-WAIT expiry or orphaned FIN-WAIT-2 timeout

        # --- retransmission and congestion ---
        self._rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self._rtt_seq: int | None = None  # the handshake being timed (SYN offset + 1)
        self._rtt_time = 0.0
        # (end offset, first send time) per segment; made on first send (an empty deque is ~600 bytes)
        self._tx_times: deque[tuple[int, float]] | None = None
        self._retrans_hi = 0  # end of the highest retransmission (Karn's ambiguity below it)
        self._retransmits = 0  # consecutive timeouts without progress
        self._syn_retransmits = 0
        self._probes_out = 0  # unanswered persist or keepalive probes
        self._persist_backoff = 0
        self._cc = CongestionControl(self._mss, config.initial_cwnd)
        self._ca_state = _CA_OPEN
        self._recover = 0
        self._high_rxt = 0
        self._dupacks = 0
        self._sb = EMPTY_SCOREBOARD  # its own on the first SACK block taken (_take_sack)
        self._reordering = _DUPTHRESH  # segments; grows when reordering is seen (Linux tp->reordering)

        # --- acknowledgment state ---
        self._ack_now = False
        self._ack_batch = False  # an ACK is due by the end of this batch (Host.ack_per_batch)
        self._ack_pending = False  # data arrived and awaits a (delayed) ACK
        self._last_oow_ack: float | None = None
        self._last_rcv = 0.0

        # --- user side ---
        self._wr_shutdown = False
        self._orphan = False  # close() was called: the user reads no more (Linux SOCK_DEAD / RCV_SHUTDOWN)
        self._pending_rst = False  # an RST to build at the next transmit (abort, close with unread data)
        self._data_evt = False  # a DataReceived is waiting to be drained
        self._space_evt = False
        self._nodelay = config.nodelay  # TCP_NODELAY, settable per connection (the `nodelay` property)
        self._cork = False  # TCP_CORK (the `cork` property)

        # --- statistics ---
        self._st_segs_out = 0
        self._st_segs_in = 0
        self._st_bytes_sent = 0
        self._st_bytes_rcvd = 0
        self._st_rtx_segs = 0
        self._st_rtx_bytes = 0
        self._st_timeouts = 0
        self._st_fast_rtx = 0

    def __repr__(self) -> str:
        return f"<Connection {self._laddr}:{self._lport} -> {self._raddr}:{self._rport} {self.state.name}>"

    # =====================================================================================================
    # public API
    # =====================================================================================================

    @property
    def readable(self) -> int:
        """Bytes ready to read."""
        return len(self._rbuf)

    @property
    def eof_received(self) -> bool:
        """The peer's FIN arrived (in order)."""
        return self._eof

    @property
    def send_space(self) -> int:
        """Bytes `send` would accept now (config.send_buffer minus unacknowledged and unsent bytes)."""
        if self._wr_shutdown or self.state in _NO_SEND:
            return 0
        una = self._snd_una
        space = self.config.send_buffer - (self._sbuf.end - (una if una > 1 else 1))
        return space if space > 0 else 0

    @property
    def nodelay(self) -> bool:
        """TCP_NODELAY: no Nagle (RFC 9293 3.7.4) for this connection; starts as `config.nodelay`."""
        return self._nodelay

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._nodelay = bool(value)
        if value:
            self._host._mark_dirty(self)  # Linux tcp_push_pending_frames: a held segment goes now

    @property
    def cork(self) -> bool:
        """TCP_CORK: while set, a partial segment waits for more data, a FIN (close or shutdown: the
        FIN rides on it), the cork's removal, or the probe timer: with nothing in flight it fires after
        max(RTO, config.persist_min) and sends what the window allows (Linux tcp_check_probe_timer and
        tcp_write_wakeup, the man page's 200 ms ceiling). Full segments are never held."""
        return self._cork

    @cork.setter
    def cork(self, value: bool) -> None:
        self._cork = bool(value)
        if not value:
            self._host._mark_dirty(self)  # Linux tcp_push_pending_frames on TCP_CORK 0

    @property
    def negotiated(self) -> Negotiated:
        return Negotiated(
            mss=self._mss,
            snd_wscale=self._snd_wscale,
            rcv_wscale=self._rcv_wscale,
            sack=self._sack_ok,
            timestamps=self._ts_ok,
        )

    @property
    def stats(self) -> ConnectionStats:
        return ConnectionStats(
            segments_sent=self._st_segs_out,
            segments_received=self._st_segs_in,
            bytes_sent=self._st_bytes_sent,
            bytes_acked=self._bytes_acked,
            bytes_received=self._st_bytes_rcvd,
            retransmitted_segments=self._st_rtx_segs,
            retransmitted_bytes=self._st_rtx_bytes,
            timeouts=self._st_timeouts,
            fast_retransmits=self._st_fast_rtx,
            srtt=self._rtt.srtt,
            rttvar=self._rtt.rttvar,
            rto=self._rtt.rto,
            cwnd=self._cc.cwnd,
            ssthresh=self._cc.ssthresh,
            snd_wnd=self._snd_wnd,
            rcv_wnd=self.rcv_wnd,
            in_flight=self._snd_nxt - self._snd_una,
            sacked_bytes=self._sb.sacked,
        )

    def read(self, max_bytes: int = 1 << 30) -> bytes:
        """In-order bytes (up to `max_bytes`); b"" when none (check `eof_received`)."""
        if max_bytes <= 0 or not self._rbuf._size:  # len(self._rbuf) without the __len__ call
            return b""
        before = self._receive_window_now()
        small = self.state in _DATA_TO_US and 2 * before <= self.config.recv_buffer
        # A window that could already double before this read (the 16-bit SYN window gives way to the
        # scaled one after the handshake) is not this read's doing: the next segment carries it. Linux
        # never meets that case here, its window grows from rcv_ssthresh (__tcp_select_window).
        grown = self._window_candidate() if small else 0
        data = self._rbuf.read(max_bytes)
        # Linux tcp_cleanup_rbuf(): advertise at once if the read at least doubles a small window.
        if small and not (grown and grown >= 2 * before):
            new = self._window_candidate()
            if new and new >= 2 * before:
                self._ack_now = True
                self._host._mark_dirty(self)
        return data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue bytes; returns how many were accepted (at most `send_space`)."""
        if self.error is not None:
            raise self.error
        if self._wr_shutdown:
            raise TcpUsageError("send after shutdown")
        if self.state in _NO_SEND:
            raise TcpUsageError(f"send in state {self.state.name}")
        n, space = len(data), self.send_space
        n = space if space < n else n
        if n <= 0:
            return 0
        self._sbuf.append(data[:n] if n < len(data) else data)
        self._host._mark_dirty(self)
        return n

    def shutdown(self) -> None:
        """Half-close: a FIN follows the queued data; receiving goes on (RFC 9293 3.10.4, tcp_shutdown)."""
        if self._wr_shutdown:
            return
        if self.state in (_CLOSED, _LISTEN):
            raise TcpUsageError(f"shutdown in state {self.state.name}")
        self._wr_shutdown = True
        if self.state in (_SYN_SENT, _SYN_RECEIVED):
            return  # the FIN is queued until ESTABLISHED (RFC 9293 3.10.4: "queue for processing")
        nxt = SHUTDOWN_TRANSITIONS.get(self.state)
        if nxt is not None:
            self._queue_fin(nxt[0])

    def close(self) -> None:
        """Full close (RFC 9293 3.10.4). With unread data an RST replaces the FIN (Linux tcp_close,
        TCPAbortOnClose). The connection goes on in the background (FIN-WAIT, TIME-WAIT)."""
        if self.state is _CLOSED:
            return
        self._orphan = True
        self._wr_shutdown = True
        if self._rbuf._size and self.state not in (_SYN_SENT, _TIME_WAIT):  # unread data (no __len__ call)
            self._host._count("TCPAbortOnClose")
            self._abort_with_rst(None, "closed with unread data")
            return
        if self.state is _SYN_SENT:
            self._terminate(None, None)  # RFC 9293 3.10.4 SYN-SENT: delete the TCB
            return
        if self.state is _SYN_RECEIVED:
            return  # the FIN follows once ESTABLISHED (RFC 9293 3.10.4 SYN-RECEIVED: queue it)
        nxt, fin = CLOSE_TRANSITIONS[self.state]
        if fin:
            self._queue_fin(nxt)
        elif self.state is _FIN_WAIT_2:
            # an orphaned FIN-WAIT-2 lives tcp_fin_timeout (Linux tcp_close)
            self._t_close = self._host._now + self.config.fin_wait2_timeout
            self._host._reschedule(self)

    def abort(self) -> None:
        """RST now (when synchronized), state CLOSED (RFC 9293 3.10.5 ABORT; Linux tcp_disconnect, which
        resets ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1/2 and SYN-RECEIVED, and CLOSING/LAST-ACK with unsent
        data; as SO_LINGER 0 close() it counts TCPAbortOnData)."""
        if self.state is _CLOSED:
            return
        self._orphan = True
        self._wr_shutdown = True
        state = self.state
        send_rst = state in (_SYN_RECEIVED, _ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _FIN_WAIT_2) or (
            state in (_CLOSING, _LAST_ACK) and self._snd_nxt != self._send_end()
        )
        if send_rst:
            self._host._count("TCPAbortOnData")
        self._abort_with_rst(ConnectionAborted("aborted"), "aborted", rst=send_rst)

    # =====================================================================================================
    # segment crafting (test and scenario scripts): send what the state machine would not
    # =====================================================================================================

    @property
    def third_ack_held(self) -> bool:
        """The SYN-ACK arrived (state ESTABLISHED) but the third ACK, and every segment the connection would
        send after it, wait for `release_third_ack()` (`Host.connect(..., hold_third_ack=True)`)."""
        return self._third_ack_held

    def release_third_ack(self, now: float | None = None, *, send: bool = True) -> None:
        """Let a held connection go: the third ACK leaves exactly as it was built when the SYN-ACK arrived
        (its TSval and TSecr included, as if the network had held it), unless `send=False` (the caller
        crafted its own); then whatever else became due. They leave at the next `packets_to_send`."""
        if not self._third_ack_held:
            raise TcpUsageError("no third ACK is held on this connection")
        now = self._host._now if now is None else now
        self._third_ack_held = False
        held, self._held_ack = self._held_ack, None
        if send and held is not None:
            self._emit(held)
        self._after_established(now)
        self._host._mark_dirty(self)
        self._host._reschedule(self)

    def craft(
        self,
        flags: TcpFlags | int,
        now: float | None = None,
        *,
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        tsval: int | Literal["auto", "none"] = "auto",
        tsecr: int | Literal["auto"] = "auto",
        options: tuple[TcpOption, ...] | None = None,
        payload: bytes = b"",
    ) -> TcpSegment:
        """Send one hand-made segment on this connection's 4-tuple without changing any connection state
        (sequence numbers, windows, timers stay as they are); it leaves at the next `packets_to_send`.

        Defaults are what the connection would put there: `seq` SND.NXT, `ack` RCV.NXT when ACK is set (else
        0), `window` the current receive window (scaled), and NOP NOP TS(`tsval`, `tsecr`) when timestamps
        are in use: `tsval` "auto" (our clock at `now`), "none" (no option) or a number (0, or a stale
        `conn.syn_tsval - k`); `tsecr` "auto" (TS.Recent) or a number. `options` replaces the whole option
        list. Counted like any segment sent (OutSegs, and OutRsts for an RST). Returns the segment."""
        now = self._host._now if now is None else now
        bits = int(flags)
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt if bits & F_ACK else 0
        if window is None:
            if self.state in (_SYN_SENT, _CLOSED) and not self._ws_ok:
                window = min(self.config.recv_buffer, _MAX_WINDOW)
            else:
                window = min(self._window_candidate() >> self._rcv_wscale, _MAX_WINDOW)
        if options is None:
            uses_ts = self._ts_ok or (self.state is _SYN_SENT and self.config.timestamps)
            if tsval == "none" or (tsval == "auto" and not uses_ts):
                options = ()
            else:
                val = self.tsval_at(now) if tsval == "auto" else int(tsval)
                ecr = self._ts_recent if tsecr == "auto" else int(tsecr)
                options = timestamp_options(val & SEQ_MASK, ecr & SEQ_MASK)
        seg = TcpSegment(
            self._lport,
            self._rport,
            seq & SEQ_MASK,
            ack & SEQ_MASK,
            _FLAGS[bits & 0xFF],
            window,
            tuple(options),
            bytes(payload),
        )
        self._emit(seg)
        if bits & F_RST:
            self._host._count("OutRsts")
        return seg

    # =====================================================================================================
    # policy context (utcp.policy.PolicyContext): wire values
    # =====================================================================================================

    @property
    def is_request_socket(self) -> bool:
        return self._request

    @property
    def rcv_nxt(self) -> int:
        return (self.irs + self._rcv_nxt) & SEQ_MASK

    @property
    def rcv_wnd(self) -> int:
        return self._receive_window_now()

    @property
    def snd_una(self) -> int:
        return (self.iss + self._snd_una) & SEQ_MASK

    @property
    def snd_nxt(self) -> int:
        return (self.iss + self._snd_nxt) & SEQ_MASK

    @property
    def snd_wnd(self) -> int:
        return self._snd_wnd

    @property
    def snd_wl1(self) -> int:
        return (self.irs + self._snd_wl1) & SEQ_MASK

    @property
    def snd_wscale(self) -> int:
        return self._snd_wscale

    @property
    def max_snd_wnd(self) -> int:
        return self._max_snd_wnd

    @property
    def bytes_acked(self) -> int:
        return self._bytes_acked

    @property
    def ts_enabled(self) -> bool:
        return self._ts_ok

    @property
    def ts_recent(self) -> int:
        return self._ts_recent

    @property
    def ts_recent_stamp(self) -> float | None:
        return self._ts_recent_stamp

    @property
    def syn_tsval(self) -> int | None:
        return self._syn_tsval

    @property
    def syn_tsval_last(self) -> int | None:
        return self._syn_tsval_last

    @property
    def fin_received(self) -> bool:
        return self._eof

    @property
    def sack_right_edge(self) -> int | None:
        if not self._sack_ok or not self._ofo.blocks:
            return None
        return (self.irs + max(b[1] for b in self._ofo.blocks)) & SEQ_MASK

    @property
    def rto(self) -> float:
        return self._rtt.rto

    @property
    def last_oow_ack_time(self) -> float | None:
        return self._last_oow_ack

    @property
    def syn_retransmits(self) -> int:
        return self._syn_retransmits

    def tsval_at(self, now: float) -> int:
        clock = self._host._ts_clock
        if clock.frozen_at is not None:
            return clock.frozen_at
        # clock.ticks(now), inlined (read for nearly every segment sent)
        return (floor(now * clock.hz * clock.skew + TICK_EPSILON) + self._ts_off) & SEQ_MASK

    # =====================================================================================================
    # opening
    # =====================================================================================================

    def _open_active(self, now: float) -> None:
        """OPEN call, active (RFC 9293 3.10.1): SYN-SENT, send <SEQ=ISS><CTL=SYN>."""
        self._set_state(_SYN_SENT)
        self._host._count("ActiveOpens")
        recv_buffer = self.config.recv_buffer
        self._rcv_wnd = recv_buffer if recv_buffer < _MAX_WINDOW else _MAX_WINDOW
        self._send_syn(now, ack=False)

    def _open_passive(self, seg: TcpSegment, now: float, *, send_synack: bool = True) -> None:
        """LISTEN received an acceptable SYN (RFC 9293 3.10.7.2 third): `_open_request` with its fields.
        `send_synack=False`: the SYN-ACK already went out statelessly (a SYN cookie, Linux
        cookie_v4_check rebuilding the request)."""
        self._open_request(*_syn_fields(seg), now, send_synack)

    def _open_request(  # noqa: PLR0917 (the SYN's fields, as utcp.wire.fastpath.syn_segment gives them)
        self,
        irs: int,
        window: int,
        mss: int,
        wscale: int,
        sack: bool,
        tsval: int,
        now: float,
        send_synack: bool = True,
    ) -> None:
        """SYN-RECEIVED, send SYN-ACK, for a SYN with sequence `irs` and these options (-1: absent).

        This is a request socket (Linux tcp_conn_request): options offered by the peer decide what the
        SYN-ACK carries (tcp_synack_options mirrors the SYN)."""
        self._request = True
        self._set_state(_SYN_RECEIVED)
        self._take_syn(irs, window, mss, wscale, sack, tsval, now)
        recv_buffer = self.config.recv_buffer
        self._rcv_wnd = recv_buffer if recv_buffer < _MAX_WINDOW else _MAX_WINDOW
        self._rcv_wup = self._rcv_nxt
        if send_synack:
            self._send_syn(now, ack=True)
        else:
            self._snd_nxt = 1  # our SYN (the cookie SYN-ACK) is in sequence space already

    def _take_syn(  # noqa: PLR0917 (the SYN's fields, as _syn_fields and syn_segment give them)
        self, irs: int, window: int, mss: int, wscale: int, sack: bool, tsval: int, now: float
    ) -> None:
        """Record the peer's SYN: IRS, RCV.NXT, its window, and negotiate options (RFC 9293 3.7.1, RFC
        7323, RFC 2018). The options as the SYN offered them, -1 for one it did not carry."""
        cfg = self.config
        self.irs = irs
        self._rcv_nxt = 1
        self._rcv_wup = 1
        self._snd_wnd = window  # RFC 7323 2.2: the window in a SYN is never scaled
        self._max_snd_wnd = window
        self._snd_wl1 = 0
        self._peer_mss = mss if mss >= 0 else TCP_MSS_DEFAULT
        # RFC 7323 2.2: scaling only when both sides sent WS
        self._ws_ok = cfg.window_scale is not None and wscale >= 0
        if self._ws_ok:
            # RFC 7323 2.3: a shift above 14 is used as 14 (as parse_syn_options reads it)
            self._snd_wscale = wscale if wscale < MAX_WSCALE else MAX_WSCALE
            rcv_wscale = cfg.window_scale or 0
            rcv_wscale = rcv_wscale if rcv_wscale > 0 else 0
            self._rcv_wscale = rcv_wscale if rcv_wscale < 14 else 14
        else:
            self._snd_wscale = self._rcv_wscale = 0
        self._sack_ok = cfg.sack and sack
        self._ts_ok = cfg.timestamps and tsval >= 0
        if self._ts_ok:
            self._ts_recent = tsval
            self._ts_recent_stamp = now
        self._sync_mss()

    def _sync_mss(self) -> None:
        """Send MSS = min(peer's MSS or 536, our MTU) minus the timestamp option (Linux tcp_sync_mss)."""
        peer_mss, mtu_mss = self._peer_mss, self._mtu_mss
        mss = mtu_mss if mtu_mss < peer_mss else peer_mss
        mss = mss if mss > _MIN_SND_MSS else _MIN_SND_MSS
        if self._ts_ok:
            mss -= _TS_OPT_LEN
        self._mss = mss if mss > 1 else 1
        # the peer's segment size is a guess until data arrives (Linux tcp_initialize_rcv_mss: at most 536)
        rcv_mss = self._adv_mss - (_TS_OPT_LEN if self._ts_ok else 0)
        rcv_mss = rcv_mss if rcv_mss < TCP_MSS_DEFAULT else TCP_MSS_DEFAULT
        self._rcv_mss = rcv_mss if rcv_mss > 1 else 1
        self._cc.set_mss(self._mss, self.config.initial_cwnd)

    def _send_syn(self, now: float, *, ack: bool, retransmit: bool = False) -> None:
        """SYN or SYN-ACK. Options in Linux order; the window is never scaled (RFC 7323 2.2)."""
        cfg = self.config
        tsval = self.tsval_at(now)
        if ack and self._request:
            # tcp_synack_options: only what the peer offered
            ts = (tsval, self._ts_recent) if self._ts_ok else None
            sack = self._sack_ok
            ws = self._rcv_wscale if self._ws_ok else None
        else:
            # tcp_syn_options: our own offer (also the SYN-ACK of a simultaneous open)
            ts = (tsval, self._ts_recent if ack else 0) if cfg.timestamps else None
            sack = cfg.sack
            ws = cfg.window_scale
            if ws is not None:
                ws = ws if ws > 0 else 0
                ws = ws if ws < 14 else 14
        if ts is not None:
            if self._syn_tsval is None:
                self._syn_tsval = tsval  # Linux retrans_stamp / snt_tsval_first: our first SYN's TSval
            self._syn_tsval_last = tsval  # Linux snt_tsval_last: the latest SYN(-ACK)'s TSval
        ack_field = self.rcv_nxt if ack else 0
        window = cfg.recv_buffer if cfg.recv_buffer < _MAX_WINDOW else _MAX_WINDOW
        snd_nxt = self._snd_nxt
        self._snd_nxt = snd_nxt if snd_nxt > 1 else 1
        if not retransmit and self._rtt_seq is None:
            self._rtt_seq, self._rtt_time = 1, now  # time the handshake (Karn: not if retransmitted)
        host = self._host
        if host.wire_output and self._raddr not in host._addr_set:
            # the same segment, encoded at once (Host.wire_output; self-delivery wants values)
            raw = encode_bare(
                aton(self._laddr), aton(self._raddr), 0 if self._request else self._next_ip_id(),
                self._lport, self._rport, self.iss, ack_field, SYN_ACK if ack else F_SYN, window,
                syn_option_bytes(self._adv_mss, sack, ts, ws),
            )  # fmt: skip
            self._st_segs_out += 1
            host._send_wire(raw, retransmit)
        else:
            seg = TcpSegment(
                self._lport,
                self._rport,
                self.iss,
                ack_field,
                _FLAGS[SYN_ACK if ack else F_SYN],
                window,
                syn_options(self._adv_mss, sack, ts, ws),
            )
            self._emit(seg, retransmit=retransmit)
        if retransmit:
            self._host._count("TCPSynRetrans")
        if ack:
            self._on_ack_sent()
        if self._t_rtx is None:
            self._t_rtx = now + self._rtt.rto
            self._rtx_is_persist = False

    # =====================================================================================================
    # segment arrival
    # =====================================================================================================

    def _input(self, seg: TcpSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7) for this connection."""
        flags = int(seg.flags)
        if flags in _FAST_FLAGS and self.state in _FAST_STATES:
            # header prediction for segments given as values (the simulator), as Host._receive_fast
            opts = seg.options
            if not opts:
                tsval = tsecr = -1
            elif len(opts) == 3 and type(opts[2]) is Timestamps and type(opts[0]) is type(opts[1]) is Nop:
                tsval, tsecr = opts[2].tsval, opts[2].tsecr
            else:
                tsval = tsecr = -2  # any other options: the general path
            if tsval != -2 and self._fast_input(
                seg.seq, seg.ack, flags, seg.window, tsval, tsecr, seg.payload, now
            ):
                return
        self._st_segs_in += 1
        self._in_seg = seg
        state = self.state
        if state is _SYN_SENT:
            self._rcv_syn_sent(seg, now)
        elif state is _SYN_RECEIVED and self._request:
            self._rcv_request(seg, now)
        elif state is _TIME_WAIT:
            self._rcv_time_wait(seg, now)
        elif state is not _CLOSED:
            self._rcv_synchronized(seg, now)
        self._in_seg = None
        self._after_input(now)

    def _after_input(self, now: float) -> None:
        """What follows a segment's processing, on the general path and the fast one alike."""
        if self._ack_now or self._pending_rst:
            # An ACK that must not wait (out of order, D-SACK, window probe...): RFC 5681 4.2 wants
            # one duplicate ACK per out-of-order segment, so these are never merged.
            if self.state is not _CLOSED or self._pending_rst:
                self._transmit(now)
        elif self._host.ack_per_batch and self.state is not _CLOSED:
            # Everything else (the every-second-segment ACK, data the peer's ACK lets us send) waits
            # for packets_to_send(): a runtime that feeds a whole batch of reads first sends one
            # cumulative ACK and one burst per batch instead of one per segment.
            self._host._dirty[self] = None  # Host._mark_dirty, inlined (once per segment received)
        elif self.state is not _CLOSED:
            self._transmit(now)
        self._host._reschedule(self)

    def _fast_checks_pass(self, tsval: int) -> bool:
        """For the fast paths: the general path's PAWS and ACK-acceptability checks are sure to accept.
        A TSval exactly when timestamps were negotiated (-1: none on the segment), not older than
        TS.Recent (RFC 7323 5.3 R1 passes trivially), and the stock policy hooks (a user policy may
        decide otherwise: it must see the segment)."""
        if self._ts_ok:
            if tsval < 0 or ((tsval - self._ts_recent + _SEQ_HALF) & SEQ_MASK) < _SEQ_HALF:  # seq_diff < 0
                return False
        elif tsval >= 0:
            return False
        policy = type(self.policy)
        return policy.check_paws is _BASE_CHECK_PAWS and policy.check_ack is _BASE_CHECK_ACK

    def _fast_input(  # noqa: PLR0917 (fields straight from utcp.wire.fastpath.plain_segment)
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        tsval: int,
        tsecr: int,
        payload: bytes | memoryview,
        now: float,
    ) -> bool:
        """Header prediction for a plain segment (ACK with PSH/FIN or not, no options or NOP NOP TS;
        tsval/tsecr -1 without TS): the fast path for its state, or False, nothing changed (then the
        caller takes the general path)."""
        state = self.state
        if state is _ESTABLISHED and not flags & F_FIN:
            if payload:
                return self._fast_data(seq, ack, window, tsval, tsecr, payload, now)
            return self._fast_ack(seq, ack, window, tsval, tsecr, now)
        if state is _SYN_RECEIVED:
            return self._fast_third_ack(seq, ack, flags, window, tsval, tsecr, payload, now)
        return self._fast_close(seq, ack, flags, window, tsval, tsecr, payload, now)

    def _fast_third_ack(  # noqa: PLR0917
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        tsval: int,
        tsecr: int,
        payload: bytes | memoryview,
        now: float,
    ) -> bool:
        """Header prediction for the ACK that completes a passive open: a request socket, a bare in-order
        ACK of our SYN, an acceptable timestamp, room in the accept queue. Does exactly what _input ->
        _rcv_request -> _rcv_synchronized would do for it; returns False, having changed nothing,
        whenever any other rule could apply (then the caller takes the general path)."""
        if (
            self.state is not _SYN_RECEIVED
            or not self._request
            or flags != F_ACK  # data, FIN or PSH on it: the general path
            or payload
            or self._rtx_is_persist
            or self._pending_rst
            or self._snd_nxt != 1  # SND.NXT = ISS + 1: the SYN-ACK is all we sent
            or seq != (self.irs + self._rcv_nxt) & SEQ_MASK  # RCV.NXT: in window (tcp_check_req)
            or ack != (self.iss + 1) & SEQ_MASK  # else the listener answers with RST (RFC 9293 3.10.7.4)
        ):
            return False
        policy = self.policy
        ptype = type(policy)
        if (
            ptype.check_request_paws is not _BASE_CHECK_REQUEST_PAWS
            or ptype.check_paws is not _BASE_CHECK_PAWS
            or ptype.check_ack is not _BASE_CHECK_ACK
        ):
            return False  # a user policy may decide otherwise: let it see the segment
        if self._ts_ok:
            # PAWS against the SYN's TSval (Linux tcp_paws_reject, RFC 7323 5.3 R1) passes trivially for
            # a TSval not older than TS.Recent (policy windows are >= 0)
            if tsval < 0 or ((tsval - self._ts_recent + _SEQ_HALF) & SEQ_MASK) < _SEQ_HALF:  # seq_diff < 0
                return False
            first, last = self._syn_tsval, self._syn_tsval_last
            if (
                policy.request_tsecr_check
                and tsecr != 0
                and first is not None
                and last is not None
                and not tsecr_between(tsecr, first, last)
            ):
                return False  # Linux tcp_check_req: TSecr is none of our SYN-ACK TSvals
        elif tsval >= 0:
            return False
        host = self._host
        if not host._accept_room(self):
            return False  # Linux tcp_v4_syn_recv_sock: a full accept queue drops the ACK
        self._st_segs_in += 1
        if self._ts_ok:
            self._ts_recent = tsval  # tcp_check_req: TS.Recent from the ACK
            self._ts_recent_stamp = now
        # the child socket (tcp_create_openreq_child)
        host._count("PassiveOpens")
        self._request = False
        self._ip_id = host._new_ip_id()
        self._last_oow_ack = None
        self._last_rcv = now
        self._probes_out = 0
        # RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: SND.UNA < SEG.ACK =< SND.NXT -> ESTABLISHED
        self._snd_una = 1
        self._bytes_acked = 0
        self._snd_wnd = window << self._snd_wscale
        snd_wnd, max_snd_wnd = self._snd_wnd, self._max_snd_wnd
        self._max_snd_wnd = snd_wnd if snd_wnd > max_snd_wnd else max_snd_wnd
        self._snd_wl1 = self._rcv_nxt
        self._syn_acked(tsecr if self._ts_ok else 0, now)
        self._set_state(_ESTABLISHED)
        self._retransmits = 0
        self._t_rtx = None
        self._exposed = True
        if self.listener is not None:
            host._promote(self)
        host._emit(Connected(self, self.listener))
        self._after_established(now)
        if self._snd_nxt > self._snd_una:
            self._t_rtx = now + self._rtt.rto
        # _process_ack has nothing left to do: SEG.ACK = SND.UNA with nothing in flight (no duplicate
        # ACK, no loss), and the window update could only write the values just set; TS.Recent too
        self._after_input(now)
        return True

    def _fast_close(  # noqa: PLR0917
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        tsval: int,
        tsecr: int,
        payload: bytes | memoryview,
        now: float,
    ) -> bool:
        """Header prediction for the segments that close a connection, in order: the peer's FIN
        (ESTABLISHED, with or without data; FIN-WAIT-1/2 without) and the ACK of our FIN (FIN-WAIT-1,
        CLOSING, LAST-ACK), acking new data as `_fast_ack` takes it or nothing (then nothing in flight
        and the same window). Does exactly what _input -> _rcv_synchronized would do for it
        (_process_ack's branches through _take_ack, the FIN-acked transitions, _process_data through
        _rcv_fin); returns False, having changed nothing, whenever any other rule could apply."""
        state = self.state
        fin = flags & F_FIN
        if state is _ESTABLISHED:
            if not fin:
                return False  # _fast_data / _fast_ack
        elif state is _FIN_WAIT_1 or state is _FIN_WAIT_2:
            if payload:
                return False  # RFC 9293 3.10.7.4 seventh: data after close() may reset (TCPAbortOnData)
        elif state is _CLOSING or state is _LAST_ACK:
            if payload or fin:
                return False  # text or FIN after the peer's FIN (retransmissions): the general path
        else:
            return False
        # Linux tcp_rcv_established's prediction: in order, no recovery, nothing held out of order or
        # SACKed, no probe, held ACK or pending RST (each brings rules of its own)
        if (
            self._ca_state != _CA_OPEN
            or self._ofo.size
            or self._ofo_fin is not None
            or self._third_ack_held
            or self._rtx_is_persist
            or self._pending_rst
            or self._sb.sacked  # bytes SACKed (Scoreboard.__bool__ without the call)
            or seq != (self.irs + self._rcv_nxt) & SEQ_MASK  # RCV.NXT
        ):
            return False
        snd_una = self._snd_una
        acked = ((ack - self.iss - snd_una + _SEQ_HALF) & SEQ_MASK) - _SEQ_HALF  # seq_diff(SEG.ACK, SND.UNA)
        if acked == 0:
            # RFC 9293 3.10.7.4: only a FIN acking nothing, nothing in flight (no duplicate-ACK or loss
            # rules), the same window (only SND.WL1 can move)
            if not fin or self._snd_nxt != snd_una or (window << self._snd_wscale) != self._snd_wnd:
                return False
        elif acked < 0 or snd_una + acked > self._snd_nxt:
            return False  # old or unsent: policy.check_ack decides
        if not self._fast_checks_pass(tsval):
            return False
        if not self._ts_ok:
            tsecr = 0  # no timestamps: no TSecr RTT samples
        seq_abs = self._rcv_nxt
        length = len(payload)
        end = seq_abs + length
        if end > self._rcv_wup + self._rcv_wnd:
            return False  # not entirely inside the window we advertised (a FIN there: tcp_data_queue)
        self._st_segs_in += 1
        self._last_rcv = now
        self._probes_out = 0
        if acked:
            self._take_ack(snd_una, acked, window, tsecr, now)
            fin_abs = self._fin_abs
            if fin_abs is not None and snd_una + acked > fin_abs:
                # our FIN is acknowledged (RFC 9293 3.10.7.4 fifth, FIN-WAIT-1 / CLOSING / LAST-ACK)
                nxt = FIN_ACKED_TRANSITIONS.get(self.state)
                if nxt is _CLOSED:
                    self._terminate(None, None)  # LAST-ACK: delete the TCB
                    self._after_input(now)
                    return True
                if nxt is _FIN_WAIT_2:
                    self._set_state(_FIN_WAIT_2)
                    self._t_rtx = None
                    if self._orphan:
                        # Linux: an orphaned FIN-WAIT-2 lives tcp_fin_timeout, then vanishes silently
                        self._t_close = now + self.config.fin_wait2_timeout
                elif nxt is _TIME_WAIT:
                    self._enter_time_wait(now)
        else:
            # RFC 9293 3.10.7.4 window update: only SND.WL1 moves, the window itself is unchanged
            wl1 = self._snd_wl1
            self._snd_wl1 = seq_abs if seq_abs > wl1 else wl1
        if tsval >= 0 and seq_abs <= self._rcv_wup:
            self._ts_recent = tsval  # RFC 7323 4.3
            self._ts_recent_stamp = now
        if fin:
            # RFC 9293 3.10.7.4 seventh and eighth, in order (_process_data)
            if length:
                self._rbuf.append(payload)
                self._rcv_nxt = end
                self._st_bytes_rcvd += length
                if length > self._rcv_mss:
                    adv_mss = self._adv_mss
                    self._rcv_mss = adv_mss if adv_mss < length else length
                self._data_arrived()
                self._schedule_ack(now)
            self._rcv_fin(now)
        self._after_input(now)
        return True

    def _fast_data(  # noqa: PLR0917 (fields straight from utcp.wire.fastpath.plain_segment)
        self,
        seq: int,
        ack: int,
        window: int,
        tsval: int,
        tsecr: int,
        payload: bytes | memoryview,
        now: float,
    ) -> bool:
        """Header prediction (Linux tcp_rcv_established fast path): the next in-order data segment of a
        quiet ESTABLISHED connection with an acceptable timestamp, acking nothing new (nothing in flight,
        window unchanged) or new data as `_fast_ack` takes it (the request/response case: the answer
        acks the request). Does exactly what _input would do for it; returns False, having changed
        nothing, whenever any other rule could apply (then the caller takes the general path)."""
        if (
            self.state is not _ESTABLISHED
            or self._ca_state != _CA_OPEN
            or self._ofo.size  # bytes held out of order (Reassembly.__bool__ without the call)
            or self._ofo_fin is not None
            or self._third_ack_held
            or self._rtx_is_persist
            or self._pending_rst
            or seq != (self.irs + self._rcv_nxt) & SEQ_MASK  # RCV.NXT
        ):
            return False
        snd_una = self._snd_una
        acked = ((ack - self.iss - snd_una + _SEQ_HALF) & SEQ_MASK) - _SEQ_HALF  # seq_diff(SEG.ACK, SND.UNA)
        if acked == 0:
            # RFC 9293 3.10.7.4: nothing acked, nothing in flight (no duplicate-ACK or loss rules), and
            # the same window: only SND.WL1 can move
            if self._snd_nxt != snd_una or (window << self._snd_wscale) != self._snd_wnd:
                return False
        elif acked < 0 or snd_una + acked > self._snd_nxt or self._sb.sacked or self._fin_abs is not None:
            return False  # old or unsent (policy.check_ack decides), SACKed data, or our FIN: general path
        if not self._fast_checks_pass(tsval):
            return False
        if not self._ts_ok:
            tsecr = 0  # no timestamps: no TSecr RTT samples
        seq_abs = self._rcv_nxt
        length = len(payload)
        end = seq_abs + length
        if end > self._rcv_wup + self._rcv_wnd:
            return False  # not entirely inside the window we advertised
        self._st_segs_in += 1
        self._last_rcv = now
        self._probes_out = 0
        if acked:
            self._take_ack(snd_una, acked, window, tsecr, now)
        else:
            # RFC 9293 3.10.7.4 window update: only SND.WL1 moves, the window itself is unchanged
            wl1 = self._snd_wl1
            self._snd_wl1 = seq_abs if seq_abs > wl1 else wl1
        if tsval >= 0 and seq_abs <= self._rcv_wup:
            self._ts_recent = tsval  # RFC 7323 4.3
            self._ts_recent_stamp = now
        self._rbuf.append(payload)
        self._rcv_nxt = end
        self._st_bytes_rcvd += length
        if length > self._rcv_mss:
            adv_mss = self._adv_mss
            self._rcv_mss = adv_mss if adv_mss < length else length
        if not self._data_evt:  # else a DataReceived is already waiting: _data_arrived does nothing
            self._data_arrived()
        if not self._ack_batch:  # else the batch's ACK is already due and stays due (RCV.NXT only grew)
            self._schedule_ack(now)
        self._after_input(now)
        return True

    def _fast_data_run(self, raws: list[bytes], shapes: list[PlainSegment], now: float) -> int:
        """`_fast_data` for consecutive segments of this connection (Host.receive_batch: `raws` and their
        plain_segment `shapes`, each with data), as long as each is the next in order, acks nothing new
        with nothing in flight, keeps the window, passes PAWS and fits the window we advertised: what a
        bulk receiver gets. Returns how many it took (0: none; the caller gives the rest to
        `_fast_input` one by one). The state afterwards is what that many `_fast_data` calls leave,
        with ACKs per batch (Host.ack_per_batch), which is what lets the segments' `_after_input` be one:
        none of them can send anything before the batch ends."""
        if (
            self.state is not _ESTABLISHED
            or not self._host.ack_per_batch
            or self._ack_now  # _after_input would send after the first segment
            or self._ca_state != _CA_OPEN
            or self._ofo.size
            or self._ofo_fin is not None
            or self._third_ack_held
            or self._rtx_is_persist
            or self._pending_rst
            or self._snd_nxt != self._snd_una  # in flight: a segment could ack it (then _take_ack)
        ):
            return 0
        # what each segment must carry to take _fast_data's nothing-acked branch
        una_seq = (self.iss + self._snd_una) & SEQ_MASK  # SEG.ACK == SND.UNA
        window_now = self._snd_wnd
        wscale = self._snd_wscale
        irs = self.irs
        rcv_nxt = first = self._rcv_nxt
        rcv_wup = self._rcv_wup
        right = rcv_wup + self._rcv_wnd  # no ACK goes out during the run: the advertised edge stays
        append = self._rbuf.append
        taken = last = 0
        for raw, shape in zip(raws, shapes, strict=True):
            seq, ack, window, tsval, start = shape[4], shape[5], shape[6], shape[7], shape[9]
            # RCV.NXT (the next in order), SND.UNA (RFC 9293 3.10.7.4 fifth: acks nothing new), the same
            # window (3.10.7.4's window update then only moves SND.WL1)
            if seq != (irs + rcv_nxt) & SEQ_MASK or ack != una_seq or (window << wscale) != window_now:
                break
            if not self._fast_checks_pass(tsval):
                break  # PAWS (RFC 7323 5.3 R1), or a TSval without timestamps, or a user policy
            length = len(raw) - start
            end = rcv_nxt + length
            if end > right:
                break  # not entirely inside the window we advertised (RFC 9293 3.10.7.4 first: trim it)
            taken += 1
            last = rcv_nxt  # this segment's sequence number (an offset)
            if tsval >= 0 and rcv_nxt <= rcv_wup:
                self._ts_recent = tsval  # RFC 7323 4.3
                self._ts_recent_stamp = now
            append(memoryview(raw)[start:])
            self._rcv_nxt = rcv_nxt = end
            if length > self._rcv_mss:
                adv_mss = self._adv_mss
                self._rcv_mss = adv_mss if adv_mss < length else length
            if not self._data_evt:
                self._data_arrived()
            if not self._ack_batch:  # then the batch's ACK is due, and stays due
                self._schedule_ack(now)
        if taken:
            # RFC 9293 3.10.7.4 window update: only SND.WL1 moves (to the last segment's, the highest)
            wl1 = self._snd_wl1
            self._snd_wl1 = last if last > wl1 else wl1
            self._st_segs_in += taken
            self._st_bytes_rcvd += rcv_nxt - first
            self._last_rcv = now
            self._probes_out = 0
            self._after_input(now)
        return taken

    def _fast_ack(  # noqa: PLR0917 (fields straight from utcp.wire.fastpath.plain_segment)
        self, seq: int, ack: int, window: int, tsval: int, tsecr: int, now: float
    ) -> bool:
        """Header prediction for a pure ACK (Linux tcp_rcv_established fast path: no data, in sequence,
        no SACK, acceptable timestamp) that acknowledges new data while nothing was SACKed or lost, the
        ACK stream a bulk sender lives on. Unlike Linux it also takes a new window: an ACK that advances
        SND.UNA always updates the window (RFC 9293 3.10.7.4), nothing else depends on it here. Does
        exactly what _input would do for it (_rcv_synchronized then _process_ack, the branches that can
        apply); returns False, having changed nothing, whenever any other rule could apply (then the
        caller takes the general path)."""
        if (
            self.state is not _ESTABLISHED
            or self._ca_state != _CA_OPEN
            or self._sb.sacked  # bytes SACKed (Scoreboard.__bool__ without the call)
            or self._fin_abs is not None
            or self._third_ack_held
            or self._rtx_is_persist
            or self._pending_rst
            or seq != self.rcv_nxt
        ):
            return False
        snd_una = self._snd_una
        acked = ((ack - self.iss - snd_una + _SEQ_HALF) & SEQ_MASK) - _SEQ_HALF  # seq_diff(SEG.ACK, SND.UNA)
        if acked <= 0 or snd_una + acked > self._snd_nxt:
            return False  # duplicate (RFC 5681 counting), old, or unsent: policy.check_ack decides
        if not self._fast_checks_pass(tsval):
            return False
        if not self._ts_ok:
            tsecr = 0  # no timestamps: no TSecr RTT samples
        self._st_segs_in += 1
        self._last_rcv = now
        self._probes_out = 0  # Linux tcp_ack: any acceptable ACK clears icsk_probes_out
        self._take_ack(snd_una, acked, window, tsecr, now)
        if tsval >= 0 and self._rcv_nxt <= self._rcv_wup:
            self._ts_recent = tsval  # RFC 7323 4.3
            self._ts_recent_stamp = now
        self._after_input(now)
        return True

    def _take_ack(self, snd_una: int, acked: int, window: int, tsecr: int, now: float) -> None:
        """_process_ack for an in-sequence ACK of `acked` new bytes that the fast paths vetted (CA open,
        nothing SACKed, no FIN of ours, not persisting): the branches that can apply, in its order."""
        # RFC 9293 3.10.7.4 fifth: SND.UNA < SEG.ACK =< SND.NXT
        ack_abs = snd_una + acked
        outstanding_before = self._snd_nxt - snd_una
        self._rtt_on_ack(snd_una, ack_abs, tsecr, now)
        freed = self._sbuf.release(ack_abs)
        self._snd_una = ack_abs
        self._bytes_acked += acked
        snd_sml = self._snd_sml
        self._snd_sml = ack_abs if ack_abs > snd_sml else snd_sml
        self._retransmits = 0
        self._dupacks = 0
        # grow only a window the sender fills (Linux tcp_is_cwnd_limited, RFC 7661 spirit)
        cc = self._cc
        cwnd = cc.cwnd
        # cc.in_slow_start, inlined
        if outstanding_before >= (cwnd // 2 if cwnd < cc.ssthresh else cwnd - self._mss):
            cc.on_ack(acked)
        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it
        if ack_abs >= self._snd_nxt:
            self._t_rtx = None
        else:
            self._t_rtx = now + self._rtt.rto
        if freed and not self._space_evt and self._exposed and not self._wr_shutdown:
            self._space_evt = True
            self._host._emit(SendSpace(self))
        # window update (SND.UNA advanced; Linux tcp_may_update_window); not persisting, so no probe to
        # stop. No loss detection: with nothing SACKed and no duplicate ACKs counted, IsLost and the
        # duplicate-ACK threshold cannot hold.
        nwin = window << self._snd_wscale
        self._snd_wl1 = self._rcv_nxt
        self._snd_wnd = nwin
        max_snd_wnd = self._max_snd_wnd
        self._max_snd_wnd = nwin if nwin > max_snd_wnd else max_snd_wnd

    def _drop(self, reason: str, counter: str | None = None) -> None:
        """Report a dropped (or challenged) segment (counters are bumped by the caller)."""
        self._host._emit(SegmentDropped(reason, counter, self._summary()))

    def _reject(self, d: Decision) -> None:
        """A policy decision that discards the segment: count it and report it."""
        self._count_decision(d)
        self._drop(d.reason, d.counter)

    def _summary(self) -> str:
        seg = self._in_seg
        if seg is None:
            return repr(self)
        return (
            f"{self._raddr}:{self._rport} > {self._laddr}:{self._lport} [{format_flags(seg.flags)}] "
            f"seq {seg.seq} ack {seg.ack} len {len(seg.payload)} ({self.state.name})"
        )

    def _count_decision(self, d: Decision) -> None:
        if d.counter is not None:
            self._host._count(d.counter)
        for c in d.extra_counters:
            self._host._count(c)

    # --- SYN-SENT (RFC 9293 3.10.7.3; Linux tcp_rcv_synsent_state_process) --------------------------------

    def _rcv_syn_sent(self, seg: TcpSegment, now: float) -> None:
        flags = int(seg.flags)
        if flags & F_ACK:
            # first, check the ACK bit: SEG.ACK =< ISS or SEG.ACK > SND.NXT is unacceptable
            if seg.ack != self.snd_nxt:
                if flags & F_RST:
                    self._drop("SYN-SENT: RST with unacceptable ACK")
                    return
                self._drop("SYN-SENT: unacceptable ACK")
                self._host._send_reset(self._laddr, self._raddr, seg)  # <SEQ=SEG.ACK><CTL=RST>
                return
            # Linux: a SYN-ACK (or RST-ACK) echoing a TSval we never sent is rejected (PAWSActive); a
            # SYN-ACK is answered with RST
            d = self.policy.check_synack_tsecr(self, seg, now)
            if d.verdict is not Verdict.ACCEPT:
                self._reject(d)
                if d.verdict is Verdict.RESET:
                    self._host._send_reset(self._laddr, self._raddr, seg)
                return
        if flags & F_RST:
            # second, check the RST bit: with an acceptable ACK the connection is refused, else drop
            if flags & F_ACK:
                self._fail(ConnectionRefused("connection refused"), "connection refused")
            else:
                self._drop("SYN-SENT: RST without ACK")
            return
        # third, security/precedence: not implemented (RFC 9293 3.10.7.3 allows ignoring it)
        if not flags & F_SYN:
            # fifth: neither SYN nor RST
            self._drop("SYN-SENT: segment without SYN or RST")
            return
        # fourth, check the SYN bit
        self._take_syn(*_syn_fields(seg), now)
        if flags & F_ACK:
            # Data or FIN on a SYN-ACK is dropped, as Linux does without TFO.
            ts = seg.option(Timestamps) if self._ts_ok else None
            self._synack_taken(ts.tsecr if ts is not None else 0, now)
            return
        # simultaneous open (MUST-10): SYN-RECEIVED, send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
        # Linux tcp_send_synack(): same ISN as our SYN, our full option offer, TSecr = the peer's TSval.
        # Connecting to oneself lands here too: the SYN we receive is our own.
        self._set_state(_SYN_RECEIVED)
        recv_buffer = self.config.recv_buffer
        self._rcv_wnd = recv_buffer if recv_buffer < _MAX_WINDOW else _MAX_WINDOW
        self._send_syn(now, ack=True, retransmit=False)

    def _synack_taken(self, tsecr: int, now: float) -> None:
        """SYN-SENT, fourth, after an acceptable SYN-ACK's SYN was recorded: our SYN is acknowledged,
        ESTABLISHED, send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. `tsecr`: its TSecr (0 without timestamps)."""
        self._snd_una = 1
        self._snd_wl1 = 0
        self._syn_acked(tsecr, now)
        self._set_state(_ESTABLISHED)
        self._t_rtx = None
        self._retransmits = 0
        self._host._emit(Connected(self))
        if self._hold_third_ack:
            # a crafting client holds the third ACK, built now, and everything after it, until
            # release_third_ack(): as if a reordering box held the ACK (SCENARIOS.md B)
            self._held_ack = self._build_ack(now)
            self._third_ack_held = True
            return
        self._ack_now = True
        self._after_established(now)

    def _fast_synack(  # noqa: PLR0917 (fields straight from utcp.wire.fastpath.syn_segment)
        self,
        seq: int,
        ack: int,
        window: int,
        mss: int,
        wscale: int,
        sack: bool,
        tsval: int,
        tsecr: int,
        now: float,
    ) -> bool:
        """Header prediction for the SYN-ACK that answers our SYN (a bare SYN-ACK, utcp.wire.fastpath
        .syn_segment's shape): in SYN-SENT, acking our SYN, a TSecr the stock PAWSActive check accepts.
        Does exactly what _input -> _rcv_syn_sent would do for it; returns False, having changed
        nothing, whenever any other rule could apply (then the caller takes the general path)."""
        if self.state is not _SYN_SENT or ack != (self.iss + self._snd_nxt) & SEQ_MASK:
            return False  # RFC 9293 3.10.7.3 first: an unacceptable ACK is answered with RST
        policy = self.policy
        if type(policy).check_synack_tsecr is not _BASE_CHECK_SYNACK_TSECR:
            return False  # a user policy may decide otherwise: let it see the segment
        first = self._syn_tsval
        if (
            policy.synack_tsecr_check
            and tsval >= 0
            and tsecr != 0
            and first is not None
            and not tsecr_between(tsecr, first, self.tsval_at(now))
        ):
            return False  # PAWSActive (Linux tcp_rcv_synsent_state_process): Policy.check_synack_tsecr's test
        self._st_segs_in += 1
        # RFC 9293 3.10.7.3 fourth (_rcv_syn_sent): the SYN, then the ACK of ours
        self._take_syn(seq, window, mss, wscale, sack, tsval, now)
        self._synack_taken(tsecr if self._ts_ok else 0, now)
        self._after_input(now)
        return True

    def _syn_acked(self, tsecr: int, now: float) -> None:
        """Our SYN was acknowledged: take an RTT sample (timestamps, or Karn's rule without them).
        `tsecr`: the acknowledging segment's TSecr, 0 without timestamps."""
        if tsecr:
            self._rtt_sample_ts(tsecr, now)
        elif self._rtt_seq is not None and self._syn_retransmits == 0:
            self._rtt.sample(now - self._rtt_time)
        self._rtt_seq = None

    def _after_established(self, now: float) -> None:
        """Entering ESTABLISHED: a shutdown() issued before is carried out now; keepalive starts."""
        if self._wr_shutdown and self._fin_abs is None:
            self._queue_fin(_FIN_WAIT_1)
        self._arm_keepalive(now)

    # --- request socket (Linux tcp_check_req) --------------------------------------------------------------

    def _rcv_request(self, seg: TcpSegment, now: float) -> None:
        """SYN-RECEIVED of a listener: Linux tcp_check_req() order, which is RFC 9293 3.10.7.4 for
        SYN-RECEIVED with PAWS first and the listener answering bad ACKs."""
        flags = int(seg.flags)
        host = self._host
        # PAWS against the SYN's TSval (tcp_paws_reject); the verdict is applied after the retransmitted
        # SYN and bad-ACK checks, as Linux does.
        paws = self.policy.check_request_paws(self, seg, now)
        paws_reject = paws.verdict is not Verdict.ACCEPT
        # pure retransmitted SYN: resend the SYN-ACK (rate-limited, TCPACKSkippedSynRecv)
        if seg.seq == self.irs and (flags & (F_SYN | F_ACK | F_RST)) == F_SYN and not paws_reject:
            if self._oow_allowed(seg, now, "TCPACKSkippedSynRecv"):
                self._send_syn(now, ack=True, retransmit=True)
                self._t_rtx = now + self._rtt.rto
            return
        # an ACK that is not ISS+1: the listener answers with RST (RFC 9293 3.10.7.4 SYN-RECEIVED fifth)
        if flags & F_ACK and seg.ack != ((self.iss + 1) & SEQ_MASK):
            self._drop("SYN-RECEIVED: unacceptable ACK")
            host._send_reset(self._laddr, self._raddr, seg)
            return
        # first, check sequence number (tcp_in_window against rcv_nxt .. rcv_nxt + SYN-ACK window)
        seq_abs = self._rcv_nxt + seq_diff(seg.seq, self.rcv_nxt)
        end_abs = seq_abs + _seg_len(seg, flags)
        wnd = self._rcv_wnd
        in_window = (
            seq_abs == self._rcv_nxt
            or (end_abs > self._rcv_nxt and seq_abs < self._rcv_nxt + wnd)
            or (seq_abs == self._rcv_nxt + wnd and seq_abs == end_abs)
        )
        if paws_reject or not in_window:
            if paws_reject:
                self._reject(paws)
            else:
                self._drop("SYN-RECEIVED: out of window (tcp_check_req)")
            if not flags & F_RST and self._oow_allowed(seg, now, "TCPACKSkippedSynRecv"):
                self._send_ack(now)
            return
        ts = seg.option(Timestamps) if self._ts_ok else None
        if ts is not None and seq_abs <= self._rcv_nxt:
            self._ts_recent = ts.tsval
            self._ts_recent_stamp = now
        if seq_abs == 0:
            flags &= ~F_SYN  # truncate the SYN: it lies left of the window
        # second, check the RST bit
        if flags & F_RST:
            d = self.policy.check_rst(self, seg, now)
            if d.verdict is Verdict.CHALLENGE_ACK:
                self._reject(d)
                self._challenge_ack(now)
                return
            if d.verdict is not Verdict.RESET:
                self._reject(d)
                return
            self._count_decision(d)
            host._count("AttemptFails")
            host._count("EmbryonicRsts")
            self._drop_request("embryonic reset")
            return
        # fourth, a SYN in window: reset the embryonic connection (tcp_check_req embryonic_reset)
        if flags & F_SYN:
            host._count("AttemptFails")
            host._count("EmbryonicRsts")
            host._send_reset(self._laddr, self._raddr, seg)
            self._drop_request("SYN in window on a request socket")
            return
        if not flags & F_ACK:
            self._drop("SYN-RECEIVED: segment without ACK")
            return
        # the ACK completes the handshake: create the child (tcp_v4_syn_recv_sock); a full accept queue
        # drops the ACK (ListenOverflows, ListenDrops) and the SYN-ACK timer goes on (tcp_abort_on_overflow=0)
        if not host._accept_room(self):
            host._count("ListenOverflows")
            host._count("ListenDrops")
            self._drop("accept queue full", "ListenOverflows")
            return
        host._count("PassiveOpens")
        self._request = False
        self._ip_id = host._new_ip_id()
        self._last_oow_ack = None  # the child's own rate-limit clock (tcp_create_openreq_child)
        self._rcv_synchronized(seg, now)

    def _drop_request(self, reason: str) -> None:
        self._drop(reason)
        self._terminate(None, None)

    # --- synchronized states (Linux tcp_rcv_state_process / tcp_validate_incoming) ----------------------

    def _rcv_synchronized(self, seg: TcpSegment, now: float) -> None:
        flags = int(seg.flags)
        policy = self.policy
        ts = seg.option(Timestamps) if self._ts_ok else None

        # RFC 7323 5.3 R1 (before the sequence check): PAWS
        if ts is not None:
            d = policy.check_paws(self, seg, now)
            if d.verdict is not Verdict.ACCEPT:
                self._reject(d)
                if d.verdict is Verdict.DUPACK:
                    if not flags & F_RST and self._oow_allowed(seg, now, "TCPACKSkippedPAWS"):
                        self._send_ack(now)
                elif d.verdict is Verdict.CHALLENGE_ACK:
                    if self.state is _ESTABLISHED:
                        self._host._count("InErrs")  # tcp_validate_incoming(syn_inerr)
                    self._challenge_ack(now)
                return

        rcv_nxt = self._rcv_nxt
        seq_abs = rcv_nxt + seq_diff(seg.seq, self.rcv_nxt)
        seg_len = _seg_len(seg, flags)
        end_abs = seq_abs + seg_len

        # first, check sequence number (Linux tcp_sequence: end >= rcv_wup and seq <= rcv_nxt + window)
        if end_abs < self._rcv_wup or seq_abs > rcv_nxt + self._receive_window_now():
            if flags & F_RST:
                # RFC 5961 3.2 / tcp_reset_check: the policy still may accept rcv_nxt - 1 after a FIN
                d = policy.check_rst(self, seg, now)
                if d.verdict is Verdict.RESET:
                    self._count_decision(d)
                    self._reset_by_peer(now)
                    return
                self._reject(Decision(Verdict.DROP, "RST outside the receive window", d.counter))
                return
            if flags & F_SYN:
                self._syn_in_synchronized(seg, now)
                return
            self._drop("segment outside the receive window")
            if ts is not None and seq_abs <= self._rcv_wup and seq_diff(ts.tsval, self._ts_recent) >= 0:
                # RFC 7323 5.3 R3 applies before the window check: the ACK answering a duplicate then
                # echoes its TSval, so the sender's RTT sample is not the age of the last in-order segment
                # (Linux leaves TS.Recent alone here)
                self._ts_recent = ts.tsval
                self._ts_recent_stamp = now
            if self._oow_allowed(seg, now, "TCPACKSkippedSeq"):
                self._send_ack(now)
            return

        # second, check the RST bit (RFC 5961 3.2)
        if flags & F_RST:
            d = policy.check_rst(self, seg, now)
            if d.verdict is Verdict.RESET:
                self._count_decision(d)
                self._reset_by_peer(now)
                return
            self._reject(d)
            if d.verdict is Verdict.CHALLENGE_ACK:
                self._challenge_ack(now)
            elif d.verdict is Verdict.DUPACK and self._oow_allowed(seg, now, "TCPACKSkippedSeq"):
                self._send_ack(now)
            return

        # third, security: not implemented. fourth, check the SYN bit (RFC 5961 4.2)
        if flags & F_SYN:
            d = policy.check_syn_synchronized(self, seg, now)
            if d.verdict is not Verdict.ACCEPT:
                self._syn_in_synchronized(seg, now, d)
                return

        # fifth, check the ACK field
        if not flags & F_ACK:
            self._drop("segment without ACK")
            return
        d = policy.check_ack(self, seg, now)
        if d.verdict is not Verdict.ACCEPT:
            self._reject(d)
            if d.verdict is Verdict.RESET:
                self._host._send_reset(self._laddr, self._raddr, seg)
            elif d.verdict is Verdict.CHALLENGE_ACK:
                self._challenge_ack(now)
            elif d.verdict is Verdict.DUPACK and self._oow_allowed(seg, now, "TCPACKSkippedSeq"):
                self._send_ack(now)
            return

        self._last_rcv = now
        self._probes_out = 0  # Linux tcp_ack: any acceptable ACK clears icsk_probes_out
        if self.state is _SYN_RECEIVED:
            # SYN-RECEIVED: SND.UNA < SEG.ACK =< SND.NXT -> ESTABLISHED (RFC 9293 3.10.7.4 fifth)
            self._snd_una = 1
            self._bytes_acked = 0
            self._snd_wnd = seg.window << self._snd_wscale
            snd_wnd, max_snd_wnd = self._snd_wnd, self._max_snd_wnd
            self._max_snd_wnd = snd_wnd if snd_wnd > max_snd_wnd else max_snd_wnd
            self._snd_wl1 = seq_abs
            self._syn_acked(ts.tsecr if ts is not None else 0, now)
            self._set_state(_ESTABLISHED)
            self._retransmits = 0
            self._t_rtx = None
            self._exposed = True
            if self.listener is not None:
                self._host._promote(self)
            self._host._emit(Connected(self, self.listener))
            self._after_established(now)
            if self._snd_nxt > self._snd_una:
                self._t_rtx = now + self._rtt.rto
        ack_abs = self._snd_una + seq_diff(seg.ack, self.snd_una)
        fin_acked = self._process_ack(seg, seq_abs, ack_abs, ts, now)
        if self.state is _CLOSED:
            return

        if fin_acked:
            nxt = FIN_ACKED_TRANSITIONS.get(self.state)
            if nxt is _CLOSED:
                # LAST-ACK: our FIN is acknowledged, delete the TCB
                self._terminate(None, None)
                return
            if nxt is _FIN_WAIT_2:
                self._set_state(_FIN_WAIT_2)
                self._t_rtx = None
                if self._orphan:
                    # Linux: an orphaned FIN-WAIT-2 lives tcp_fin_timeout, then vanishes silently
                    self._t_close = now + self.config.fin_wait2_timeout
            elif nxt is _TIME_WAIT:
                self._enter_time_wait(now)

        # RFC 7323 4.3: TS.Recent <- SEG.TSval when SEG.SEQ =< Last.ACK.sent (Linux tcp_replace_ts_recent)
        if ts is not None and seq_abs <= self._rcv_wup and seq_diff(ts.tsval, self._ts_recent) >= 0:
            self._ts_recent = ts.tsval
            self._ts_recent_stamp = now

        # sixth, check the URG bit: urgent data is not supported (ignored).
        # seventh, process the segment text; eighth, check the FIN bit (done in order, in _process_data)
        state = self.state
        if state in _DATA_TO_US:
            if (
                self._orphan
                and seg_len
                and end_abs - (1 if flags & F_FIN else 0) > self._rcv_nxt
                and state is not _ESTABLISHED
            ):
                # RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13: new data after close(): reset (TCPAbortOnData)
                self._host._count("TCPAbortOnData")
                self._host._send_reset(self._laddr, self._raddr, seg)
                self._fail(ConnectionReset("data after close"), "data after close")
                return
            if seg_len:
                self._process_data(seg, seq_abs, now)
        elif state in (_CLOSE_WAIT, _CLOSING, _LAST_ACK):
            # the peer already sent FIN: only retransmissions (below rcv_nxt) are expected; ack them.
            # Text past the FIN is ignored (RFC 9293 3.10.7.4 seventh), never queued for the user.
            if seq_abs < self._rcv_nxt and seg_len:
                if end_abs <= self._rcv_nxt:
                    self._process_data(seg, seq_abs, now)
                else:
                    self._drop("data beyond the peer's FIN ignored")
                    self._ack_now = True
        elif state is _TIME_WAIT and seg_len and seq_abs < self._rcv_nxt:
            self._ack_now = True

    def _syn_in_synchronized(self, seg: TcpSegment, now: float, d: Decision | None = None) -> None:
        """A SYN on a synchronized connection, per the policy: challenge ACK (RFC 5961 4.2,
        TCPSYNChallenge), reset (RFC 793, in window), ACK (RFC 793, outside the window) or drop."""
        if d is None:
            d = self.policy.check_syn_synchronized(self, seg, now)
        if d.verdict is Verdict.ACCEPT:
            # only the crossing SYN-ACK is accepted, and only in the window; outside it, ACK and drop
            d = Decision(Verdict.DUPACK, "SYN outside the receive window")
        self._reject(d)
        if d.verdict is Verdict.RESET:
            # RFC 793: an in-window SYN resets the connection
            self._host._send_reset(self._laddr, self._raddr, seg)
            self._fail(ConnectionReset("SYN in window"), "SYN in window")
            return
        if d.verdict is Verdict.DUPACK:
            if self._oow_allowed(seg, now, "TCPACKSkippedSeq"):
                self._send_ack(now)
            return
        if d.verdict is not Verdict.CHALLENGE_ACK:
            return
        if self.state is _ESTABLISHED:
            self._host._count("InErrs")  # Linux tcp_validate_incoming(syn_inerr=1) from tcp_rcv_established
        self._challenge_ack(now)

    def _reset_by_peer(self, now: float) -> None:
        """An acceptable RST (RFC 9293 3.10.7.4 second): CLOSED, "connection reset" (refused if active
        SYN-RECEIVED)."""
        if self.state is _SYN_RECEIVED and self.listener is None:
            self._fail(ConnectionRefused("connection refused"), "connection refused")
        elif self.state in (_CLOSING, _LAST_ACK, _TIME_WAIT):
            self._terminate(None, None)
        else:
            self._fail(ConnectionReset("connection reset by peer"), "connection reset by peer")

    # --- ACK processing ------------------------------------------------------------------------------------

    def _process_ack(
        self, seg: TcpSegment, seq_abs: int, ack_abs: int, ts: Timestamps | None, now: float
    ) -> bool:
        """RFC 9293 3.10.7.4 fifth (ESTABLISHED rules), RFC 5681/6582/6675 loss detection, RFC 6298 timer.
        Returns True when this ACK acknowledged our FIN."""
        snd_una = self._snd_una
        fin_acked = False
        prior_wnd = self._snd_wnd
        nwin = seg.window << self._snd_wscale
        outstanding_before = self._snd_nxt - snd_una
        partial_ack = False
        if ack_abs > snd_una:
            acked = ack_abs - snd_una
            self._rtt_on_ack(snd_una, ack_abs, ts.tsecr if ts is not None else 0, now)
            prev_high = self._sb.highest
            if (
                prev_high is not None
                and snd_una >= self._retrans_hi
                and self._sb.unsacked_between(snd_una, min(ack_abs, prev_high))
            ):
                # the cumulative ACK covered a hole we never retransmitted: it was reordering
                self._note_reordering(prev_high - snd_una)
            freed = self._sbuf.release(ack_abs)
            if self._fin_abs is not None and ack_abs > self._fin_abs:
                fin_acked = True
            self._snd_una = ack_abs
            self._bytes_acked += acked
            self._snd_sml = max(self._snd_sml, ack_abs)
            self._sb.advance(ack_abs)
            self._retransmits = 0
            self._probes_out = 0
            # congestion control
            if self._ca_state == _CA_RECOVERY:
                if ack_abs >= self._recover:
                    # full ACK (RFC 6582 3.2 step 3): leave fast recovery
                    self._ca_state = _CA_OPEN
                    self._dupacks = 0
                    self._cc.on_recovery_exit(self._snd_nxt - ack_abs)
                # partial ACK (RFC 6582 3.2 step 4): the next segment is lost too; retransmit it now
                elif not self._sack_ok:
                    self._high_rxt = ack_abs
                    self._dupacks = max(0, self._dupacks - max(1, acked // self._mss))
                    partial_ack = True
            elif self._ca_state == _CA_LOSS:
                self._cc.on_ack(acked)
                if ack_abs >= self._recover:
                    self._ca_state = _CA_OPEN
                    self._dupacks = 0
            else:
                self._dupacks = 0
                # grow only a window the sender fills (Linux tcp_is_cwnd_limited, RFC 7661 spirit)
                cwnd = self._cc.cwnd
                if outstanding_before >= (cwnd // 2 if self._cc.in_slow_start else cwnd - self._mss):
                    self._cc.on_ack(acked)
            # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it
            if ack_abs >= self._snd_nxt:
                if not self._rtx_is_persist:
                    self._t_rtx = None
            else:
                self._t_rtx = now + self._rtt.rto
                self._rtx_is_persist = False
            if freed and not self._space_evt and self._exposed and not self._wr_shutdown:
                self._space_evt = True
                self._host._emit(SendSpace(self))
        elif (
            ack_abs == snd_una
            and outstanding_before > 0
            and not seg.payload
            and not int(seg.flags) & (F_SYN | F_FIN)
            and nwin == prior_wnd
            and self._ca_state != _CA_LOSS
        ):
            self._dupacks += 1  # RFC 5681 2: a duplicate ACK

        # SACK (RFC 2018 3): mark what the peer holds; D-SACK blocks (RFC 2883) lie below the ACK and
        # are ignored here
        if self._sack_ok:
            sack = seg.option(Sack)
            if sack is not None:
                self._take_sack(sack, ack_abs)

        # window update (RFC 9293 3.10.7.4: SND.WL1 < SEG.SEQ or (== and SND.WL2 =< SEG.ACK));
        # Linux tcp_may_update_window
        if (
            ack_abs > snd_una
            or seq_abs > self._snd_wl1
            or (seq_abs == self._snd_wl1 and (nwin > self._snd_wnd or nwin == 0))
        ):
            self._snd_wl1 = seq_abs
            self._snd_wnd = nwin
            self._max_snd_wnd = max(self._max_snd_wnd, nwin)
            if self._rtx_is_persist and self._t_rtx is not None and self._usable_window() > 0:
                # the window opened: stop probing (Linux tcp_ack_probe)
                self._t_rtx = None
                self._rtx_is_persist = False
                self._persist_backoff = 0
        if self._rtx_is_persist:
            self._probes_out = 0  # the peer answers our probes (Linux tcp_ack resets icsk_probes_out)

        # loss detection: RFC 5681 3.2 (three duplicate ACKs) or RFC 6675 IsLost (enough SACKed above)
        if (
            self._ca_state == _CA_OPEN
            and self._snd_nxt > self._snd_una
            and self._snd_una >= self._recover
            and self._is_lost_head()
        ):
            self._enter_recovery(now)
        elif partial_ack and self._snd_nxt > self._snd_una:
            self._fast_retransmit(now)
        return fin_acked

    def _rtt_on_ack(self, old_una: int, ack_abs: int, tsecr: int, now: float) -> None:
        """RTT sample for an ACK that advances SND.UNA (Linux tcp_clean_rtx_queue/tcp_ack_update_rtt):
        the send time of the earliest newly acknowledged segment when none of it was retransmitted;
        otherwise TSecr (RFC 7323 4.1; 0: no timestamp, or none echoed), or no sample at all without
        timestamps (Karn, RFC 6298 3)."""
        # the peer answers: the probe timer starts over from its base (Linux tcp_ack_update_rtt clears
        # icsk_backoff on the sample such an ACK gives; tcp_check_probe_timer then arms tcp_probe0_base)
        self._persist_backoff = 0
        tx = self._tx_times
        first: float | None = None
        while tx and tx[0][0] <= ack_abs:
            t = tx.popleft()[1]
            if first is None:
                first = t
        if old_una < self._retrans_hi:
            if tsecr:
                self._rtt_sample_ts(tsecr, now)
        elif first is not None:
            self._rtt.sample(now - first)
        elif tsecr:
            self._rtt_sample_ts(tsecr, now)

    def _take_sack(self, sack: Sack, ack_abs: int) -> None:
        una_w = self.snd_una
        snd_una = self._snd_una
        limit = self._snd_nxt
        sb = self._sb
        prev_high = sb.highest
        for left, right in sack.blocks:
            s = snd_una + seq_diff(left, una_w)
            e = snd_una + seq_diff(right, una_w)
            if e <= s or s < snd_una or e > limit:
                continue  # D-SACK, stale or bogus block (RFC 2883 4, RFC 6675 4)
            if e <= ack_abs:
                continue
            if sb is EMPTY_SCOREBOARD:
                sb = self._sb = Scoreboard()
            if sb.add(s, e) and prev_high is not None and s < prev_high and s >= self._retrans_hi:
                # an original transmission arrived after later ones: reordering, not loss
                # (Linux tcp_check_sack_reordering)
                self._note_reordering(prev_high - s)

    def _note_reordering(self, distance: int) -> None:
        """Raise the loss-detection threshold to the reordering degree seen (Linux tp->reordering)."""
        segs = min(distance // self._mss + 1, _MAX_REORDERING)
        if segs > self._reordering:
            self._reordering = segs
            self._host._count("TCPSACKReorder")

    def _rtt_sample_ts(self, tsecr: int, now: float) -> None:
        """RFC 7323 4.1: RTT = now - TSecr (in TS ticks), on ACKs that advance the left edge."""
        ticks = (self.tsval_at(now) - tsecr) & SEQ_MASK
        if ticks < 0x7FFFFFFF:
            self._rtt.sample(ticks / _TS_HZ)

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit / fast recovery (RFC 5681 3.2, RFC 6582 3.2 step 2, RFC 6675 5)."""
        flight = self._snd_nxt - self._snd_una
        self._cc.on_loss(flight)
        self._ca_state = _CA_RECOVERY
        self._recover = self._snd_nxt
        self._high_rxt = self._snd_una
        self._host._count("TCPSackRecovery" if self._sack_ok else "TCPRenoRecovery")
        self._fast_retransmit(now)

    def _fast_retransmit(self, now: float) -> None:
        """Retransmit the first unacknowledged segment whatever pipe says (RFC 5681 3.2 step 3, RFC 6582
        3.2 steps 2 and 4, RFC 6675 5 step 4.3)."""
        s = self._snd_una
        e = min(s + self._data_mss(), self._snd_nxt)
        if self._sack_ok:
            hole = self._sb.next_hole(s, self._snd_nxt)
            if hole is not None:
                e = min(e, hole[1])
        if e <= s:
            return
        self._emit_range(s, e, now, retransmit=True)
        self._high_rxt = max(self._high_rxt, e)
        self._host._count("TCPFastRetrans")
        self._st_fast_rtx += 1

    def _is_lost_head(self) -> bool:
        """Time to recover: three duplicate ACKs (RFC 5681 3.2) without SACK; with SACK, RFC 6675
        IsLost(SND.UNA) against the reordering degree (Linux tcp_time_to_recover)."""
        if not self._sack_ok:
            return self._dupacks >= _DUPTHRESH
        b = self._lost_boundary()
        return b is not None and b > self._snd_una

    def _lost_boundary(self) -> int | None:
        """RFC 6675 IsLost with DupThresh = the reordering degree: holes below the returned offset have
        more than (DupThresh - 1) * SMSS bytes SACKed above them."""
        return self._sb.lost_boundary((self._reordering - 1) * self._mss + 1)

    def _lost_end(self) -> int:
        """Offsets below this that are neither SACKed nor retransmitted are taken as lost."""
        if self._ca_state == _CA_LOSS:
            return self._recover
        if self._sack_ok:
            # RFC 6675 IsLost: only holes with enough SACKed above them; an empty scoreboard marks
            # nothing lost (no NewReno partial-ACK retransmission with SACK, as Linux)
            b = self._lost_boundary() if self._sb else None
            return b if b is not None else self._snd_una
        return self._snd_una + self._mss  # NewReno: the first unacknowledged segment

    def _pipe(self) -> int:
        """RFC 6675 4 "pipe": bytes believed in the network."""
        una, nxt = self._snd_una, self._snd_nxt
        out = nxt - una
        start = max(self._high_rxt, una)
        lost_end = min(self._lost_end(), nxt)
        if self._sack_ok:
            sacked = self._sb.sacked
            lost = self._sb.unsacked_between(start, lost_end)
        else:
            sacked = (
                0 if self._ca_state == _CA_LOSS else min(self._dupacks * self._mss, max(out - self._mss, 0))
            )
            lost = max(0, lost_end - start)
        return max(0, out - sacked - lost)

    # --- receiving data ------------------------------------------------------------------------------------

    def _process_data(self, seg: TcpSegment, seq_abs: int, now: float) -> None:
        """RFC 9293 3.10.7.4 seventh and eighth (Linux tcp_data_queue)."""
        flags = int(seg.flags)
        payload = seg.payload
        start = seq_abs + (1 if flags & F_SYN else 0)
        fin = 1 if flags & F_FIN else 0
        end = start + len(payload)
        rcv_nxt = self._rcv_nxt
        if end + fin <= rcv_nxt:
            # a retransmission of what we have: immediate ACK with D-SACK (RFC 2883; Linux DelayedACKLost)
            self._host._count("DelayedACKLost")
            self._set_dsack(seq_abs, seq_abs + _seg_len(seg, flags))
            self._ack_now = True
            return
        right = self._rcv_wup + self._rcv_wnd
        if self._rcv_wnd and right < rcv_nxt:
            right = rcv_nxt
        if start >= right and payload:
            # beyond the window we offered: drop, re-advertise (RFC 9293 3.10.7.4 first)
            if right == rcv_nxt:
                self._host._count("TCPZeroWindowDrop")
            self._drop("data beyond the receive window")
            self._ack_now = True
            return
        if start < rcv_nxt:
            # straddles old and new: only the new part is processed; report the old part (RFC 2883)
            self._set_dsack(start, rcv_nxt)
            payload = payload[rcv_nxt - start :]
            start = rcv_nxt
        if end > right:
            payload = payload[: right - start]
            end = right
            fin = 0  # the FIN lies outside the window
        if start == rcv_nxt:
            had_ofo = bool(self._ofo)
            if payload:
                self._rbuf.append(payload)
                rcv_nxt = end
                self._st_bytes_rcvd += len(payload)
                if len(payload) > self._rcv_mss:
                    self._rcv_mss = min(len(payload), self._adv_mss)
            if had_ofo:
                for piece in self._ofo.pop_ready(rcv_nxt):
                    self._rbuf.append(piece)
                    rcv_nxt += len(piece)
                    self._st_bytes_rcvd += len(piece)
                self._ofo.advance(rcv_nxt)
                # RFC 5681 4.2: ACK at once when a segment fills (part of) a gap
                self._ack_now = True
            self._rcv_nxt = rcv_nxt
            if fin:
                self._ofo_fin = end
            if payload or had_ofo:
                self._data_arrived()
                self._schedule_ack(now)
            if self._ofo_fin is not None and self._ofo_fin == self._rcv_nxt:
                self._rcv_fin(now)
            return
        # out of order: hold it, ACK at once with SACK (RFC 5681 4.2, RFC 2018 4)
        if payload:
            if self._ofo.pieces >= max(64, self.config.recv_buffer // _OFO_BYTES_PER_PIECE):
                # Linux tcp_data_queue_ofo: when the queue's memory (truesize, not payload) is used up
                # the segment is dropped (TCPOFODrop); tiny segments must not pin an object each
                self._host._count("TCPOFODrop")
                self._drop("out-of-order queue full")
                return
            ofo = self._ofo
            if ofo is EMPTY_REASSEMBLY:
                ofo = self._ofo = Reassembly()
            dups = ofo.insert(start, payload)
            if dups:
                self._set_dsack(*dups[0])
        if fin:
            self._ofo_fin = end
        self._ack_now = True

    def _set_dsack(self, start: int, end: int) -> None:
        if self._sack_ok:
            self._dsack = (start, end)

    def _data_arrived(self) -> None:
        if not self._data_evt and self._exposed and not self._orphan:
            self._data_evt = True
            self._host._emit(DataReceived(self))

    def _schedule_ack(self, now: float) -> None:
        """Delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2; Linux __tcp_ack_snd_check): ACK at once when more
        than one full segment is unacknowledged, else within config.delayed_ack."""
        if self._rcv_nxt - self._rcv_wup > self._rcv_mss or self.config.delayed_ack <= 0:
            if self._host.ack_per_batch:
                self._ack_batch = True  # one cumulative ACK when the batch is done (see _input)
            else:
                self._ack_now = True
            return
        self._ack_pending = True
        if self._t_delack is None:
            self._t_delack = now + self.config.delayed_ack

    def _rcv_fin(self, now: float) -> None:
        """The FIN is next in sequence (RFC 9293 3.10.7.4 eighth; Linux tcp_fin)."""
        self._rcv_nxt += 1
        self._ofo_fin = None
        self._eof = True
        if self._exposed and not self._orphan:
            self._host._emit(EofReceived(self))
        state = self.state
        nxt = FIN_RECEIVED_TRANSITIONS.get(state, state)
        if state in (_ESTABLISHED, _SYN_RECEIVED):
            # Linux enters pingpong mode: the ACK waits (delayed) to ride on our own FIN or data
            self._set_state(nxt)
            self._schedule_ack(now)
        elif nxt is _TIME_WAIT:
            self._ack_now = True
            self._enter_time_wait(now)
        else:
            self._set_state(nxt)
            self._ack_now = True

    # --- TIME-WAIT (Linux tcp_timewait_state_process) ------------------------------------------------------

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(_TIME_WAIT)
        self._t_rtx = None
        self._t_delack = None
        self._t_keepalive = None
        if not self._tx_times:
            self._tx_times = None  # all acknowledged: one object less per TIME-WAIT for the GC to walk
        if not self._rbuf._size:
            # all read, and no data comes after the peer's FIN: two objects less for the GC
            self._rbuf = EMPTY_READ_BUFFER
        # the policy may shorten TIME-WAIT (tw_recycle: 3.5 RTO after remembering the peer's TSval)
        length = self.policy.on_time_wait(self, self.local, self.remote, now)
        self._t_close = now + (self.config.time_wait if length is None else length)

    def _reopen_isn(self) -> int:
        """The ISN of a connection a SYN reopens from this TIME-WAIT: above the old SND.NXT (Linux
        tcp_timewait_state_process: tcp_tw_isn = tw_snd_nxt + 65535 + 2, 0 meaning none)."""
        return (self.snd_nxt + 65535 + 2) & SEQ_MASK or 1

    def _rcv_time_wait(self, seg: TcpSegment, now: float) -> None:
        d = self.policy.check_time_wait(self, seg, now)
        v = d.verdict
        if v is Verdict.ACCEPT:
            if self._host._listener_for(self.local) is not None:
                # a new SYN reopens the connection
                isn = self._reopen_isn()
                self._terminate(None, None)
                self._host._reopen(self.local, self.remote, seg, now, isn)
                return
            # Linux TCP_TW_SYN without a listener falls through to TCP_TW_ACK
            d = Decision(Verdict.DUPACK, "TIME-WAIT: new SYN but no listener, ACK (TCP_TW_ACK)")
            v = d.verdict
        if v is Verdict.RESET:
            self._count_decision(d)
            self._terminate(None, None)
            return
        self._reject(d)
        if v is Verdict.DUPACK:
            # RFC 9293 3.10.7.4: ACK it, restart the 2 MSL timeout (Linux: TCP_TIMEWAIT_LEN even when
            # tw_recycle shortened the first one)
            if int(seg.flags) & F_ACK or d.counter is not None:
                self._t_close = now + self.config.time_wait
            if self._oow_allowed(seg, now, "TCPACKSkippedTimeWait"):
                self._send_ack(now)
            return
        if v is Verdict.CHALLENGE_ACK:
            self._challenge_ack(now)
            return
        if int(seg.flags) & (F_ACK | F_RST) == F_ACK:
            self._t_close = now + self.config.time_wait

    # =====================================================================================================
    # sending
    # =====================================================================================================

    def _transmit(self, now: float) -> None:
        """Send what is due: RST, SYN, data and FIN, or a bare ACK."""
        if self._pending_rst:
            self._pending_rst = False
            self._send_rst(now)
            return
        state = self.state
        if state in _MAY_SEND_DATA:
            if self._third_ack_held:
                return  # release_third_ack() lets it go
            if self._send_data(now):
                return
        elif state is not _FIN_WAIT_2 and state is not _TIME_WAIT:
            # CLOSED, LISTEN, SYN-SENT; only SYN-ACKs leave SYN-RECEIVED (queued data waits for ESTABLISHED)
            return
        if self._ack_now or self._ack_batch:
            self._send_ack(now)  # (which sends nothing while the third ACK is held)

    def _send_end(self) -> int:
        """Offset one past everything we will send (data, plus the FIN once queued)."""
        return self._sbuf.end + (1 if self._fin_abs is not None else 0)

    def _usable_window(self) -> int:
        return self._snd_una + self._snd_wnd - self._snd_nxt

    def _send_data(self, now: float) -> bool:
        """Retransmissions first during recovery (RFC 6675 NextSeg), then new data (window, cwnd, Nagle,
        SWS). Returns whether anything was sent."""
        sent = False
        if self._ca_state != _CA_OPEN:
            while True:
                mss = self._data_mss()
                pipe = self._pipe()
                if pipe > 0 and pipe + mss > self._cc.cwnd:
                    break
                lost_end = min(self._lost_end(), self._snd_nxt)
                start = max(self._high_rxt, self._snd_una)
                hole = (
                    self._sb.next_hole(start, lost_end)
                    if self._sack_ok
                    else ((start, lost_end) if start < lost_end else None)
                )
                if hole is not None:
                    s, e = hole
                    e = min(e, s + mss)
                    self._emit_range(s, e, now, retransmit=True)
                    self._high_rxt = e
                    if self._ca_state == _CA_RECOVERY:
                        self._host._count("TCPFastRetrans")
                        self._st_fast_rtx += 1
                    sent = True
                    continue
                if not self._send_new(now, pipe):
                    break
                sent = True
            return sent
        sbuf = self._sbuf
        fin_abs = self._fin_abs  # neither _send_bulk nor _send_new queues a FIN
        # a burst needs a full segment queued and no FIN (a request or response has neither: no call)
        sent = fin_abs is None and self._snd_nxt + self._mss <= sbuf.end and self._send_bulk(now)
        # _send_new's own first test before each call: nothing unsent and no FIN due leaves it at once
        # (`is not None` first: an int compared with None takes CPython's generic, slow comparison)
        while (
            self._snd_nxt < sbuf.end or (fin_abs is not None and self._snd_nxt == fin_abs)
        ) and self._send_new(now, None):
            sent = True
        return sent

    def _data_mss(self) -> int:
        """Payload size of a data segment; SACK blocks riding on it take option space (tcp_current_mss)."""
        mss = self._mss
        if self._sack_ok and (self._dsack is not None or self._ofo.blocks):
            n = len(self._sack_blocks())
            if n:
                mss -= 4 + 8 * n
        return mss if mss > 1 else 1

    def _send_new(self, now: float, pipe: int | None) -> bool:
        """One new segment if the window, cwnd, Nagle and SWS rules allow (RFC 9293 3.7.4, 3.8.6.2.1)."""
        start = self._snd_nxt
        data_end = self._sbuf.end
        fin_abs = self._fin_abs
        if start < data_end:
            avail = data_end - start
        elif fin_abs is not None and start == fin_abs:
            # a bare FIN: sent whatever the window (receivers accept a FIN at the window edge)
            self._emit_range(start, start + 1, now, retransmit=False)
            return True
        else:
            return False
        mss = self._data_mss()
        size = avail if avail < mss else mss
        room = self._snd_una + self._snd_wnd - start
        in_flight = pipe if pipe is not None else (start - self._snd_una) - self._sb.sacked
        if in_flight > 0 and in_flight + size > self._cc.cwnd:
            return False  # congestion window full (RFC 5681 3.1)
        if size > room:
            # SWS avoidance (RFC 9293 3.8.6.2.1): a window-limited partial segment only if it is at least
            # half the largest window the peer offered
            if room > 0 and room >= self._max_snd_wnd // 2 and room < size:
                size = room
            else:
                self._arm_persist(now)
                return False
        if size < mss and size == avail and fin_abs is None:  # a small final segment, no FIN to carry
            if self._cork:
                # TCP_CORK (Linux tcp_nagle_check, TCP_NAGLE_CORK): held whatever is in flight; with
                # nothing in flight the probe timer bounds the wait (tcp_check_probe_timer)
                self._arm_persist(now)
                return False
            # Nagle (Linux tcp_nagle_check, Minshall's variant): held while a previous small segment is
            # unacknowledged, unless nodelay
            if not self._nodelay and self._snd_sml > self._snd_una and start > self._snd_una:
                return False
        end = start + size
        if fin_abs is not None and end == fin_abs:
            end += 1  # the FIN rides on the last data segment
        self._emit_range(start, end, now, retransmit=False)
        if size < mss:
            self._snd_sml = start + size
        return True

    def _send_bulk(self, now: float) -> bool:
        """The full-sized new segments that repeated `_send_new` calls would send while neither Nagle,
        SWS avoidance, the FIN nor a partial segment is involved, queued encoded (Host.wire_output) with
        what cannot change between them worked out once: the window field (`_select_window` gives the
        same value again while nothing is received or read), the timestamps, the ACK number, the RTO.
        Returns whether anything was sent; `_send_new` then goes on from where this stopped. Called
        (by _send_data) only with a full segment queued and no FIN."""
        mss = self._mss  # _data_mss without SACK blocks (the encoder implies none); at least 1 (_sync_mss)
        sbuf = self._sbuf
        start = self._snd_nxt
        data_end = sbuf.end
        encoder = self._wire_encoder()
        if encoder is None:
            return False
        una = self._snd_una
        right = una + self._snd_wnd  # RFC 9293 3.8.6.2.1: the usable window's right edge
        cwnd = self._cc.cwnd
        sacked = self._sb.sacked
        in_flight = start - una - sacked
        if start + mss > right or (in_flight > 0 and in_flight + mss > cwnd):
            return False
        window = self._select_window()
        ack = self.rcv_nxt
        tsval = self.tsval_at(now)
        tsecr = self._ts_recent
        iss = self.iss
        ip_id = self._ip_id
        tx_times = self._tx_times
        if tx_times is None:
            tx_times = self._tx_times = deque()
        encode = encoder.encode
        locate = sbuf.locate
        out: list[bytes] = []
        while True:
            end = start + mss
            buf, i, j = locate(start, mss)
            # PSH on the segment that empties what is queued, as _emit_range sets it
            flags = F_ACK | F_PSH if end == data_end else F_ACK
            out.append(encode(ip_id, (iss + start) & SEQ_MASK, ack, flags, window, tsval, tsecr, buf, i, j))
            ip_id = (ip_id + 1) & 0xFFFF
            tx_times.append((end, now))
            start = end
            in_flight = start - una - sacked  # > 0 from here on: RFC 5681 3.1, cwnd bounds it
            if start + mss > data_end or start + mss > right or in_flight + mss > cwnd:
                break
        self._ip_id = ip_id
        self._snd_nxt = start
        self._st_bytes_sent += len(out) * mss
        self._st_segs_out += len(out)
        self._host._send_wire_many(out)
        self._on_ack_sent()
        if self._t_rtx is None or self._rtx_is_persist:
            self._t_rtx = now + self._rtt.rto
            self._rtx_is_persist = False
        return True

    def _emit_range(self, start: int, end: int, now: float, *, retransmit: bool) -> None:
        """Send offsets [start, end) (data, and the FIN if `end` passes it) as one segment."""
        fin_abs = self._fin_abs
        data_end = self._sbuf.end
        dend = end if end < data_end else data_end
        length = dend - start if dend > start else 0
        flags = F_ACK
        if length and dend == data_end:
            flags |= F_PSH  # the last segment of what is queued
        if fin_abs is not None and end > fin_abs:
            flags |= F_FIN
        seq = (self.iss + start) & SEQ_MASK
        ack = (self.irs + self._rcv_nxt) & SEQ_MASK  # RCV.NXT (the rcv_nxt property, inlined)
        window = self._select_window()  # records the window it advertises: once per segment
        encoder = self._wire_encoder()
        if encoder is not None:  # the same segment, encoded at once (Host.wire_output)
            buf, i, j = self._sbuf.locate(start, length) if length else (b"", 0, 0)
            raw = encoder.encode(
                self._next_ip_id(), seq, ack, flags, window, self.tsval_at(now), self._ts_recent, buf, i, j
            )
            seg = None
        else:
            payload = self._sbuf.peek(start, length) if length else b""
            opts = self._options(now)
            seg = TcpSegment(self._lport, self._rport, seq, ack, _FLAGS[flags], window, opts, payload)
        snd_nxt = self._snd_nxt
        self._snd_nxt = end if end > snd_nxt else snd_nxt
        if retransmit:
            self._st_rtx_segs += 1
            self._st_rtx_bytes += length
            self._retrans_hi = max(self._retrans_hi, end)  # Karn: data below is ambiguous to time
        else:
            self._st_bytes_sent += length
            if self._tx_times is None:
                self._tx_times = deque()
            self._tx_times.append((end, now))
        if seg is None:
            self._st_segs_out += 1
            self._host._send_wire(raw, retransmit)
        else:
            self._emit(seg, retransmit=retransmit)
        self._on_ack_sent()
        if self._t_rtx is None or self._rtx_is_persist:
            self._t_rtx = now + self._rtt.rto
            self._rtx_is_persist = False

    def _options(self, now: float) -> tuple[TcpOption, ...]:
        """NOP NOP TS, then NOP NOP SACK (Linux tcp_established_options / tcp_options_write)."""
        if self._ts_ok:
            opts = timestamp_options(self.tsval_at(now), self._ts_recent)
        else:
            opts = ()
        if self._sack_ok and (self._dsack is not None or self._ofo.blocks):
            blocks = self._sack_blocks()
            if blocks:
                opts = opts + sack_options(blocks)
        return opts

    def _sack_blocks(self) -> list[tuple[int, int]]:
        """D-SACK first (RFC 2883), then the most recent blocks; 3 fit beside timestamps, 4 without."""
        limit = 3 if self._ts_ok else 4
        irs = self.irs
        out: list[tuple[int, int]] = []
        if self._dsack is not None:
            s, e = self._dsack
            out.append(((irs + s) & SEQ_MASK, (irs + e) & SEQ_MASK))
        for s, e in self._ofo.blocks:
            if len(out) >= limit:
                break
            out.append(((irs + s) & SEQ_MASK, (irs + e) & SEQ_MASK))
        return out

    def _send_ack(self, now: float) -> None:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, with the current window and options."""
        if self._third_ack_held:
            return
        encoder = self._wire_encoder()
        if encoder is None:
            self._emit(self._build_ack(now))
            return
        # _build_ack's segment, encoded at once (Host.wire_output)
        window = self._select_window()
        raw = encoder.encode(
            self._next_ip_id(), (self.iss + self._snd_nxt) & SEQ_MASK, (self.irs + self._rcv_nxt) & SEQ_MASK,
            F_ACK, window, self.tsval_at(now), self._ts_recent, b"", 0, 0,
        )  # fmt: skip
        self._on_ack_sent()
        self._st_segs_out += 1
        self._host._send_wire(raw)
        if self.state is _TIME_WAIT:
            self._encoder = None  # likely its last segment: one object less for the GC (made again if not)

    def _wire_encoder(self) -> SegmentEncoder | None:
        """The encoder for segments queued as bytes, when the host asks for them (Host.wire_output) and
        the segment has the plain shape: a synchronized connection (not a request socket, not to one of
        our own addresses: self-delivery wants values) and no SACK blocks to carry."""
        if not self._host.wire_output or self._request:
            return None
        if self._sack_ok and (self._dsack is not None or self._ofo.blocks):
            return None
        encoder = self._encoder
        if encoder is None:
            if self.state not in SYNCHRONIZED:
                return None  # timestamps are settled by the handshake
            if self._raddr in self._host._addr_set:
                return None
            encoder = self._encoder = SegmentEncoder(
                self._laddr, self._raddr, self._lport, self._rport, self._ts_ok
            )
        return encoder

    def _build_ack(self, now: float) -> TcpSegment:
        """The ACK `_send_ack` sends, as sent (the advertised window is recorded)."""
        # a request socket repeats its SYN-ACK window (Linux tcp_v4_reqsk_send_ack)
        window = self._rcv_wnd >> self._rcv_wscale if self._request else self._select_window()
        seg = TcpSegment(
            self._lport,
            self._rport,
            self.snd_nxt,
            self.rcv_nxt,
            _FLAGS[F_ACK],
            window,
            self._options(now),
        )
        self._on_ack_sent()
        return seg

    def _send_probe(self, now: float) -> None:
        """A zero-window or keepalive probe: <SEQ=SND.UNA-1><ACK=RCV.NXT><CTL=ACK>, no data, so the peer
        answers with an ACK (Linux tcp_xmit_probe_skb; RFC 9293 3.8.4 allows this form)."""
        seg = TcpSegment(
            self._lport,
            self._rport,
            (self.iss + self._snd_una - 1) & SEQ_MASK,
            self.rcv_nxt,
            _FLAGS[F_ACK],
            self._select_window(),
            self._options(now),
        )
        self._emit(seg)
        self._on_ack_sent()

    def _send_rst(self, now: float) -> None:
        """Active reset (Linux tcp_send_active_reset): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>."""
        opts = timestamp_options(self.tsval_at(now), self._ts_recent) if self._ts_ok else ()
        seg = TcpSegment(
            self._lport,
            self._rport,
            self.snd_nxt,
            self.rcv_nxt,
            _FLAGS[RST_ACK],
            self._window_candidate() >> self._rcv_wscale if self._rcv_wnd else 0,
            opts,
        )
        self._emit(seg)
        self._host._count("OutRsts")

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 challenge ACK, rate-limited per socket by the policy."""
        d = self.policy.challenge_ack_allowed(self, now)
        if d.verdict is Verdict.ACCEPT:
            self._count_decision(d)
            self._last_oow_ack = now
            self._send_ack(now)
        else:
            self._reject(d)

    def _oow_allowed(self, seg: TcpSegment, now: float, counter: str) -> bool:
        d = self.policy.oow_ack_allowed(self, seg, now, counter)
        if d.verdict is Verdict.ACCEPT:
            if not (seg.payload and not int(seg.flags) & F_SYN):
                self._last_oow_ack = now
            return True
        self._reject(d)
        return False

    def _emit(self, seg: TcpSegment, *, retransmit: bool = False) -> None:
        ident = 0 if self._request else self._next_ip_id()
        self._st_segs_out += 1
        self._host._send(IPv4Packet(self._laddr, self._raddr, seg, ident=ident), retransmit)

    def _next_ip_id(self) -> int:
        """This connection's next IP ID (Linux: a per-socket counter, inet_id, from a random start)."""
        ident = self._ip_id
        self._ip_id = (ident + 1) & 0xFFFF
        return ident

    def _on_ack_sent(self) -> None:
        self._ack_now = False
        self._ack_batch = False
        self._ack_pending = False
        self._t_delack = None
        self._dsack = None

    # --- windows -------------------------------------------------------------------------------------------

    def _receive_window_now(self) -> int:
        """Linux tcp_receive_window(): what is left of the last advertised window."""
        left = self._rcv_wup + self._rcv_wnd - self._rcv_nxt
        return left if left > 0 else 0

    def _window_candidate(self) -> int:
        """The window (bytes) we would advertise now: free buffer space, with receiver SWS avoidance
        (RFC 9293 3.8.6.2.2: move the right edge only by min(RCV.BUFF/2, MSS) or more) and never shrinking
        the right edge (RFC 7323 2.4, RFC 9293 3.8.6.2.2)."""
        # min/max spelled as comparisons (same values): this runs for every segment sent
        buf = self.config.recv_buffer
        free = buf - self._rbuf._size  # len(self._rbuf) without the __len__ call
        free = free if free > 0 else 0
        cur = self._rcv_wup + self._rcv_wnd - self._rcv_nxt  # _receive_window_now
        cur = cur if cur > 0 else 0
        if free <= cur:
            new = cur
        else:
            half, rcv_mss = buf // 2, self._rcv_mss
            new = free if free - cur >= (rcv_mss if rcv_mss < half else half) else cur
        ws = self._rcv_wscale
        if ws:
            limit = _MAX_WINDOW << ws
            new = limit if new > limit else new
            # Linux __tcp_select_window: ALIGN(free_space, 1 << rcv_wscale) rounds up, so a small free
            # space is not scaled away to zero (and the right edge never moves left)
            scaled = (new + (1 << ws) - 1) >> ws
            return (scaled if scaled < _MAX_WINDOW else _MAX_WINDOW) << ws
        return new if new < _MAX_WINDOW else _MAX_WINDOW  # min(new, _MAX_WINDOW << 0)

    def _select_window(self) -> int:
        """Window field for an outgoing non-SYN segment; records the advertised right edge (Linux
        tcp_select_window)."""
        size = self._rbuf._size
        if self._rcv_nxt == self._rcv_wup and size == self._rcv_wsize:
            # nothing received or read since it advertised the last window: _window_candidate would
            # give that window again (its rounding and SWS threshold leave a window they made as it is)
            return self._rcv_wnd >> self._rcv_wscale
        new = self._window_candidate()
        self._rcv_wnd = new
        self._rcv_wup = self._rcv_nxt
        self._rcv_wsize = size
        return new >> self._rcv_wscale

    # =====================================================================================================
    # timers
    # =====================================================================================================

    def _on_timer(self, now: float) -> None:
        if self.state is _CLOSED:
            return
        if self._t_close is not None and now >= self._t_close:
            # TIME-WAIT ran 2*MSL, or an orphaned FIN-WAIT-2 timed out (Linux tcp_fin_timeout)
            self._terminate(None, None)
            return
        if self._t_rtx is not None and now >= self._t_rtx:
            self._t_rtx = None
            if self._rtx_is_persist:
                self._rtx_is_persist = False
                self._on_persist(now)
            else:
                self._on_rto(now)
            if self._is_closed():
                return
        if self._t_delack is not None and now >= self._t_delack:
            self._t_delack = None
            if self._ack_pending:
                self._host._count("DelayedACKs")
                self._ack_now = True
        if self._t_keepalive is not None and now >= self._t_keepalive:
            self._t_keepalive = None
            self._on_keepalive(now)
            if self._is_closed():
                return
        self._transmit(now)

    def _on_rto(self, now: float) -> None:
        """Retransmission timeout (RFC 6298 5.4-5.6, RFC 5681 3.1; Linux tcp_retransmit_timer)."""
        state = self.state
        if state in (_SYN_SENT, _SYN_RECEIVED) and self._snd_una == 0:
            limit = (
                self.config.syn_retries
                if state is _SYN_SENT or self.listener is None
                else self.config.synack_retries
            )
            if self._syn_retransmits >= limit:
                if self._request:
                    self._drop_request("SYN-ACK retransmissions exhausted")
                else:
                    self._host._count("TCPTimeouts")
                    self._fail(ConnectionTimedOut("connection timed out"), "connection timed out")
                return
            self._syn_retransmits += 1
            if not self._request:
                self._host._count("TCPTimeouts")
                self._st_timeouts += 1
            self._rtt.back_off()
            self._rtt_seq = None
            self._t_rtx = now + self._rtt.rto
            self._send_syn(now, ack=state is _SYN_RECEIVED, retransmit=True)
            return
        if self._snd_nxt <= self._snd_una:
            return
        if self._retransmits >= self.config.retries:
            self._host._count("TCPTimeouts")
            self._fail(ConnectionTimedOut("retransmissions exhausted"), "connection timed out")
            return
        self._host._count("TCPTimeouts")
        self._st_timeouts += 1
        first = self._ca_state != _CA_LOSS
        self._cc.on_rto(self._snd_nxt - self._snd_una, first)
        self._ca_state = _CA_LOSS
        self._recover = self._snd_nxt
        self._high_rxt = self._snd_una
        self._dupacks = 0
        self._retransmits += 1
        self._rtt.back_off()
        self._t_rtx = now + self._rtt.rto
        self._send_data(now)

    def _arm_persist(self, now: float) -> None:
        """Persist timer (RFC 9293 3.8.6.1): data waits on a closed window, or on the cork, and nothing is
        in flight (Linux tcp_check_probe_timer arms probe0 for both)."""
        if self._t_rtx is not None or self._snd_nxt > self._snd_una:
            return
        base = max(self._rtt.rto, self.config.persist_min)
        self._t_rtx = now + min(base * (1 << self._persist_backoff), self.config.max_rto)
        self._rtx_is_persist = True

    def _on_persist(self, now: float) -> None:
        """Send a window probe (Linux tcp_probe_timer / tcp_write_wakeup), back off exponentially."""
        if self._snd_nxt > self._snd_una or self._sbuf.end <= self._snd_nxt:
            self._persist_backoff = 0
            return
        if self._probes_out >= self.config.retries:
            self._fail(ConnectionTimedOut("zero window probes unanswered"), "connection timed out")
            return
        self._probes_out += 1
        room = self._snd_una + self._snd_wnd - self._snd_nxt
        if room > 0:
            # part of the window opened: send what fits (tcp_write_wakeup fragments the head)
            size = min(room, self._data_mss(), self._sbuf.end - self._snd_nxt)
            self._emit_range(self._snd_nxt, self._snd_nxt + size, now, retransmit=False)
        else:
            self._send_probe(now)
            self._host._count("TCPWinProbe")
        if self._persist_backoff < 30:
            self._persist_backoff += 1
        if self._t_rtx is None:
            self._arm_persist(now)

    def _arm_keepalive(self, now: float) -> None:
        idle = self.config.keepalive_idle
        if idle is not None and self.state in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2):
            self._t_keepalive = self._last_rcv + idle if self._last_rcv else now + idle

    def _on_keepalive(self, now: float) -> None:
        """Keepalive (RFC 9293 3.8.4, Linux tcp_keepalive_timer): after `keepalive_idle` of silence send a
        probe every `keepalive_interval`; `keepalive_probes` unanswered ones fail the connection."""
        cfg = self.config
        idle = cfg.keepalive_idle
        if idle is None or self.state not in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2):
            return
        if self._snd_nxt > self._snd_una or self._sbuf.end > self._snd_nxt:
            self._t_keepalive = now + idle  # the retransmission machinery watches this connection
            return
        elapsed = now - self._last_rcv
        if elapsed < idle and self._probes_out == 0:
            self._t_keepalive = self._last_rcv + idle
            return
        if self._probes_out >= cfg.keepalive_probes:
            # Linux: tcp_send_active_reset, then tcp_write_err (ETIMEDOUT)
            self._abort_with_rst(ConnectionTimedOut("keepalive timed out"), "keepalive timed out")
            return
        self._probes_out += 1
        self._host._count("TCPKeepAlive")
        self._send_probe(now)
        self._t_keepalive = now + cfg.keepalive_interval

    # =====================================================================================================
    # state changes
    # =====================================================================================================

    def _is_closed(self) -> bool:
        """(A method, so type checkers do not narrow `state` across calls that change it.)"""
        return self.state is _CLOSED

    def _set_state(self, new: TcpState) -> None:
        old = self.state
        if new is _CLOSED:
            # Linux tcp_set_state / tcp_done counters
            if old in _ESTABLISHED_ONCE:
                self._host._count("EstabResets")
            elif old in (_SYN_SENT, _SYN_RECEIVED) and not self._request:
                self._host._count("AttemptFails")
        self.state = new

    def _queue_fin(self, next_state: TcpState) -> None:
        self._fin_abs = self._sbuf.end
        self._set_state(next_state)
        self._host._mark_dirty(self)

    def _abort_with_rst(self, error: ConnectionFailed | None, reason: str, *, rst: bool = True) -> None:
        """Close now; the RST (built at the next transmit, when `now` is known) follows."""
        self._pending_rst = rst
        self._terminate(error, reason if error is not None else None, keep_rst=rst)
        if rst:
            self._host._mark_dirty(self)

    def _fail(self, error: ConnectionFailed | None, reason: str, *, keep_rst: bool = False) -> None:
        """The connection failed: error recorded, Reset event, CLOSED."""
        self._terminate(error, reason, keep_rst=keep_rst)

    def _terminate(
        self, error: ConnectionFailed | None, reason: str | None, *, keep_rst: bool = False
    ) -> None:
        if self.state is _CLOSED:
            return
        if error is not None:
            self.error = error
        self._set_state(_CLOSED)
        self._t_rtx = self._t_delack = self._t_keepalive = self._t_close = None
        if not keep_rst:
            self._pending_rst = False
        self._ack_now = False
        self._host._unlink(self)
        self._host._reschedule(self)
        if self._exposed:
            if reason is not None:
                self._host._emit(Reset(self, reason))
            self._host._emit(Closed(self))
