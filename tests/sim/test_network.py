"""The virtual-time network: delivery, latency, bandwidth, ordering, routing, captures, loop guards."""

from __future__ import annotations

import dataclasses
import io

import pytest

from utcp.sim.capture import ladder, pcap_bytes
from utcp.sim.impair import Impairment
from utcp.sim.network import Network, SimulationError, ipv4_wire_length
from utcp.sim.nodes import Router, ScriptedNode
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import IPv4Packet, Mss, Nop, Sack, SackPermitted, TcpFlags, TcpSegment, Timestamps
from utcp.wire.pcap import read_pcap

A, B, C = "198.18.0.1", "198.18.0.2", "198.18.0.3"


def pkt(src: str, dst: str, n: int, payload: bytes = b"") -> IPv4Packet:
    seg = TcpSegment(1000, 80, seq=n, ack=0, flags=TcpFlags.ACK, window=65535, payload=payload)
    return IPv4Packet(src, dst, seg, ident=n & 0xFFFF)


def echo(packet: IPv4Packet, now: float) -> list[IPv4Packet]:
    return [dataclasses.replace(packet, src=packet.dst, dst=packet.src)]


def two_nodes(**link: object) -> tuple[Network, ScriptedNode, ScriptedNode]:
    net = Network()
    a, b = ScriptedNode((A,)), ScriptedNode((B,))
    net.add_node("a", a)
    net.add_node("b", b)
    net.link("a", "b", **link)  # type: ignore[arg-type]
    return net, a, b


def test_wire_length_counts_headers_options_and_payload() -> None:
    assert ipv4_wire_length(pkt(A, B, 1)) == 40
    assert ipv4_wire_length(pkt(A, B, 1, b"x" * 100)) == 140
    syn = TcpSegment(
        1, 2, 0, 0, TcpFlags.SYN, 0, options=(Mss(1460), SackPermitted(), Timestamps(1, 0), Nop())
    )
    assert ipv4_wire_length(IPv4Packet(A, B, syn)) == 40 + 20  # 4 + 2 + 10 + 1 = 17 -> 20
    sack = TcpSegment(1, 2, 0, 0, TcpFlags.ACK, 0, options=(Nop(), Nop(), Sack(((1, 2), (3, 4)))))
    assert ipv4_wire_length(IPv4Packet(A, B, sack)) == 40 + 20
    assert ipv4_wire_length(IPv4Packet(A, B, b"abc", protocol=17)) == 23


def test_latency_is_applied_each_way() -> None:
    net, a, b = two_nodes(latency=0.010)
    b.reply = echo
    a.send_at(1.0, pkt(A, B, 1))
    assert net.run_until(lambda: bool(a.received), timeout=5.0)
    assert [t for t, _ in b.received] == [pytest.approx(1.010)]
    assert [t for t, _ in a.received] == [pytest.approx(1.020)]
    assert net.now == pytest.approx(1.020)
    assert net.counters["delivered"] == 2


def test_packets_arrive_in_order_on_a_plain_link() -> None:
    net, a, b = two_nodes(latency=0.005)
    for i in range(100):
        a.send_at(i * 0.0001, pkt(A, B, i))
    assert net.run_until_idle()
    assert [p.tcp.seq for _, p in b.received] == list(range(100))


def test_bandwidth_serialises_and_queue_limit_drops_the_tail() -> None:
    # 1000-byte packets at 8 Mbit/s: 1 ms each on the wire
    net, a, b = two_nodes(latency=0.010, bandwidth=8_000_000, queue_bytes=5_000)
    for i in range(10):
        a.send_now(pkt(A, B, i, b"x" * 960))
    net.run_until_idle()
    times = [t for t, _ in b.received]
    # the first enters the wire at once; each later one waits for the one before; the queue (the packet
    # being sent included) holds at most 5000 bytes, i.e. 5 packets
    assert times == [pytest.approx(0.010 + 0.001 * (k + 1)) for k in range(5)]
    assert net.get_link("a", "b").ab.counters["queue_drops"] == 5
    assert net.counters["dropped_queue"] == 5


def test_impaired_link_loses_and_counts() -> None:
    net, a, b = two_nodes(latency=0.001, impairment=Impairment(loss=0.3, seed=1))
    for i in range(1000):
        a.send_at(i * 0.001, pkt(A, B, i))
    net.run_until_idle()
    link = net.get_link("a", "b")
    assert link.ab.impairment is not None
    assert len(b.received) == 1000 - link.ab.impairment.stats.dropped
    assert 250 < link.ab.impairment.stats.dropped < 350
    assert net.counters["dropped_impairment"] == link.ab.impairment.stats.dropped


