"""A connection-tracking table for the NAT boxes, with TCP states and timeouts as data.

Each entry holds both directions' flow tuples, as Linux conntrack does: `original` is the flow as the
initiator's packets arrive at the box (client -> VIP), `reply` is the flow the answers arrive on
(RS -> local address for FullNAT, server -> outside address for SNAT). Either tuple finds the entry in
O(1) and tells which direction the packet goes.

States and transitions are DPVS's (src/ipvs/ip_vs_proto_tcp.c, `tcp_states`, rows INPUT and OUTPUT; the
INPUT-ONLY rows serve DR/TUN forwarding, which no box here does). ORIGINAL packets use the INPUT rows,
REPLY packets the OUTPUT rows; the row is picked by `tcp_state_idx`: RST first, then SYN, FIN, ACK.
Like DPVS `tcp_state_trans`, a segment with none of those flags moves the entry to CLOSE.

Every packet re-arms the entry's timer with the timeout of its (new) state (DPVS `dp_vs_conn_put` and
Linux `nf_ct_refresh` both refresh per packet). Timeout tables:

- `DPVS_TCP_TIMEOUTS`: DPVS `tcp_timeouts` defaults (ESTABLISHED 90 s, SYN_RECV 30 s, ...).
- `NF_CONNTRACK_TCP_TIMEOUTS`: Linux nf_conntrack's defaults (ESTABLISHED 5 days, SYN_SENT 2 min,
  CLOSE 10 s, ...) put on the DPVS state of the same phase (DPVS calls the state after the initiator's
  SYN SYN_RECV, where nf_conntrack says SYN_SENT). The transitions stay DPVS's; nf_conntrack's own
  table and its window tracking (tcp_in_window) are not modelled.

Expiry is driven by `now`: `expire(now)` removes and returns what is due; `next_deadline()` says when.
`format_entries(now)` prints lines like `conntrack -L`.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from utcp.middlebox.base import FlowTuple
from utcp.wire.packet import TcpFlags

__all__ = [
    "DPVS_TCP_TIMEOUTS",
    "NF_CONNTRACK_TCP_TIMEOUTS",
    "TCP_STATE_TABLE",
    "ConnEntry",
    "ConnTrack",
    "FlowDir",
    "TcpConnState",
    "TupleClash",
    "next_tcp_state",
    "tcp_state_index",
]

ExtT = TypeVar("ExtT")


class TcpConnState(enum.Enum):
    """DPVS_TCP_S_* (include/ipvs/proto_tcp.h), in DPVS's column order."""

    NONE = "NONE"
    ESTABLISHED = "ESTABLISHED"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    FIN_WAIT = "FIN_WAIT"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    LISTEN = "LISTEN"
    SYNACK = "SYNACK"


class FlowDir(enum.Enum):
    """Which of an entry's tuples a packet matched (Linux IP_CT_DIR_ORIGINAL / IP_CT_DIR_REPLY)."""

    ORIGINAL = "original"  # DPVS_CONN_DIR_INBOUND: INPUT rows
    REPLY = "reply"  # DPVS_CONN_DIR_OUTBOUND: OUTPUT rows


_S = TcpConnState
# Column order of DPVS tcp_states: sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA.
_COLUMNS: tuple[TcpConnState, ...] = (
    _S.NONE,
    _S.ESTABLISHED,
    _S.SYN_SENT,
    _S.SYN_RECV,
    _S.FIN_WAIT,
    _S.TIME_WAIT,
    _S.CLOSE,
    _S.CLOSE_WAIT,
    _S.LAST_ACK,
    _S.LISTEN,
    _S.SYNACK,
)
sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA = _COLUMNS

