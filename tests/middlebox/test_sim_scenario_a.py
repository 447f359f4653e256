"""SCENARIOS.md A end to end on virtual time: utcp hosts, the FullNAT LB and the RS-side TOA box in
utcp.sim, wired through `MiddleboxNode`.

client 198.18.0.1 -- lb (VIP 198.18.0.100, LIP 198.19.0.1) -- toa -- rs 198.19.0.2
The client's direct packets to the RS cross the LB node unchanged (it is their router) and the toa box.
"""

from __future__ import annotations

from dataclasses import dataclass

from utcp.middlebox import (
    FullNat,
    FullNatConfig,
    RealServer,
    RsToa,
    RsToaConfig,
    TcpConnState,
    ToaMode,
    VirtualService,
)
from utcp.middlebox.node import MiddleboxNode, from_networks
from utcp.sim.network import Network
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.packet import TcpFlags

CLIENT, VIP, LIP, RS = "198.18.0.1", "198.18.0.100", "198.19.0.1", "198.19.0.2"
VPORT, RSPORT, CPORT = 3306, 3269, 61902


@dataclass
class Lab:
    net: Network
    client: Host
    rs: Host
    lb: FullNat
    toa: RsToa


def build(mode: ToaMode) -> Lab:
    net = Network(capture=True, wire_roundtrip=True)
    client = Host([CLIENT], seed=1)
    rs = Host([RS], seed=2)
    service = VirtualService(VIP, VPORT, (RealServer(RS, RSPORT),))
    lb = FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=3))
    toa = RsToa(RsToaConfig(mode=mode))
    net.add_node("client", client)
    net.add_node("lb", MiddleboxNode(lb, from_networks(["198.18.0.0/24"]), (VIP, LIP)))
    net.add_node("toa", MiddleboxNode(toa, from_networks([RS], by="dst")))
    net.add_node("rs", rs)
    net.link("client", "lb", latency=0.001)
    net.link("lb", "toa", latency=0.001)
    net.link("toa", "rs", latency=0.0005)
    net.add_route("client", "0.0.0.0/0", "lb")
    net.add_route("lb", f"{RS}/32", "toa")
    net.add_route("toa", "0.0.0.0/0", "lb")
    net.add_route("toa", f"{RS}/32", "rs")
    net.add_route("rs", "0.0.0.0/0", "toa")
    return Lab(net, client, rs, lb, toa)


def test_a_connection_through_fullnat_and_toa_carries_data_both_ways() -> None:
    lab = build(ToaMode.GETPEERNAME)
    listener = lab.rs.listen(RS, RSPORT)
    conn = lab.client.connect(VIP, VPORT, lab.net.now)
    lab.net.run_for(0.1)
    server = listener.accept()
    assert server is not None and conn.state is TcpState.ESTABLISHED
    assert server.remote[0] == LIP  # the RS stack sees the LB's local address ...
    assert lab.toa.client_address(server.local, server.remote) == conn.local  # ... getpeername the client
    upload = bytes(range(256)) * 400
    conn.send(upload)
    received = b""
    for _ in range(100):
        lab.net.run_for(0.05)
        received += server.read()
        if len(received) == len(upload):
            break
    assert received == upload
    server.send(b"ok")
    lab.net.run_for(0.1)
    assert conn.read() == b"ok"
    # The SYN-ACK's MSS was lowered by the TOA length, so TOA-carrying segments never exceed the MTU.
    assert lab.lb.stats["toa_inserted"] > 2 and lab.lb.stats["toa_skipped_mtu"] == 0
    conn.close()
    server.close()
    lab.net.run_for(1.0)
    assert lab.lb.entries()[0].state is TcpConnState.TIME_WAIT
    lab.net.run_for(10.0)
    assert lab.lb.entries() == [] and lab.lb.stats["lb_expire_rst_sent"] == 0


def test_rewrite_mode_shows_the_rs_the_client_address() -> None:
    lab = build(ToaMode.REWRITE)
    listener = lab.rs.listen(RS, RSPORT)
    conn = lab.client.connect(VIP, VPORT, lab.net.now)
    lab.net.run_for(0.1)
    server = listener.accept()
    assert server is not None and server.remote == conn.local
    server.send(b"greeting")
    lab.net.run_for(0.1)
    assert conn.read() == b"greeting"


def crossing(mode: ToaMode) -> tuple[Lab, int, list[tuple[int, int, TcpFlags, int]]]:
    """Direct connection from CPORT, then the same port through the LB; the query on the direct one.

    Returns the lab, the RS's seq on the direct connection, and everything that reached the client
    after the second connect: (source port, seq, flags, IP id)."""
    lab = build(mode)
    listener = lab.rs.listen(RS, RSPORT)
    direct = lab.client.connect(RS, RSPORT, lab.net.now, local_port=CPORT)
    lab.net.run_for(0.1)
    server_direct = listener.accept()
    assert server_direct is not None and direct.state is TcpState.ESTABLISHED
    rs_seq = server_direct.snd_nxt
    mark = len(lab.net.captures)
    lab.client.connect(VIP, VPORT, lab.net.now, local_port=CPORT)  # legal: another 4-tuple
    lab.net.run_for(0.1)
    direct.send(b"select 1")
    lab.net.run_for(5.0)
    seen = [
        (r.packet.tcp.src_port, r.packet.tcp.seq, r.packet.tcp.flags, r.packet.ident)
        for r in lab.net.captures[mark:]
        if r.event == "deliver" and r.dst_node == "client"
    ]
    return lab, rs_seq, seen


def test_slb_toa_crossing_starves_the_direct_connection() -> None:
    lab, rs_seq, seen = crossing(ToaMode.REWRITE)
    direct = next(c for c in lab.client.connections() if c.remote == (RS, RSPORT))
    # The query on the direct connection is never acknowledged and keeps being retransmitted ...
    assert direct.snd_una != direct.snd_nxt
    assert lab.client.counters["RetransSegs"] >= 3
    # ... because everything the RS sends on that 4-tuple now leaves through the LB: from VIP:3306.
    assert seen and all(sport == VPORT for sport, *_ in seen)
    # Among it, RSTs carrying the direct connection's sequence numbers.
    assert any(flags & TcpFlags.RST and seq == rs_seq for _, seq, flags, _ in seen)
    assert lab.toa.stats["toa_out_rewritten"] > 0


def test_stock_toa_keeps_both_connections_working() -> None:
    lab, _, seen = crossing(ToaMode.GETPEERNAME)
    direct = next(c for c in lab.client.connections() if c.remote == (RS, RSPORT))
    via_lb = next(c for c in lab.client.connections() if c.remote == (VIP, VPORT))
    assert direct.snd_una == direct.snd_nxt  # the query was acknowledged
    assert via_lb.state is TcpState.ESTABLISHED
    assert lab.client.counters["RetransSegs"] == 0
    assert {sport for sport, *_ in seen} == {VPORT, RSPORT}  # each answer on its own path
