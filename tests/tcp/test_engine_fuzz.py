"""Engine fuzzing (issue 7, must-show 2): random segment sequences against a host in every TCP state.

The test plays the peer (B) of one connection on the host under test (A) and throws at it valid
segments, out-of-window ones, forged flag combinations (SYN+FIN, RST+data, ...), odd options, SYN with
data, FIN and RST, interleaved with application calls (read, send, shutdown, close, abort) and timer runs.
After every step:

- nothing raised; every packet the host emits encodes on the wire (build_ipv4);
- SND.UNA <= SND.NXT (modular), the send buffer within `send_buffer`, received but unread plus
  out-of-order bytes within `recv_buffer` (plus one window-scale unit of rounding);
- the byte stream the application read is a prefix of what the peer sent: every segment carries, at
  each sequence number, the byte a fixed table gives for it, so a byte delivered twice, out of order or
  from the wrong offset shows up as a mismatch.

At the end the application closes, the peer goes silent and timers run: every connection reaches CLOSED
and the host holds no connection and no timer.

Budget: UTCP_ENGINE_FUZZ_EXAMPLES (default 25 per starting state), UTCP_ENGINE_FUZZ_STEPS (default 40).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.tcp.helpers import (
    AK,
    FA,
    MASK,
    PEER_ISS,
    S,
    cfg,
    establish_active,
    establish_passive,
    make_host,
    pkt,
    syn_opts,
    ts,
)
from utcp.tcp.connection import Connection
from utcp.tcp.errors import ConnectionFailed, TcpUsageError
from utcp.tcp.host import Host
from utcp.tcp.seq import seq_diff
from utcp.tcp.state import TcpState
from utcp.wire import (
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpOption,
    Timestamps,
    UnknownOption,
    WindowScale,
    build_ipv4,
)

EXAMPLES = int(os.environ.get("UTCP_ENGINE_FUZZ_EXAMPLES", "25"))
STEPS = int(os.environ.get("UTCP_ENGINE_FUZZ_STEPS", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # shrinking a 40-step run can take minutes: only when asked (UTCP_FUZZ_SHRINK=1)
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([Phase.shrink] if os.environ.get("UTCP_FUZZ_SHRINK") else []),
)
# small buffers and few retries: windows close and timers expire within a short run
CONFIG = cfg(
    recv_buffer=8192,
    send_buffer=8192,
    retries=3,
    syn_retries=2,
    synack_retries=2,
    time_wait=5.0,
    fin_wait2_timeout=5.0,
    max_rto=4.0,
)
PERIOD = 1 << 16  # divides 2**32, so the content of a sequence number is consistent across wraparound
TABLE = random.Random(1).randbytes(PERIOD) * 2
TS_MAX = 0xFFFFFFFF


def content(seq: int, n: int) -> bytes:
    """The byte the peer sends at sequence number `seq` onwards (n <= PERIOD)."""
    i = seq % PERIOD
    return TABLE[i : i + n]


class Fixture:
    """The host under test, its connection to the peer, virtual time, and what the app has read."""

    def __init__(self, host: Host, conn: Connection, now: float) -> None:
        self.host = host
        self.conn = conn
        self.now = now
        self.read = bytearray()
        self.tsval = 1000
        self.trace: list[str] = []  # compact log of the steps, for failure messages

    def drain(self) -> None:
        for p in self.host.packets_to_send(self.now):
            build_ipv4(p)  # every packet the engine emits must be encodable
            assert p.src == "198.18.0.1"
        self.host.events()


def _passive() -> Fixture:
    x = establish_passive(CONFIG)
    return Fixture(x.host, x.conn, x.now)


def _passive_bare() -> Fixture:
    """A peer offering no options: no timestamps, SACK or window scaling."""
    x = establish_passive(CONFIG, peer_ts=False, peer_sack=False, peer_ws=None)
    return Fixture(x.host, x.conn, x.now)


def _active() -> Fixture:
    x = establish_active(CONFIG)
    return Fixture(x.host, x.conn, x.now)


def _syn_sent() -> Fixture:
    host = make_host(config=CONFIG)
    conn = host.connect("198.18.0.2", 80, 0.0)
    f = Fixture(host, conn, 0.0)
    f.drain()
    return f


def _syn_received() -> Fixture:
    host = make_host(config=CONFIG)
    host.listen("198.18.0.1", 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.0)
    (conn,) = host.connections()
    f = Fixture(host, conn, 0.0)
    f.drain()
    return f


def _peer(f: Fixture, flags: TcpFlags, *, ack_fin: bool = True) -> None:
    """A valid in-sequence segment from the peer (acking all we sent, or all but our FIN)."""
    conn = f.conn
    ack = conn.snd_nxt if ack_fin else (conn.snd_nxt - 1) & MASK
    opts = ts(f.tsval, conn.tsval_at(f.now)) if conn.negotiated.timestamps else ()
    f.tsval += 1
    f.host.receive(
        pkt(flags, conn.rcv_nxt, ack, window=2048, options=opts, sport=conn.remote[1], dport=conn.local[1]),
        f.now,
    )
    f.drain()


def _fin_wait_1() -> Fixture:
    f = _passive()
    f.conn.shutdown()
    f.drain()
    return f


def _fin_wait_2() -> Fixture:
    f = _fin_wait_1()
    _peer(f, AK)
    return f


def _closing() -> Fixture:
    f = _fin_wait_1()
    _peer(f, FA, ack_fin=False)
    return f


def _time_wait() -> Fixture:
    f = _fin_wait_2()
    _peer(f, FA)
    return f


def _close_wait() -> Fixture:
    f = _active()
    _peer(f, FA)
    return f


def _last_ack() -> Fixture:
    f = _close_wait()
    f.conn.close()
    f.drain()
    return f


SETUPS: dict[str, tuple[TcpState, Callable[[], Fixture]]] = {
    "SYN_SENT": (TcpState.SYN_SENT, _syn_sent),
    "SYN_RECEIVED": (TcpState.SYN_RECEIVED, _syn_received),
    "ESTABLISHED": (TcpState.ESTABLISHED, _passive),
    "ESTABLISHED_no_options": (TcpState.ESTABLISHED, _passive_bare),
    "ESTABLISHED_active": (TcpState.ESTABLISHED, _active),
    "FIN_WAIT_1": (TcpState.FIN_WAIT_1, _fin_wait_1),
    "FIN_WAIT_2": (TcpState.FIN_WAIT_2, _fin_wait_2),
    "CLOSING": (TcpState.CLOSING, _closing),
    "TIME_WAIT": (TcpState.TIME_WAIT, _time_wait),
    "CLOSE_WAIT": (TcpState.CLOSE_WAIT, _close_wait),
    "LAST_ACK": (TcpState.LAST_ACK, _last_ack),
}

u32 = st.integers(0, MASK)
odd_options = st.lists(
    st.one_of(
        st.builds(Mss, st.integers(0, 0xFFFF)),
        st.builds(WindowScale, st.integers(0, 255)),
        st.just(SackPermitted()),
        st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
        st.builds(Timestamps, u32, u32),
        st.builds(UnknownOption, st.integers(9, 253), st.binary(max_size=6)),
        st.just(Nop()),
    ),
    max_size=4,
).map(tuple)


@st.composite
def segment(draw: st.DrawFn, f: Fixture) -> IPv4Packet:
    conn = f.conn
    flags = TcpFlags(
        draw(
            st.sampled_from([0x10, 0x18, 0x11, 0x19, 0x04, 0x14, 0x02, 0x12, 0x03, 0x06, 0x01])
            | st.integers(0, 0x3F)
        )
    )
    rcv_nxt = conn.rcv_nxt
    wnd = max(conn.rcv_wnd, 1)
    seq = draw(
        st.sampled_from(["next", "in", "below", "edge", "any"]).flatmap(
            lambda k: {
                "next": st.just(rcv_nxt),
                "in": st.integers(0, wnd).map(lambda d: (rcv_nxt + d) & MASK),
                "below": st.integers(1, 70_000).map(lambda d: (rcv_nxt - d) & MASK),
                "edge": st.sampled_from(
                    [(rcv_nxt + wnd) & MASK, (rcv_nxt - 1) & MASK, (rcv_nxt + wnd - 1) & MASK]
                ),
                "any": u32,
            }[k]
        )
    )
    snd_una, snd_nxt = conn.snd_una, conn.snd_nxt
    ack = draw(
        st.one_of(
            st.just(snd_nxt),
            st.just(snd_una),
            st.integers(0, max(0, seq_diff(snd_nxt, snd_una))).map(lambda d: (snd_una + d) & MASK),
            st.integers(1, 70_000).map(lambda d: (snd_nxt + d) & MASK),
            st.integers(1, 70_000).map(lambda d: (snd_una - d) & MASK),
            u32,
        )
    )
    n = draw(st.sampled_from([0, 0, 1, 100, 536, 1460]) | st.integers(0, 3000))
    data_seq = (seq + 1) & MASK if flags & TcpFlags.SYN else seq
    payload = content(data_seq, n)
    options: tuple[TcpOption, ...]
    kind = draw(st.sampled_from(["ts", "ts", "none", "odd", "oldts"]))
    if kind == "ts":
        f.tsval = (f.tsval + draw(st.integers(0, 50))) & TS_MAX
        options = ts(f.tsval, conn.tsval_at(f.now))
    elif kind == "oldts":
        options = ts((f.tsval - draw(st.integers(1, 1 << 31))) & TS_MAX, draw(u32))
    elif kind == "odd":
        options = draw(odd_options)
    else:
        options = ()
    window = draw(st.sampled_from([0, 1, 2048, 65535]) | st.integers(0, 0xFFFF))
    return pkt(
        flags,
        seq,
        ack,
        window=window,
        options=options,
        payload=payload,
        sport=conn.remote[1],
        dport=conn.local[1],
    )


def check_invariants(f: Fixture) -> None:
    conn = f.conn
    assert isinstance(conn.state, TcpState)
    assert seq_diff(conn.snd_nxt, conn.snd_una) >= 0, (conn.snd_una, conn.snd_nxt)
    assert len(conn._sbuf) <= conn.config.send_buffer
    held = conn.readable + conn._ofo.size
    assert held <= conn.config.recv_buffer + (1 << conn.negotiated.rcv_wscale), held
    if conn.readable:
        f.read += conn.read(conn.readable)
    if f.read:
        expected = content((conn.irs + 1) & MASK, len(f.read))
        assert bytes(f.read) == expected, ("stream corrupted", len(f.read), conn.irs, f.trace)


def app_call(f: Fixture, which: str) -> None:
    conn = f.conn
    try:
        if which == "send":
            conn.send(b"q" * 1000)
        elif which == "shutdown":
            conn.shutdown()
        elif which == "close":
            conn.close()
        elif which == "abort":
            conn.abort()
    except (TcpUsageError, ConnectionFailed):
        pass  # API misuse in that state, or the connection failed: a defined error, not a crash


def finish(f: Fixture) -> None:
    """The application closes, the peer goes silent: every timer runs out and nothing is left."""
    app_call(f, "close")
    # a fuzzed SYN may have opened another connection (same 4-tuple, after this one died): the
    # application accepts and closes it too, then stops listening
    for lst in f.host.listeners():
        while (other := lst.accept()) is not None:
            other.close()
        lst.close()
    f.drain()
    for _ in range(10_000):
        d = f.host.next_deadline()
        if d is None:
            break
        f.now = max(f.now, d)
        f.host.on_timer(f.now)
        f.drain()
        check_invariants(f)
    assert f.host.next_deadline() is None
    assert f.conn.state is TcpState.CLOSED, f.conn
    assert f.host.connections() == []


@pytest.mark.parametrize("start", list(SETUPS))
@FUZZ
@given(data=st.data())
def test_random_segments_in_every_state_keep_the_invariants(start: str, data: st.DataObject) -> None:
    state, setup = SETUPS[start]
    f = setup()
    assert f.conn.state is state
    check_invariants(f)
    for _ in range(data.draw(st.integers(1, STEPS))):
        action = data.draw(
            st.sampled_from(["seg"] * 6 + ["time", "read", "send", "shutdown", "close", "abort"])
        )
        if action == "seg":
            p = data.draw(segment(f))
            t = p.tcp
            f.trace.append(
                f"{f.conn.state.name} rcv_nxt={f.conn.rcv_nxt} {t.flags!r} seq={t.seq} ack={t.ack} "
                f"len={len(t.payload)} win={t.window} {t.options}"
            )
            f.host.receive(p, f.now)
        elif action == "time":
            f.now += data.draw(st.sampled_from([0.001, 0.05, 0.3, 2.0]))
            d = f.host.next_deadline()
            if d is not None and d <= f.now:
                f.host.on_timer(f.now)
        elif action != "read":
            f.trace.append(f"{f.conn.state.name} app {action}")
            app_call(f, action)
        f.drain()
        check_invariants(f)
    finish(f)


# --- regressions for bugs the fuzzer found ----------------------------------------------------------------


@pytest.mark.parametrize("start", ["CLOSE_WAIT", "CLOSING", "LAST_ACK"])
def test_text_past_the_peers_fin_is_never_queued(start: str) -> None:
    """Found by the fuzzer: after the peer's FIN, a segment starting below RCV.NXT and running past it
    had its new part queued for the user, as bytes after EOF (RFC 9293 3.10.7.4 seventh: CLOSE-WAIT,
    CLOSING, LAST-ACK ignore the segment text)."""
    state, setup = SETUPS[start]
    f = setup()
    conn = f.conn
    assert conn.eof_received and conn.readable == 0
    seq = (conn.rcv_nxt - 10) & MASK
    f.host.receive(
        pkt(
            AK,
            seq,
            conn.snd_una,
            options=ts(f.tsval + 1, 0),
            payload=content(seq, 500),
            dport=conn.local[1],
            sport=conn.remote[1],
        ),
        f.now,
    )
    out = [p.tcp for p in f.host.packets_to_send(f.now)]
    assert conn.readable == 0 and conn.read() == b""
    assert conn.state is state
    assert [s.flags & AK for s in out] == [AK] and out[0].ack == conn.rcv_nxt  # acked, not taken
