"""SCENARIOS.md B as scripts a utcp *client* plays with the crafting API (`Host.connect(hold_third_ack=True)`,
`Connection.craft`, `Connection.release_third_ack`), against any server: a utcp host on virtual time
(`run_row_sim`), the Linux kernel or a utcp host over TUN (interop/scenario_b.py,
tests/kernel/test_policy_b_kernel.py). What comes back is normalised (`Observed`) so one expectation
(`Expect`, the rows in interop/b_table.py) fits every server.

Every row starts the same way: the client sends SYN(TS=T) and receives the SYN-ACK, and then holds its third
ACK; the steps decide what goes out next. The client's TS clock has a fixed offset so T lies in
(2^30, 2^31): a TSval of 0 is then "older" than T in modular arithmetic, as in the field report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from utcp.policy import linux_counter_name, resolve_policy
from utcp.sim.network import Network
from utcp.tcp.clock import TimestampClock
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import Mss, Nop, SackPermitted, TcpFlags, TcpOption, TcpSegment, Timestamps, WindowScale

CLIENT_TS_OFFSET = 1_500_000_000  # T in (2^30, 2^31): TSval 0 is older than T (s32 arithmetic)
STEP_GAP = 0.05  # seconds between crafted segments: replies (and a 40 ms delayed ACK) arrive in between
DATA = b"hello"

# The counters every row compares (deltas over the whole row; unlisted ones must not move). Linux names
# without the Tcp/TcpExt prefix: linux_counter_name() gives nstat's spelling.
COMPARED = (
    "PAWSEstab",
    "PAWSOldAck",
    "TSEcrRejected",
    "TCPChallengeACK",
    "TCPACKSkippedChallenge",
    "TCPSYNChallenge",
    "EmbryonicRsts",
    "EstabResets",
    "AttemptFails",
    "PassiveOpens",
    "OutRsts",
    "InErrs",
    "TCPACKSkippedPAWS",
    "TCPACKSkippedSynRecv",
    "TCPACKSkippedSeq",
)

StepKind = Literal["ack", "rst", "syn", "data", "bareack", "wait"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the client does. `ts`: "now" (our clock), "none" (no option), "T" (the SYN's TSval),
    "T-k" (k ticks older than the SYN's) or a number. `seq`: offset from the client's next sequence number
    (0: exactly the server's rcv_nxt)."""

    kind: StepKind
    ts: str = "now"
    seq: int = 0
    seconds: float = 0.0


def ack() -> Step:
    """The third ACK, released from hold: as built when the SYN-ACK arrived (TSecr = the SYN-ACK's TSval),
    as if the network had held it."""
    return Step("ack")


def rst(ts: str = "now", seq: int = 0) -> Step:
    return Step("rst", ts, seq)


def syn(ts: str = "now", seq: int = 0) -> Step:
    return Step("syn", ts, seq)


def data(ts: str = "now") -> Step:
    return Step("data", ts)


def bare_ack(ts: str = "now") -> Step:
    """A crafted pure ACK at the next seq; TSecr is the latest TSval the client saw."""
    return Step("bareack", ts)


def wait(seconds: float) -> Step:
    return Step("wait", seconds=seconds)


@dataclass(frozen=True, slots=True)
class Reply:
    """A segment the server sent after its SYN-ACK. `seq`: "snd" is the server's ISN+1, "0" a zero seq.
    `ack`: None without the ACK flag, else "rcv" (the client's ISN+1) or "rcv+N". `ts`: carries a
    timestamp option."""

    flags: str
    seq: str = "snd"
    ack: str | None = "rcv"
    ts: bool = False

    def text(self) -> str:
        """One short line for a report: `R seq=snd`, `A seq=snd ack=rcv+5 TS`."""
        ack = f" ack={self.ack}" if self.ack is not None else ""
        return f"{self.flags} seq={self.seq}{ack}" + (" TS" if self.ts else "")


RST_TO_ACK = Reply("R", "snd", None, False)  # the listener answers a late ACK: <SEQ=SEG.ACK><CTL=RST>
CHALLENGE = Reply("A", "snd", "rcv", True)  # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, with timestamps
DUPACK = CHALLENGE


