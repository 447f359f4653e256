"""The host: demultiplexing, listeners, closed ports (RFC 9293 3.10.7.1), bytes in, ports, timers."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PEER_ISS,
    RA,
    SA,
    A,
    B,
    Pump,
    R,
    S,
    make_host,
    none_out,
    one,
    pkt,
    segs,
    state,
)
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.events import SegmentDropped
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import IPv4Packet


def test_segments_are_demultiplexed_by_four_tuple() -> None:
    host = make_host()
    lst = host.listen(A, 80)
    for port in (1001, 1002):
        host.receive(pkt(S, PEER_ISS + port, sport=port), 0.0)
        host.receive(pkt(AK, PEER_ISS + port + 1, ISS + 1, sport=port), 0.01)
    c1, c2 = lst.accept(), lst.accept()
    assert c1 is not None and c2 is not None
    host.receive(pkt(AK, PEER_ISS + 1002 + 1, ISS + 1, sport=1002, payload=b"two"), 0.02)
    host.receive(pkt(AK, PEER_ISS + 1001 + 1, ISS + 1, sport=1001, payload=b"one"), 0.02)
    assert (c1.read(), c2.read()) == (b"one", b"two")


def test_counters_are_a_counter_whose_stores_stay_dicts() -> None:
    # a Counter for readers (a name never counted reads 0); its item assignment is dict's C slot, which a
    # Python-level __delitem__ (Counter's own) would replace with a slow generic one for every packet
    c = make_host().counters
    assert isinstance(c, Counter) and c["NeverCounted"] == 0 and "NeverCounted" not in c
    assert type(c).__delitem__ is dict.__delitem__ and type(c).__setitem__ is dict.__setitem__
    c["InSegs"] += 2
    assert c["InSegs"] == 2


def test_closed_port_syn_draws_rst_ack_with_ack_equal_seq_plus_len() -> None:
    host = make_host()
    host.receive(pkt(S, 777, payload=b"abc"), 0.0)
    rst = one(host, 0.0)
    assert (rst.flags, rst.seq, rst.ack, rst.window, rst.options) == (RA, 0, 777 + 4, 0, ())
    assert host.counters["OutRsts"] == 1
    assert any(isinstance(e, SegmentDropped) for e in host.events())


def test_closed_port_ack_draws_rst_with_seq_equal_ack() -> None:
    host = make_host()
    host.receive(pkt(AK, 777, 4242), 0.0)
    rst = one(host, 0.0)
    assert (rst.flags, rst.seq, rst.ack) == (R, 4242, 0)


def test_closed_port_rst_is_never_answered() -> None:
    host = make_host()
    host.receive(pkt(RA, 777, 4242), 0.0)
    none_out(host, 0.0)


def test_closed_port_can_drop_silently() -> None:
    host = make_host(closed_port_reply="drop")
    host.receive(pkt(S, 777), 0.0)
    none_out(host, 0.0)
    assert host.counters["OutRsts"] == 0


def test_packet_for_another_address_is_dropped() -> None:
    host = make_host()
    host.listen("0.0.0.0", 80)
    host.receive(pkt(S, 1, dst="198.18.9.9"), 0.0)
    none_out(host, 0.0)
    [ev] = host.events()
    assert isinstance(ev, SegmentDropped)


def test_bytes_are_parsed_and_bad_ones_counted() -> None:
    host = make_host()
    host.listen(A, 80)
    raw = build_ipv4(pkt(S, PEER_ISS))
    host.receive(raw, 0.0)
    assert one(host, 0.0).flags == SA
    bad = bytearray(build_ipv4(pkt(S, PEER_ISS, sport=2)))
    bad[-1] ^= 0xFF  # corrupt the TCP checksum
    host.receive(bytes(bad), 0.0)
    host.receive(b"\x45\x00", 0.0)
    none_out(host, 0.0)
    assert host.counters["InCsumErrors"] == 1
    assert host.counters["InErrs"] == 2


def test_non_tcp_payload_is_dropped() -> None:
    host = make_host()
    host.receive(IPv4Packet(B, A, b"\x00" * 8, protocol=17), 0.0)
    none_out(host, 0.0)
    assert host.counters["InSegs"] == 0


def test_listen_conflicts_are_usage_errors() -> None:
    host = make_host()
    host.listen(A, 80)
    with pytest.raises(TcpUsageError):
        host.listen(A, 80)
    with pytest.raises(TcpUsageError):
        host.listen("0.0.0.0", 80)
    with pytest.raises(TcpUsageError):
        host.listen("203.0.113.1", 81)


def test_listen_on_port_zero_picks_a_port() -> None:
    host = make_host()
    lst = host.listen(A, 0)
    assert 40000 <= lst.port <= 40999


def test_ephemeral_ports_give_unique_four_tuples() -> None:
    host = make_host()
    ports = {host.connect(B, 80, 0.0).local[1] for _ in range(5)}
    assert len(ports) == 5
    with pytest.raises(TcpUsageError):
        host.connect(B, 80, 0.0, local_port=min(ports))


def test_the_default_port_allocator_is_linux_like_and_seeded() -> None:
    h1 = Host([A], seed=5)
    h2 = Host([A], seed=5)
    p1 = [h1.connect(B, 80, 0.0).local[1] for _ in range(3)]
    p2 = [h2.connect(B, 80, 0.0).local[1] for _ in range(3)]
    assert p1 == p2
    assert all(32768 <= p <= 60999 and p % 2 == 0 for p in p1)  # connect() scans even ports first
    assert h1.bind_port(A) % 2 == 1  # bind(0) prefers the other parity


def test_the_default_isn_is_seeded_and_differs_per_tuple() -> None:
    h1 = Host([A], seed=5)
    h2 = Host([A], seed=5)
    i1 = [h1.connect(B, p, 1.0, local_port=5000).iss for p in (80, 81)]
    i2 = [h2.connect(B, p, 1.0, local_port=5000).iss for p in (80, 81)]
    assert i1 == i2 and i1[0] != i1[1]


def test_next_deadline_is_the_earliest_over_connections() -> None:
    host = make_host()
    host.connect(B, 80, 0.0)
    host.connect(B, 81, 0.5)
    segs(host, 0.5)
    assert host.next_deadline() == 1.0
    host.on_timer(1.0)
    assert [s.dst_port for s in segs(host, 1.0)] == [80]
    assert host.next_deadline() == 1.5


def test_a_host_connects_to_its_own_listener() -> None:
    host = make_host()
    lst = host.listen(A, 80)
    client = host.connect(A, 80, 0.0)
    assert host.packets_to_send(0.0) == []  # delivered internally
    server = lst.accept()
    assert server is not None
    assert client.state is server.state is TcpState.ESTABLISHED
    client.send(b"to myself")
    host.packets_to_send(0.01)
    assert server.read() == b"to myself"
    assert len(host.connections()) == 2


def test_two_hosts_exchange_and_close_cleanly() -> None:
    a = make_host(A)
    b = make_host(B, iss=9000)
    lst = b.listen(B, 80)
    pump = Pump([a, b])
    c = a.connect(B, 80, 0.0)
    pump.run(1.0, stop=lambda: lst.pending > 0)
    s = lst.accept()
    assert s is not None
    c.send(b"ping")
    pump.run(2.0, stop=lambda: s.readable > 0)
    assert s.read() == b"ping"
    s.send(b"pong")
    s.shutdown()
    pump.run(3.0, stop=lambda: c.eof_received)
    assert c.read() == b"pong"
    c.close()
    pump.run(5.0)
    assert c.state is TcpState.CLOSED  # LAST-ACK, acked
    assert s.state is TcpState.TIME_WAIT  # the server sent the first FIN
    assert a.counters["ActiveOpens"] == 1 and b.counters["PassiveOpens"] == 1
    pump.run(100.0)
    assert state(s) is TcpState.CLOSED
    assert a.connections() == [] and b.connections() == []
    assert a.next_deadline() is None and b.next_deadline() is None


def test_time_wait_tuple_is_reused_by_a_new_syn_end_to_end() -> None:
    a = make_host(A)
    b = make_host(B, iss=9000)
    lst = b.listen(B, 80)
    pump = Pump([a, b])
    c = a.connect(B, 80, 0.0, local_port=4444)
    pump.run(1.0, stop=lambda: lst.pending > 0)
    s = lst.accept()
    assert s is not None
    s.close()  # the server closes first: its side ends in TIME-WAIT
    pump.run(1.5)
    c.close()
    pump.run(2.0)
    assert s.state is TcpState.TIME_WAIT
    a2 = make_host(A, iss=2_000_000_000)  # a new client incarnation reusing the 4-tuple, higher ISN
    pump.hosts[0] = a2
    c2 = a2.connect(B, 80, pump.now, local_port=4444)
    pump.run(pump.now + 1.0, stop=lambda: lst.pending > 0)
    assert c2.state is TcpState.ESTABLISHED
    s2 = lst.accept()
    assert s2 is not None and s2 is not s


def test_malformed_input_never_raises() -> None:
    host = make_host()
    host.listen(A, 80)
    for blob in (b"", b"\xff" * 40, bytes(range(60))):
        host.receive(blob, 0.0)
    none_out(host, 0.0)