def test_impairment_directions_draw_independently() -> None:
    net, a, b = two_nodes(impairment=Impairment(loss=0.5, seed=2))
    for i in range(200):
        a.send_at(i * 0.001, pkt(A, B, i))
        b.send_at(i * 0.001, pkt(B, A, i))
    net.run_until_idle()
    assert {p.tcp.seq for _, p in b.received} != {p.tcp.seq for _, p in a.received}


def test_runs_are_deterministic() -> None:
    def once() -> list[tuple[float, int]]:
        net, a, b = two_nodes(
            latency=0.003, impairment=Impairment(loss=0.1, reorder=0.1, duplicate=0.1, jitter=0.002, seed=7)
        )
        b.reply = echo
        for i in range(300):
            a.send_at(i * 0.0007, pkt(A, B, i))
        net.run_until_idle()
        return [(t, p.tcp.seq) for t, p in a.received]

    assert once() == once()


def test_routes_put_a_router_on_the_path() -> None:
    net = Network(capture=True)
    a, b, r = ScriptedNode((A,)), ScriptedNode((B,)), Router()
    b.reply = echo
    for name, node in (("a", a), ("b", b), ("r", r)):
        net.add_node(name, node)
    net.link("a", "r", latency=0.001)
    net.link("r", "b", latency=0.002)
    net.add_route("a", "198.18.0.0/24", "r")
    net.add_route("b", "0.0.0.0/0", "r")
    a.send_now(pkt(A, B, 1))
    net.run_until_idle()
    assert [t for t, _ in a.received] == [pytest.approx(0.006)]
    assert a.received[0][1].ttl == 62  # two router hops
    assert r.counters["forwarded"] == 2
    sends = [(c.src_node, c.dst_node) for c in net.captures if c.event == "send"]
    assert sends == [("a", "r"), ("r", "b"), ("b", "r"), ("r", "a")]


def test_longest_prefix_wins() -> None:
    net = Network()
    for name, node in (("a", ScriptedNode((A,))), ("b", ScriptedNode((B,))), ("r", Router())):
        net.add_node(name, node)
    net.link("a", "r")
    net.link("a", "b")
    net.add_route("a", "0.0.0.0/0", "r")
    net.add_route("a", "198.18.0.2/32", "b")
    assert net.next_hop("a", B) == "b"
    assert net.next_hop("a", C) == "r"
    assert net.next_hop("b", C) is None


def test_unroutable_and_self_addressed_packets() -> None:
    net, a, b = two_nodes()
    a.send_now(pkt(A, C, 1))  # nobody owns C, no route
    a.send_now(pkt(A, A, 2))  # the node's own address: it delivers to itself, the network does not
    net.run_until_idle()
    assert net.counters["no_route"] == 1
    assert net.counters["loopback"] == 1
    assert not a.received
    assert not b.received


def test_ttl_expiry_at_a_router() -> None:
    net = Network()
    a, b, r = ScriptedNode((A,)), ScriptedNode((B,)), Router()
    for name, node in (("a", a), ("b", b), ("r", r)):
        net.add_node(name, node)
    net.link("a", "r")
    net.link("r", "b")
    net.add_route("a", "0.0.0.0/0", "r")
    a.send_now(dataclasses.replace(pkt(A, B, 1), ttl=1))
    net.run_until_idle()
    assert r.counters["ttl_exceeded"] == 1
    assert not b.received


def test_topology_errors() -> None:
    net = Network()
    net.add_node("a", ScriptedNode((A,)))
    with pytest.raises(SimulationError):
        net.add_node("a", ScriptedNode((B,)))
    with pytest.raises(SimulationError):
        net.add_node("x", ScriptedNode((A,)))  # address already owned
    net.add_node("b", ScriptedNode((B,)))
    with pytest.raises(SimulationError):
        net.link("a", "zz")
    with pytest.raises(SimulationError):
        net.link("a", "a")
    net.link("a", "b")
    with pytest.raises(SimulationError):
        net.link("b", "a")
    net.add_node("c", ScriptedNode((C,)))
    with pytest.raises(SimulationError):
        net.add_route("a", "0.0.0.0/0", "c")  # not a neighbour


def test_run_for_advances_exactly_and_fires_timers_on_the_way() -> None:
    net, a, b = two_nodes(latency=0.5)
    a.send_at(2.0, pkt(A, B, 1))
    net.run_for(1.0)
    assert net.now == 1.0
    assert not b.received
    net.run_for(2.0)
    assert net.now == 3.0
    assert [t for t, _ in b.received] == [2.5]


