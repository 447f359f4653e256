"""The segment-crafting API: `Host.connect(hold_third_ack=True)`, `Connection.craft`,
`Connection.release_third_ack`. Crafting sends exactly the segment asked for and changes no state."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import AK, ISS, PEER_ISS, SA, B, R, S, make_host, none_out, one, pkt, segs, syn_opts
from utcp.tcp.connection import Connection
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.packet import Nop, TcpFlags, Timestamps

PEER_TS = 4242


def _held() -> tuple[Host, Connection]:
    """A client whose SYN-ACK arrived (peer TSval 4242) with the third ACK held."""
    host = make_host()
    conn = host.connect(B, 80, 0.0, hold_third_ack=True)
    assert one(host, 0.0).flags == S
    host.receive(
        pkt(SA, PEER_ISS, ISS + 1, sport=80, dport=conn.local[1], options=syn_opts(tsval=PEER_TS, tsecr=0)),
        0.01,
    )
    return host, conn


def test_hold_third_ack_establishes_but_sends_nothing() -> None:
    host, conn = _held()
    assert conn.state is TcpState.ESTABLISHED and conn.third_ack_held
    none_out(host, 0.01)
    conn.send(b"queued")
    none_out(host, 0.02)  # data waits too
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=80, dport=conn.local[1], payload=b"x"), 0.03)
    none_out(host, 0.5)  # no ACK for the peer's data either
    assert conn.read() == b"x"


def test_release_sends_the_third_ack_then_what_waited() -> None:
    host, conn = _held()
    conn.send(b"queued")
    conn.release_third_ack(0.05)
    out = segs(host, 0.05)
    assert not conn.third_ack_held
    assert out[0].flags & AK and (out[0].seq, out[0].ack) == (ISS + 1, PEER_ISS + 1)
    assert b"".join(s.payload for s in out) == b"queued"
    with pytest.raises(TcpUsageError):
        conn.release_third_ack()


def test_release_without_sending_when_the_ack_was_crafted() -> None:
    host, conn = _held()
    conn.craft(AK, 0.05, tsval=0)
    conn.release_third_ack(0.05, send=False)
    ack = one(host, 0.05)
    assert ack.options == (Nop(), Nop(), Timestamps(0, PEER_TS))


def test_craft_defaults_are_what_the_connection_would_send() -> None:
    host, conn = _held()
    rst = conn.craft(R, 0.07)
    assert one(host, 0.07) == rst
    assert (rst.flags, rst.seq, rst.ack) == (R, ISS + 1, 0)
    assert rst.options == (Nop(), Nop(), Timestamps(conn.tsval_at(0.07), PEER_TS))
    assert rst.window == conn.craft(AK, 0.07).window > 0
    ack = one(host, 0.07)
    assert ack.ack == PEER_ISS + 1


def test_craft_timestamp_and_sequence_knobs() -> None:
    host, conn = _held()
    t = conn.syn_tsval
    assert t is not None
    assert conn.craft(R, 0.1, tsval="none").options == ()
    assert conn.craft(R, 0.1, tsval=0).options == (Nop(), Nop(), Timestamps(0, PEER_TS))
    stale = conn.craft(R, 0.1, tsval=t - 5, tsecr=0)  # T-5 wraps modulo 2^32
    assert stale.options == (Nop(), Nop(), Timestamps((t - 5) & 0xFFFFFFFF, 0))
    odd = conn.craft(R | AK, 0.1, seq=ISS + 1001, ack=123, window=0, options=(Nop(),), payload=b"p")
    assert (odd.seq, odd.ack, odd.window, odd.options, odd.payload) == (ISS + 1001, 123, 0, (Nop(),), b"p")
    assert len(segs(host, 0.1)) == 4


def test_craft_changes_no_state_but_counts_what_it_sends() -> None:
    host, conn = _held()
    conn.release_third_ack(0.02)
    segs(host, 0.02)

    def snapshot() -> tuple[object, ...]:
        return (conn.snd_nxt, conn.snd_una, conn.rcv_nxt, conn.rcv_wnd, host.next_deadline(), conn.state)

    before = snapshot()
    out_segs, out_rsts = host.counters["OutSegs"], host.counters["OutRsts"]
    conn.craft(TcpFlags.PSH | AK, 0.03, payload=b"not in the send buffer")
    conn.craft(R, 0.03, seq=conn.snd_nxt + 10)
    conn.craft(S, 0.03)
    assert len(segs(host, 0.03)) == 3
    assert (
        conn.snd_nxt,
        conn.snd_una,
        conn.rcv_nxt,
        conn.rcv_wnd,
        host.next_deadline(),
        conn.state,
    ) == before
    assert host.counters["OutSegs"] == out_segs + 3
    assert host.counters["OutRsts"] == out_rsts + 1


def test_craft_in_syn_sent_uses_our_own_timestamp_offer() -> None:
    host = make_host()
    conn = host.connect(B, 80, 0.0)
    one(host, 0.0)
    seg = conn.craft(R, 0.2)
    assert seg.seq == ISS + 1 and seg.options == (Nop(), Nop(), Timestamps(conn.tsval_at(0.2), 0))
    assert conn.state is TcpState.SYN_SENT
