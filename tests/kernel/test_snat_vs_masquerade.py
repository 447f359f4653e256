"""Issue 4 must-show 3: two kernel clients behind the utcp SNAT reach a kernel server, and the same run
through kernel nft `masquerade` in a router namespace picks the same source ports where they are free.

Both runs: client addresses 198.18.1.1 and 198.18.1.2 in one namespace, a kernel server at 198.18.2.1
listening on PORT, the outside (SNAT) address 198.18.2.254. Three connections, in this order:

1. 198.18.1.1:40000 -> the first user of port 40000: kept (nf_nat `get_unique_tuple`: the original port
   when the translated tuple is unique);
2. 198.18.1.2:40000 -> collides with 1 once both are 198.18.2.254:40000 -> server:PORT: nf_nat searches
   the port's class range 1024-65535 (`nf_nat_l4proto_unique_tuple`, no range given by masquerade) from a
   `get_random_u16()` offset, so the kernel's pick is random; only "another port, in 1024-65535" is
   specified and compared, never the number itself (utcp's pick comes from its own seeded generator);
3. 198.18.1.2:40001 -> free: kept.

The server sees one peer address, 198.18.2.254, for all three.
"""

from __future__ import annotations

import re

import trio

from utcp.lab import Lab, Namespace, SocketOptions
from utcp.middlebox.snat import PORT_CHANGED, PORT_KEPT, Snat, SnatConfig

CLIENT_1 = "198.18.1.1"
CLIENT_2 = "198.18.1.2"
ROUTER_INSIDE = "198.18.1.254"
SERVER = "198.18.2.1"
OUTSIDE = "198.18.2.254"
PORT = 8080
# (client address, source port) of each connection, in order; see the module docstring
CONNECTIONS = ((CLIENT_1, 40000), (CLIENT_2, 40000), (CLIENT_2, 40001))
LINUX_PORT_CLASS = (1024, 65535)  # nf_nat_l4proto_unique_tuple's range for an original port >= 1024

Peer = tuple[str, int]


async def _connect_all(lab: Lab, ns_clients: Namespace, ns_server: Namespace) -> list[Peer]:
    """Open every connection in order (each stays open so the next one collides with it); return the
    peer address the server's accept() saw for each."""
    server = lab.kernel(ns_server, SERVER)
    listener = await server.listen(PORT)
    peers: list[Peer] = []
    streams = []
    try:
        with trio.fail_after(10):
            for address, port in CONNECTIONS:
                client = lab.kernel(ns_clients, address)
                options = SocketOptions(bind_address=address, local_port=port, connect_timeout=3.0)
                streams.append(await client.connect(SERVER, PORT, options=options))
                accepted = await listener.accept()
                streams.append(accepted)
                peer = accepted.socket.getpeername()
                peers.append((str(peer[0]), int(peer[1])))
    finally:
        for stream in streams:
            await stream.aclose()
        await listener.aclose()
    return peers


async def _through_utcp_snat() -> tuple[list[Peer], Snat]:
    snat = Snat(SnatConfig(outside_address=OUTSIDE, inside_networks=("198.18.1.0/24",), seed=7))
    async with Lab(name="snat") as lab:
        ns_clients, ns_server = lab.namespace("clients"), lab.namespace("server")
        runtime = await lab.box(snat, ns_clients, ns_server, f"{CLIENT_1}/24", f"{SERVER}/24")
        ns_clients.add_address(runtime.client_side.name, f"{CLIENT_2}/24")
        # 198.18.2.254 is on the server's TUN subnet: replies to it go back through the box
        return await _connect_all(lab, ns_clients, ns_server), snat


MASQUERADE = """
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "%s" masquerade
    }
}
"""


async def _through_nft_masquerade() -> tuple[list[Peer], str]:
    async with Lab(name="masq") as lab:
        ns_clients, ns_router, ns_server = (
            lab.namespace("clients"),
            lab.namespace("router"),
            lab.namespace("server"),
        )
        client_if, _ = lab.veth(ns_clients, f"{CLIENT_1}/24", ns_router, f"{ROUTER_INSIDE}/24")
        ns_clients.add_address(client_if, f"{CLIENT_2}/24")
        out_if, _ = lab.veth(ns_router, f"{OUTSIDE}/24", ns_server, f"{SERVER}/24")
        lab.route(ns_clients, "198.18.2.0/24", via=ROUTER_INSIDE)
        lab.forwarding(ns_router)
        lab.nft(ns_router, MASQUERADE % out_if)
        peers = await _connect_all(lab, ns_clients, ns_server)
        conntrack = ns_router.run(["cat", "/proc/net/nf_conntrack"], check=False).stdout
        return peers, conntrack


def _check_spec(peers: list[Peer]) -> None:
    """What nf_nat specifies for the three connections (module docstring)."""
    assert {address for address, _ in peers} == {OUTSIDE}, peers  # the server sees one address
    first, colliding, free = (port for _, port in peers)
    assert first == 40000  # free: kept
    assert colliding != 40000  # taken by the first on the same reply tuple: another port ...
    assert LINUX_PORT_CLASS[0] <= colliding <= LINUX_PORT_CLASS[1]  # ... of the original port's class
    assert free == 40001  # free: kept


async def test_utcp_snat_and_nft_masquerade_pick_the_same_ports_where_free(privileged: None) -> None:
    utcp_peers, snat = await _through_utcp_snat()
    nft_peers, conntrack = await _through_nft_masquerade()
    _check_spec(utcp_peers)
    _check_spec(nft_peers)
    # the same choices wherever the port was free; the colliding one is random on both sides
    assert utcp_peers[0] == nft_peers[0] and utcp_peers[2] == nft_peers[2]
    assert (snat.stats[PORT_KEPT], snat.stats[PORT_CHANGED]) == (2, 1)
    utcp_table = {entry.ext.inside: entry.ext.outside[1] for entry in snat.entries()}
    assert utcp_table == {conn: port for conn, (_, port) in zip(CONNECTIONS, utcp_peers, strict=True)}
    # the router's conntrack table holds the same mappings the server saw
    nft_table = _nf_conntrack_mappings(conntrack)
    assert nft_table == {conn: port for conn, (_, port) in zip(CONNECTIONS, nft_peers, strict=True)}


def _nf_conntrack_mappings(text: str) -> dict[Peer, int]:
    """/proc/net/nf_conntrack lines -> {(original src, sport): reply dport} (the masqueraded port)."""
    out: dict[Peer, int] = {}
    for line in text.splitlines():
        srcs = re.findall(r"\bsrc=(\S+)", line)
        dports = re.findall(r"\bdport=(\d+)", line)
        sports = re.findall(r"\bsport=(\d+)", line)
        if " tcp " in line and len(srcs) == 2:
            out[(srcs[0], int(sports[0]))] = int(dports[1])
    return out
