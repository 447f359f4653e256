"""A utcp RS in toa.ko mode (`Host(toa="getpeername")`): the client address from the LB's TOA option is
kept on the connection (`Connection.toa_peer`, what `UtcpStream.getpeername()` reports); the 4-tuple
stays the LB's. On virtual time: client -- FullNAT LB -- RS."""

from __future__ import annotations

import pytest
import trio

from utcp.io.api import open_tcp_listeners, open_tcp_stream
from utcp.io.memory import MemoryLink, memory_link_pair
from utcp.io.runtime import HostRuntime
from utcp.middlebox import Direction, FullNat, FullNatConfig, RealServer, VirtualService
from utcp.middlebox.node import MiddleboxNode, from_networks
from utcp.sim.network import Network
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState

CLIENT, VIP, LIP, RS = "198.18.0.1", "198.18.0.100", "198.19.0.1", "198.19.0.2"
VPORT, RSPORT = 3306, 3269


def _net(toa: bool, insert_toa: bool = True) -> tuple[Network, Host, Host]:
    net = Network()
    client = Host([CLIENT], seed=1)
    rs = Host([RS], seed=2, toa="getpeername" if toa else None)
    service = VirtualService(VIP, VPORT, (RealServer(RS, RSPORT),))
    lb = FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=3, insert_toa=insert_toa))
    net.add_node("client", client)
    net.add_node("lb", MiddleboxNode(lb, from_networks(["198.18.0.0/24"]), (VIP, LIP)))
    net.add_node("rs", rs)
    net.link("client", "lb", latency=0.001)
    net.link("lb", "rs", latency=0.001)
    net.add_route("client", "0.0.0.0/0", "lb")
    net.add_route("lb", f"{RS}/32", "rs")
    net.add_route("rs", "0.0.0.0/0", "lb")
    return net, client, rs


def test_toa_getpeername_host_reports_the_client_over_the_lb_tuple() -> None:
    net, client, rs = _net(toa=True)
    listener = rs.listen(RS, RSPORT)
    conn = client.connect(VIP, VPORT, net.now, local_port=61902)
    net.run_for(0.1)
    server = listener.accept()
    assert server is not None and conn.state is TcpState.ESTABLISHED
    assert server.toa_peer == (CLIENT, 61902) == conn.local
    assert server.remote[0] == LIP  # the 4-tuple is the LB's: no crossing possible
    conn.send(b"query")
    net.run_for(0.1)
    assert server.read() == b"query"


def test_without_the_option_toa_is_ignored() -> None:
    net, client, rs = _net(toa=False)
    listener = rs.listen(RS, RSPORT)
    client.connect(VIP, VPORT, net.now)
    net.run_for(0.1)
    server = listener.accept()
    assert server is not None and server.toa_peer is None


def test_no_toa_on_the_wire_leaves_the_real_peer() -> None:
    net, client, rs = _net(toa=True, insert_toa=False)
    listener = rs.listen(RS, RSPORT)
    client.connect(VIP, VPORT, net.now)
    net.run_for(0.1)
    server = listener.accept()
    assert server is not None and server.toa_peer is None and server.remote[0] == LIP


def test_a_direct_connection_has_no_toa_peer() -> None:
    net, client, rs = _net(toa=True)
    listener = rs.listen(RS, RSPORT)
    client.connect(RS, RSPORT, net.now)
    net.run_for(0.1)
    server = listener.accept()
    assert server is not None and server.toa_peer is None and server.remote[0] == CLIENT


def test_unknown_toa_mode_is_a_usage_error() -> None:
    with pytest.raises(TcpUsageError, match="toa"):
        Host([RS], toa="rewrite")  # type: ignore[arg-type]


async def test_utcp_stream_getpeername_is_the_toa_address_and_transport_peer_the_lb() -> None:
    """In process, on trio: client runtime -- memory link -- FullNAT relay -- memory link -- RS runtime."""
    service = VirtualService(VIP, VPORT, (RealServer(RS, RSPORT),))
    lb = FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=3))
    client_link, lb_client_side = memory_link_pair()
    lb_server_side, rs_link = memory_link_pair()

    async def relay(inbound: MemoryLink, direction: Direction) -> None:
        while True:
            for data in await inbound.receive_batch():
                for emit in lb.process_bytes(data, direction, trio.current_time()):
                    out = lb_server_side if emit.direction is Direction.TO_SERVER else lb_client_side
                    while not out.try_send(emit.data):
                        await out.wait_writable()

    client = Host([CLIENT], seed=1)
    rs = Host([RS], seed=2, toa="getpeername")
    async with (
        HostRuntime(client, client_link, linger=0.0) as rt_client,
        HostRuntime(rs, rs_link, linger=0.0) as rt_rs,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(relay, lb_client_side, Direction.TO_SERVER)
        nursery.start_soon(relay, lb_server_side, Direction.TO_CLIENT)
        (listener,) = await open_tcp_listeners(rt_rs, RSPORT)
        with trio.fail_after(5):
            stream = await open_tcp_stream(rt_client, VIP, VPORT, local_port=61902)
            server = await listener.accept()
            await stream.send_all(b"ping")
            assert await server.receive_some(10) == b"ping"
        assert stream.getpeername() == stream.transport_peer == (VIP, VPORT)  # no TOA on this host
        assert server.getpeername() == (CLIENT, 61902)  # toa.ko: the client ...
        assert server.transport_peer == lb.entries()[0].ext.local and server.transport_peer[0] == LIP
        nursery.cancel_scope.cancel()