# The outcome words (the summary table's cell text). `classify` names an observed run with the same words.
RESET = "reset"  # the RST (or SYN, rfc793) closed the server's side: no leftover
LEFTOVER = "leftover"  # the request socket dropped the RST and the late ACK established: a leftover
CHALLENGED = "challenge ACK"  # RFC 5961: the segment was answered with an ACK; the connection survives
DROPPED = "dropped"  # PAWS (RFC 7323 5.3) on an established connection: dropped with a duplicate ACK
ACCEPTED = "accepted"  # taken as is (no PAWS): the connection survives
CLOSED = "closed"  # nothing counted, nothing left (never expected: a run that did not happen)
OUTCOMES = (RESET, LEFTOVER, CHALLENGED, DROPPED, ACCEPTED, CLOSED)


@dataclass(frozen=True, slots=True)
class Expect:
    """What the server does: the outcome word, its replies in order, whether an ESTABLISHED socket is left
    for the client's tuple, and the counter deltas (non-zero ones; every other COMPARED counter stays put)."""

    outcome: str
    replies: tuple[Reply, ...]
    leftover: bool
    counters: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {OUTCOMES}")

    def values(self) -> dict[str, Any]:
        """The expectation as an interop cell compares it (JSON-able; counters by nstat name)."""
        return {
            "outcome": self.outcome,
            "leftover": self.leftover,
            "counters": {linux_counter_name(k): v for k, v in sorted(self.counters.items()) if v},
            "replies": [reply.text() for reply in self.replies],
        }


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    what: str
    steps: tuple[Step, ...]
    expect: Mapping[str, Expect]  # by preset name
    note: str = ""

    @property
    def established_first(self) -> bool:
        """The held third ACK goes out before anything crafted: the row is about an ESTABLISHED socket."""
        return bool(self.steps) and self.steps[0].kind == "ack"


@dataclass(frozen=True, slots=True)
class Observed:
    replies: tuple[Reply, ...]
    leftover: bool
    counters: dict[str, int]

    def mismatches(self, expect: Expect) -> list[str]:
        out = []
        if self.replies != expect.replies:
            out.append(f"replies {self.replies} != expected {expect.replies}")
        if self.leftover != expect.leftover:
            out.append(f"leftover ESTABLISHED {self.leftover} != expected {expect.leftover}")
        want = {k: expect.counters.get(k, 0) for k in COMPARED}
        got = {k: self.counters.get(k, 0) for k in COMPARED}
        diff = {k: (got[k], want[k]) for k in COMPARED if got[k] != want[k]}
        if diff:
            out.append(f"counter deltas (got, expected): {diff}")
        return out

    def values(self, established_first: bool) -> dict[str, Any]:
        """What a run saw, in `Expect.values`'s shape, its outcome named by `classify`."""
        return {
            "outcome": classify(self, established_first),
            "leftover": self.leftover,
            "counters": {linux_counter_name(k): v for k, v in sorted(self.counters.items()) if v},
            "replies": [reply.text() for reply in self.replies],
        }


def classify(observed: Observed | Expect, established_first: bool) -> str:
    """The outcome word for what a server did, from its counters and end state. `established_first`: the
    row completes the handshake before its crafted segments (rows 1, E...), so a PAWS drop there is an
    ordinary drop, not the request socket ignoring an RST."""
    counters = observed.counters

    def moved(*names: str) -> bool:
        return any(counters.get(name, 0) for name in names)

    if moved("EmbryonicRsts", "EstabResets"):
        return RESET
    if moved("TCPChallengeACK", "TCPSYNChallenge"):
        return CHALLENGED
    if moved("PAWSEstab"):
        return DROPPED if established_first or not observed.leftover else LEFTOVER
    return ACCEPTED if observed.leftover else CLOSED


# --- the client side -----------------------------------------------------------------------------------


def tsval_for(conn: Connection, spec: str, now: float) -> int | Literal["auto", "none"]:
    t = conn.syn_tsval
    assert t is not None, "the client sent its SYN without timestamps"
    if spec == "now":
        return "auto"
    if spec == "none":
        return "none"
    if spec == "T":
        return t
    if spec.startswith("T-"):
        return (t - int(spec[2:])) & 0xFFFFFFFF
    return int(spec)


