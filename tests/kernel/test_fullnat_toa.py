"""Issue 4 must-show 2: the utcp FullNAT LB with TOA between namespaces, real kernel peers.

    client ns (198.18.1.1) --TUN-- [ Chain(FullNat, RsToa) ] --TUN-- rs ns (198.18.2.1, kernel end)

The VIP (198.18.100.1) is routed into the box in the client's namespace, the LB's local address pool
(198.18.3.0/24) in the RS's. With the `rewrite` TOA box behind the LB a kernel RS serves 10 MB to a
kernel client byte-exact, and its getpeername() is the client's address:port, not LIP:lport. With a
utcp RS (a host on a TUN behind the RS namespace, which forwards) running `toa="getpeername"`, the
stream reports the client while the real 4-tuple stays LIP:lport.
"""

from __future__ import annotations

import hashlib
import os
import time

import trio

from utcp.io.api import UtcpStream
from utcp.lab import Lab
from utcp.middlebox import FullNat, FullNatConfig, RealServer, RsToa, RsToaConfig, ToaMode, VirtualService
from utcp.middlebox.chain import Chain

CLIENT = "198.18.1.1"
RS = "198.18.2.1"  # the kernel RS: the box's server-side device in the RS namespace
UTCP_RS, UTCP_RS_PEER = "198.18.4.2", "198.18.4.1"
VIP, VPORT = "198.18.100.1", 80
LIP = "198.18.3.1"
RSPORT = 8080
SIZE = 10 * 1024 * 1024
CHUNK = 1 << 16


def _lb(rs: str) -> FullNat:
    service = VirtualService(VIP, VPORT, (RealServer(rs, RSPORT),))
    return FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=7))


async def _fetch(stream: trio.abc.Stream) -> tuple[int, str]:
    """Send a request, read to EOF: (bytes received, sha256)."""
    await stream.send_all(b"GET /10MB\r\n")
    digest = hashlib.sha256()
    received = 0
    while chunk := await stream.receive_some(CHUNK):
        digest.update(chunk)
        received += len(chunk)
    return received, digest.hexdigest()


async def _serve_once(
    listener: trio.abc.Listener[trio.abc.Stream], payload: bytes, seen: dict[str, object]
) -> None:
    stream = await listener.accept()
    # What the RS application reads, taken while the socket is open.
    if isinstance(stream, trio.SocketStream):
        seen["peer"] = stream.socket.getpeername()
    elif isinstance(stream, UtcpStream):
        seen["peer"], seen["transport_peer"] = stream.getpeername(), stream.transport_peer
    seen["request"] = await stream.receive_some(100)
    for offset in range(0, len(payload), CHUNK):
        await stream.send_all(payload[offset : offset + CHUNK])
    await stream.aclose()


async def test_kernel_client_fetches_10mb_through_fullnat_and_rewrite_toa_from_kernel_rs(
    privileged: None,
) -> None:
    payload = os.urandom(SIZE)
    lb = _lb(RS)
    toa = RsToa(RsToaConfig(mode=ToaMode.REWRITE))
    seen: dict[str, object] = {}
    async with Lab(name="fullnat-toa") as lab:
        ns_client, ns_rs = lab.namespace("client"), lab.namespace("rs")
        runtime = await lab.box(Chain([lb, toa]), ns_client, ns_rs, f"{CLIENT}/24", f"{RS}/24")
        lab.route(ns_client, f"{VIP}/32", dev=runtime.client_side.name)
        lab.route(ns_rs, f"{LIP}/24", dev=runtime.server_side.name)
        client, rs = lab.kernel(ns_client, CLIENT), lab.kernel(ns_rs, RS)
        listener = await rs.listen(RSPORT)
        started = time.monotonic()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_once, listener, payload, seen)
                stream = await client.connect(VIP, VPORT)
                local = stream.socket.getsockname()
                remote = stream.socket.getpeername()
                received, digest = await _fetch(stream)
        seconds = time.monotonic() - started
        await stream.aclose()
        await listener.aclose()
    print(f"10 MB kernel -> utcp FullNAT + rewrite TOA -> kernel: {seconds:.2f} s")
    assert (received, digest) == (SIZE, hashlib.sha256(payload).hexdigest())
    assert remote == (VIP, VPORT)
    assert seen["request"] == b"GET /10MB\r\n"
    # slb_toa: the RS application sees the client, not the LB's local address.
    assert seen["peer"] == (CLIENT, local[1])
    assert lb.entries()[0].ext.local[0] == LIP
    assert toa.stats["toa_in_rewritten"] > 0 and toa.stats["toa_out_rewritten"] > SIZE // 1500
    assert lb.stats["lb_bytes_fast_path"] > SIZE // 1500  # the data went the incremental-checksum way
    assert lb.stats["toa_inserted"] >= 2 and lb.stats["toa_skipped_mtu"] == 0
    for bad in ("box_errors", "encode_errors", "write_errors", "tx_backlog_dropped", "malformed_dropped"):
        assert runtime.stats[bad] == 0, bad


async def test_utcp_rs_in_getpeername_toa_mode_reports_the_client(privileged: None) -> None:
    lb = _lb(UTCP_RS)
    payload = os.urandom(256 * 1024)
    seen: dict[str, object] = {}
    async with Lab(name="fullnat-utcp-rs") as lab:
        ns_client, ns_rs = lab.namespace("client"), lab.namespace("rs")
        lab.forwarding(ns_rs)  # box device <-> utcp device
        runtime = await lab.box(Chain([lb]), ns_client, ns_rs, f"{CLIENT}/24", f"{RS}/24")
        lab.route(ns_client, f"{VIP}/32", dev=runtime.client_side.name)
        lab.route(ns_rs, f"{LIP}/24", dev=runtime.server_side.name)
        rs = await lab.utcp(ns_rs, f"{UTCP_RS}/24", peer=UTCP_RS_PEER, host_options={"toa": "getpeername"})
        client = lab.kernel(ns_client, CLIENT)
        listener = await rs.listen(RSPORT)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_once, listener, payload, seen)
                stream = await client.connect(VIP, VPORT)
                local = stream.socket.getsockname()
                received, digest = await _fetch(stream)
        await stream.aclose()
        await listener.aclose()
    assert (received, digest) == (len(payload), hashlib.sha256(payload).hexdigest())
    lip, lport = lb.entries()[0].ext.local
    assert seen["peer"] == (CLIENT, local[1])  # toa.ko: the client ...
    assert seen["transport_peer"] == (lip, lport) == (LIP, lport)  # ... over the LB's 4-tuple
