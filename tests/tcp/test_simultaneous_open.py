"""Simultaneous open (RFC 9293 3.5 figure 8, MUST-10): two hosts connect() to each other and the SYNs
cross. Both reach ESTABLISHED after the 4 handshake segments; as Linux >= 6.11, SYN-RECEIVED accepts the
crossing SYN-ACK directly. Each side then acknowledges the SYN-ACK, a duplicate of the SYN it already has,
with an immediate ACK carrying a D-SACK (Linux tcp_data_queue), as in the self-connect capture."""

from __future__ import annotations

from tests.tcp.helpers import AK, SA, A, B, S, make_host, state
from utcp.tcp.state import TcpState
from utcp.wire.packet import Sack


def test_crossing_syns_establish_both_sides_in_four_segments() -> None:
    a = make_host(A, iss=1000)
    b = make_host(B, iss=9000)
    ca = a.connect(B, 5002, 0.0, local_port=5001)
    cb = b.connect(A, 5001, 0.0, local_port=5002)
    syn_a = a.packets_to_send(0.0)
    syn_b = b.packets_to_send(0.0)
    assert [p.tcp.flags for p in syn_a + syn_b] == [S, S]
    # the SYNs cross
    a.receive(syn_b[0], 0.01)
    b.receive(syn_a[0], 0.01)
    sa_a = a.packets_to_send(0.01)
    sa_b = b.packets_to_send(0.01)
    assert [(p.tcp.flags, p.tcp.seq, p.tcp.ack) for p in sa_a] == [(SA, 1000, 9001)]
    assert [(p.tcp.flags, p.tcp.seq, p.tcp.ack) for p in sa_b] == [(SA, 9000, 1001)]
    assert ca.state is cb.state is TcpState.SYN_RECEIVED
    # the SYN-ACKs cross too
    a.receive(sa_b[0], 0.02)
    b.receive(sa_a[0], 0.02)
    assert state(ca) is state(cb) is TcpState.ESTABLISHED
    ack_a = a.packets_to_send(0.02)
    ack_b = b.packets_to_send(0.02)
    assert [(p.tcp.flags, p.tcp.seq, p.tcp.ack) for p in ack_a] == [(AK, 1001, 9001)]
    assert [(p.tcp.flags, p.tcp.seq, p.tcp.ack) for p in ack_b] == [(AK, 9001, 1001)]
    assert Sack(((9000, 9001),)) in ack_a[0].tcp.options
    # the D-SACK ACKs change nothing
    a.receive(ack_b[0], 0.03)
    b.receive(ack_a[0], 0.03)
    assert a.packets_to_send(0.03) == [] and b.packets_to_send(0.03) == []
    assert ca.negotiated.timestamps and cb.negotiated.sack
    # and data flows
    ca.send(b"ping")
    for p in a.packets_to_send(0.04):
        b.receive(p, 0.05)
    assert cb.read(10) == b"ping"
    assert a.counters["ActiveOpens"] == b.counters["ActiveOpens"] == 1