def perform(conn: Connection, step: Step, now: float) -> None:
    """Carry out one step on the client connection (never a "wait": the runner sleeps)."""
    seq = (conn.snd_nxt + step.seq) & 0xFFFFFFFF
    tsval = tsval_for(conn, step.ts, now)
    if step.kind == "ack":
        conn.release_third_ack(now)
    elif step.kind == "rst":
        conn.craft(TcpFlags.RST, now, seq=seq, window=0, tsval=tsval)
    elif step.kind == "syn":
        opts: tuple[TcpOption, ...] = (Mss(1460), SackPermitted())
        if tsval != "none":
            opts += (Timestamps(conn.tsval_at(now) if tsval == "auto" else tsval, 0),)
        opts += (Nop(), WindowScale(7))
        conn.craft(TcpFlags.SYN, now, seq=seq, options=opts)
    elif step.kind == "data":
        conn.craft(TcpFlags.PSH | TcpFlags.ACK, now, seq=seq, tsval=tsval, payload=DATA)
    elif step.kind == "bareack":
        conn.craft(TcpFlags.ACK, now, seq=seq, tsval=tsval)
    else:
        raise ValueError(f"not a crafting step: {step}")


def flag_letters(flags: TcpFlags) -> str:
    return "".join(c for bit, c in ((TcpFlags.SYN, "S"), (TcpFlags.FIN, "F"), (TcpFlags.RST, "R"),
                                    (TcpFlags.PSH, "P"), (TcpFlags.ACK, "A")) if flags & bit)  # fmt: skip


def normalise(seg: TcpSegment, client_iss: int, server_iss: int) -> Reply:
    seq = (seg.seq - server_iss - 1) & 0xFFFFFFFF
    seq_s = "snd" if seq == 0 else ("0" if seg.seq == 0 else f"snd{seq:+d}")
    ack_s: str | None = None
    if seg.flags & TcpFlags.ACK:
        rel = (seg.ack - client_iss - 1) & 0xFFFFFFFF
        rel = rel - (1 << 32) if rel >= 1 << 31 else rel
        ack_s = "rcv" if rel == 0 else f"rcv{rel:+d}"
    return Reply(flag_letters(seg.flags), seq_s, ack_s, seg.option(Timestamps) is not None)


# --- a utcp server on virtual time ---------------------------------------------------------------------

CLIENT = "198.18.0.1"
SERVER = "198.18.0.2"
PORT = 8000


def client_clock(now: float) -> TimestampClock:
    """The crafting client's TS clock: TSval CLIENT_TS_OFFSET at `now`, so T lies in (2^30, 2^31) for the
    rows to come whatever the runtime's clock reads."""
    ticks = TimestampClock(offset_mode="zero").ticks(now)
    return TimestampClock(offset_mode="fixed", fixed_offset=(CLIENT_TS_OFFSET - ticks) & 0xFFFFFFFF)


Record = Callable[[str, bytes, float], None]  # (link, raw IPv4 packet, time): interop's CellContext.record


def run_row_sim(row: Row, preset: str, record: Record | None = None) -> tuple[Observed, Host]:
    """Play `row` against a utcp server with policy `preset` (a preset name or package.module:Name).
    `record` gets every packet delivered on the link (virtual time), for a ladder and a pcap."""
    net = Network(capture=True)
    client = Host([CLIENT], seed=1, ts_clock=client_clock(net.now))
    server = Host([SERVER], seed=2, policy=resolve_policy(preset))
    net.add_node("client", client)
    net.add_node("server", server)
    net.link("client", "server", latency=0.001)
    server.listen(SERVER, PORT)
    before = Counter(server.counters)
    conn = client.connect(SERVER, PORT, net.now, hold_third_ack=True)
    assert net.run_until(lambda: conn.third_ack_held, 5.0), "no SYN-ACK"
    start = len(net.captures)
    for step in row.steps:
        if step.kind == "wait":
            net.run_for(step.seconds)
            continue
        perform(conn, step, net.now)
        net.run_for(STEP_GAP)
    replies = tuple(
        normalise(rec.packet.tcp, conn.iss, conn.irs)
        for rec in net.captures[start:]
        if rec.event == "deliver" and rec.src_node == "server" and not rec.packet.tcp.flags & TcpFlags.SYN
    )
    leftover = any(c.state is TcpState.ESTABLISHED and c.remote == conn.local for c in server.connections())
    counters = {k: server.counters[k] - before[k] for k in COMPARED}
    if record is not None:
        for rec in net.captures:
            if rec.event == "deliver":
                record(rec.link, build_ipv4(rec.packet), rec.time)
    return Observed(replies, leftover, counters), server