def test_run_until_times_out_and_idle_network_stops() -> None:
    net, a, _b = two_nodes()
    assert not net.run_until(lambda: bool(a.received), timeout=10.0)
    assert net.now == 10.0
    assert net.run_until_idle()
    assert net.next_event_time() is None


def test_step_returns_false_when_idle() -> None:
    net, a, b = two_nodes(latency=1.0)
    a.send_now(pkt(A, B, 1))
    assert net.step()  # to t=1.0, the arrival
    assert net.now == 1.0 and len(b.received) == 1
    assert not net.step()


class PingPong(ScriptedNode):
    """Answers every packet at once: over a zero-latency link that is an endless loop at one instant."""


def test_zero_time_loop_is_caught() -> None:
    net = Network(max_iterations_per_instant=100)
    a, b = PingPong((A,), reply=echo), PingPong((B,), reply=echo)
    net.add_node("a", a)
    net.add_node("b", b)
    net.link("a", "b")
    a.send_now(pkt(A, B, 1))
    with pytest.raises(SimulationError, match="no progress"):
        net.run_for(1.0)


class StuckTimer(ScriptedNode):
    def next_deadline(self) -> float | None:
        return 0.5  # never moves, even after on_timer


def test_stuck_deadline_is_caught() -> None:
    net = Network(max_iterations_per_instant=50)
    net.add_node("s", StuckTimer((A,)))
    with pytest.raises(SimulationError, match=r"stuck in the past on \['s'\]"):
        net.run_for(1.0)


def test_endless_activity_hits_the_step_guard() -> None:
    net = Network(max_steps=1000)
    a, b = ScriptedNode((A,), reply=echo), ScriptedNode((B,), reply=echo)
    net.add_node("a", a)
    net.add_node("b", b)
    net.link("a", "b", latency=0.001)
    a.send_now(pkt(A, B, 1))
    with pytest.raises(SimulationError, match="steps"):
        net.run_until_idle(timeout=1e9)


def test_hooks_run_every_round() -> None:
    net, a, _b = two_nodes(latency=0.1)
    seen: list[float] = []
    net.add_hook(seen.append)
    a.send_at(1.0, pkt(A, B, 1))
    net.run_until_idle()
    assert 1.0 in seen and pytest.approx(1.1) in seen
    assert seen == sorted(seen)


def test_capture_records_send_drop_and_deliver() -> None:
    net, a, b = two_nodes(latency=0.01, impairment=Impairment(loss=0.5, seed=3), capture=True)
    for i in range(50):
        a.send_at(i * 0.001, pkt(A, B, i))
    net.run_until_idle()
    events = [c.event for c in net.captures]
    assert events.count("send") == 50
    assert events.count("drop") + events.count("deliver") == 50
    assert events.count("deliver") == len(b.received)
    drops = [c for c in net.captures if c.event == "drop"]
    assert drops and all(c.reason == "impairment" for c in drops)


def test_wire_roundtrip_delivers_parsed_packets_and_drops_unparsable_ones() -> None:
    net = Network(wire_roundtrip=True)
    a, b = ScriptedNode((A,)), ScriptedNode((B,))
    net.add_node("a", a)
    net.add_node("b", b)
    net.link("a", "b", latency=0.001)
    opts = (Nop(), Nop(), Timestamps(7, 9), Nop(), Nop(), Sack(((100, 200),)))
    good = IPv4Packet(
        A, B, TcpSegment(1, 2, 3, 4, TcpFlags.ACK | TcpFlags.PSH, 5, options=opts, payload=b"hi")
    )
    bad = IPv4Packet(A, B, b"xx")  # protocol TCP, payload too short for a TCP header
    a.send_now(good)
    a.send_now(bad)
    net.run_until_idle()
    assert [p for _, p in b.received] == [good]
    assert net.counters["dropped_wire_error"] == 1


def test_capture_to_pcap_and_ladder() -> None:
    net, a, b = two_nodes(latency=0.25, capture=True)
    b.reply = echo
    a.send_at(1.5, pkt(A, B, 42, b"hello"))
    net.run_until_idle()
    data = pcap_bytes(net.captures)
    records = list(read_pcap(io.BytesIO(data)))
    assert [t for t, _ in records] == [1.5, 1.75]
    assert parse_ipv4(records[0][1]) == pkt(A, B, 42, b"hello")
    assert parse_ipv4(records[1][1]).dst == A
    text = ladder(net.captures, "a", "b")
    lines = text.splitlines()
    assert len(lines) == 2
    assert "a ------> b" in lines[0] and "198.18.0.1.1000 > 198.18.0.2.80" in lines[0]
    assert "a <------ b" in lines[1] and "length 5" in lines[1]