# DPVS tcp_states, rows indexed by tcp_state_idx (0 syn, 1 fin, 2 ack, 3 rst), copied as data.
_ROWS: dict[FlowDir, tuple[tuple[TcpConnState, ...], ...]] = {
    FlowDir.ORIGINAL: (  # INPUT
        (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
        (sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
        (sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
        (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR),  # rst
    ),
    FlowDir.REPLY: (  # OUTPUT
        (sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR),  # syn
        (sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW),  # fin
        (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES),  # ack
        (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),  # rst
    ),
}

# The same table keyed for lookups: (direction, row index, current state) -> next state.
TCP_STATE_TABLE: Mapping[tuple[FlowDir, int, TcpConnState], TcpConnState] = {
    (direction, idx, current): row[col]
    for direction, rows in _ROWS.items()
    for idx, row in enumerate(rows)
    for col, current in enumerate(_COLUMNS)
}

DPVS_TCP_TIMEOUTS: Mapping[TcpConnState, float] = {  # DPVS tcp_timeouts, seconds
    _S.NONE: 2,
    _S.ESTABLISHED: 90,
    _S.SYN_SENT: 3,
    _S.SYN_RECV: 30,
    _S.FIN_WAIT: 7,
    _S.TIME_WAIT: 7,
    _S.CLOSE: 3,
    _S.CLOSE_WAIT: 7,
    _S.LAST_ACK: 7,
    _S.LISTEN: 120,
    _S.SYNACK: 30,
}

NF_CONNTRACK_TCP_TIMEOUTS: Mapping[TcpConnState, float] = {  # nf_conntrack_proto_tcp.c tcp_timeouts
    _S.NONE: 10,  # nf_conntrack has no timer for NONE; an entry is never left there after a packet
    _S.ESTABLISHED: 5 * 24 * 3600,  # TCP_CONNTRACK_ESTABLISHED 5 DAYS (shows as 431999 in conntrack -L)
    _S.SYN_SENT: 120,  # SYN_SENT2 2 MINS (DPVS SYN_SENT: a SYN seen only from the reply side)
    _S.SYN_RECV: 120,  # the initiator's SYN: nf_conntrack's SYN_SENT, 2 MINS
    _S.FIN_WAIT: 120,  # FIN_WAIT 2 MINS
    _S.TIME_WAIT: 120,  # TIME_WAIT 2 MINS
    _S.CLOSE: 10,  # CLOSE 10 SECS
    _S.CLOSE_WAIT: 60,  # CLOSE_WAIT 60 SECS
    _S.LAST_ACK: 30,  # LAST_ACK 30 SECS
    _S.LISTEN: 120,
    _S.SYNACK: 60,  # SYN_RECV 60 SECS: a SYN-ACK seen
}


def tcp_state_index(flags: TcpFlags) -> int | None:
    """DPVS tcp_state_idx: the table row for a segment (RST wins over SYN over FIN over ACK)."""
    if flags & TcpFlags.RST:
        return 3
    if flags & TcpFlags.SYN:
        return 0
    if flags & TcpFlags.FIN:
        return 1
    if flags & TcpFlags.ACK:
        return 2
    return None


def next_tcp_state(current: TcpConnState, direction: FlowDir, flags: TcpFlags) -> TcpConnState:
    """DPVS tcp_state_trans: the state after a segment; no RST/SYN/FIN/ACK at all gives CLOSE."""
    idx = tcp_state_index(flags)
    if idx is None:
        return TcpConnState.CLOSE
    return TCP_STATE_TABLE[(direction, idx, current)]


class TupleClash(ValueError):
    """A new entry's tuple is already tracked (the caller should have allocated another)."""


@dataclass(slots=True, eq=False)
class ConnEntry(Generic[ExtT]):
    """One tracked connection. Mutable: the table owns it and updates it per packet."""

    original: FlowTuple
    reply: FlowTuple
    ext: ExtT  # what the box that owns the table keeps per connection
    created: float
    deadline: float
    state: TcpConnState = TcpConnState.NONE
    seen_reply: bool = False  # IPS_SEEN_REPLY: shown as [UNREPLIED] until set
    assured: bool = False  # IPS_ASSURED: set on reaching ESTABLISHED after a reply was seen
    packets: dict[FlowDir, int] = field(default_factory=lambda: {FlowDir.ORIGINAL: 0, FlowDir.REPLY: 0})
    # The deadline of this entry's live item in the table's timer heap (at most one; see ConnTrack).
    heap_deadline: float | None = field(default=None, repr=False, compare=False)

    def tuple_for(self, direction: FlowDir) -> FlowTuple:
        return self.original if direction is FlowDir.ORIGINAL else self.reply


class ConnTrack(Generic[ExtT]):
    """The table: add, look up by either tuple, update per packet, expire on `now`."""

    def __init__(self, timeouts: Mapping[TcpConnState, float] = DPVS_TCP_TIMEOUTS) -> None:
        missing = [state.name for state in TcpConnState if state not in timeouts]
        if missing:
            raise ValueError(f"timeouts missing for {', '.join(missing)}")
        self.timeouts: Mapping[TcpConnState, float] = dict(timeouts)
        self._by_tuple: dict[FlowTuple, tuple[ConnEntry[ExtT], FlowDir]] = {}
        self._entries: dict[int, ConnEntry[ExtT]] = {}  # id() -> entry, insertion order
        # Timer heap with one live item per entry. A timer moved later keeps its item, which is re-pushed
        # at the new deadline when it surfaces (so a busy flow does not grow the heap); a timer moved
        # earlier gets a new item and the old one turns stale (skipped when popped).
        self._heap: list[tuple[float, int, ConnEntry[ExtT]]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ConnEntry[ExtT]]:
        return iter(list(self._entries.values()))

    def tuple_in_use(self, flow: FlowTuple) -> bool:
        """Whether any entry already has this tuple in either direction (nf_nat_used_tuple)."""
        return flow in self._by_tuple

    def add(
        self, original: FlowTuple, reply: FlowTuple, ext: ExtT, now: float, *, replace: bool = False
    ) -> ConnEntry[ExtT]:
        """Track a new connection in state NONE; `update` it with its first packet next.

        A tuple already tracked raises TupleClash, unless `replace`: then the older entry holding it is
        removed first (last writer wins).
        """
        for flow in (original, reply):
            found = self._by_tuple.get(flow)
            if found is not None:
                if not replace:
                    raise TupleClash(f"tuple {flow} already tracked")
                self.remove(found[0])
        if original == reply:
            raise TupleClash(f"original and reply tuple are the same: {original}")
        entry: ConnEntry[ExtT] = ConnEntry(
            original=original,
            reply=reply,
            ext=ext,
            created=now,
            deadline=now + self.timeouts[TcpConnState.NONE],
        )
        self._by_tuple[original] = (entry, FlowDir.ORIGINAL)
        self._by_tuple[reply] = (entry, FlowDir.REPLY)
        self._entries[id(entry)] = entry
        self._push(entry)
        return entry

    def lookup(self, flow: FlowTuple) -> tuple[ConnEntry[ExtT], FlowDir] | None:
        """The entry a packet with this tuple belongs to, and its direction."""
        return self._by_tuple.get(flow)

    def update(self, entry: ConnEntry[ExtT], direction: FlowDir, flags: TcpFlags, now: float) -> TcpConnState:
        """Account one packet: state transition (DPVS table), reply/assured bits, timer re-armed."""
        new_state = next_tcp_state(entry.state, direction, flags)
        entry.packets[direction] += 1
        if direction is FlowDir.REPLY:
            entry.seen_reply = True
        if new_state is TcpConnState.ESTABLISHED and entry.seen_reply:
            entry.assured = True
        entry.state = new_state
        self.set_timeout(entry, self.timeouts[new_state], now)
        return new_state

    def set_timeout(self, entry: ConnEntry[ExtT], seconds: float, now: float) -> None:
        """Re-arm an entry's timer to expire `seconds` after `now`."""
        entry.deadline = now + seconds
        if entry.heap_deadline is None or entry.deadline < entry.heap_deadline:
            self._push(entry)

    def remove(self, entry: ConnEntry[ExtT]) -> None:
        """Forget an entry (no-op when already gone)."""
        if self._entries.pop(id(entry), None) is None:
            return
        for flow in (entry.original, entry.reply):
            found = self._by_tuple.get(flow)
            if found is not None and found[0] is entry:
                del self._by_tuple[flow]

    def expire(self, now: float) -> list[ConnEntry[ExtT]]:
        """Remove and return every entry whose deadline is at or before `now`, earliest first."""
        expired: list[ConnEntry[ExtT]] = []
        while self._settle_top() and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)[2]
            entry.heap_deadline = None
            self.remove(entry)
            expired.append(entry)
        return expired

    def next_deadline(self) -> float | None:
        """When the next entry expires, or None with an empty table."""
        return self._heap[0][0] if self._settle_top() else None

    def _settle_top(self) -> bool:
        """Make the heap's top item an exact, live deadline; False when nothing is left."""
        while self._heap:
            deadline, _, entry = self._heap[0]
            if self._entries.get(id(entry)) is not entry or entry.heap_deadline != deadline:
                heapq.heappop(self._heap)  # removed entry, or an item superseded by an earlier one
            elif entry.deadline != deadline:
                heapq.heappop(self._heap)  # the timer moved later since this item was pushed
                self._push(entry)
            else:
                return True
        return False

    def entries(self) -> list[ConnEntry[ExtT]]:
        """Every tracked entry, oldest first."""
        return list(self._entries.values())

    def format_entries(self, now: float) -> str:
        """The table as `conntrack -L` prints it, one entry per line, oldest first."""
        return "\n".join(format_entry(entry, now) for entry in self._entries.values())

    def _push(self, entry: ConnEntry[ExtT]) -> None:
        entry.heap_deadline = entry.deadline
        heapq.heappush(self._heap, (entry.deadline, next(self._counter), entry))


def _format_tuple(flow: FlowTuple) -> str:
    return f"src={flow.src} dst={flow.dst} sport={flow.sport} dport={flow.dport}"


def format_entry(entry: ConnEntry[ExtT], now: float) -> str:
    """One `conntrack -L` line: protocol, number, seconds left, state, both tuples, status bits."""
    remaining = max(0, int(entry.deadline - now))
    parts = [f"{'tcp':<8} 6 {remaining} {entry.state.value}", _format_tuple(entry.original)]
    if not entry.seen_reply:
        parts.append("[UNREPLIED]")
    parts.append(_format_tuple(entry.reply))
    if entry.assured:
        parts.append("[ASSURED]")
    return " ".join(parts)
