"""`utcp demo`: a Linux kernel client talks to a utcp server through a TUN device, traced.

Everything happens in a network namespace the demo creates and deletes: the TUN device (kernel end
198.18.0.1/24, utcp at 198.18.0.2), a utcp echo server on port 7 and HTTP server on port 80, and a
kernel client (a Python subprocess inside the namespace) that talks to both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import textwrap

import trio

from utcp.cli.common import EXIT_FAILED, EXIT_OK, UsageError, check_output_path, guarded
from utcp.cli.services import SERVICES, body_bytes
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace, netns
from utcp.wire.codec import parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.format import format_packet

KERNEL_ADDRESS = "198.18.0.1"
UTCP_ADDRESS = "198.18.0.2"

# Runs inside the namespace with the same interpreter: plain kernel sockets, result as one JSON line.
KERNEL_CLIENT = textwrap.dedent(
    """
    import hashlib, http.client, json, socket, sys
    address, nbytes = sys.argv[1], int(sys.argv[2])
    result = {}
    message = b"hello utcp, this is the Linux kernel speaking\\n"
    with socket.create_connection((address, 7), timeout=10) as s:
        s.sendall(message)
        s.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := s.recv(65536):
            echoed += chunk
    result["echo_sent"] = message.decode()
    result["echo_received"] = echoed.decode(errors="replace")
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    conn.request("GET", f"/bytes/{nbytes}")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    result["http_status"] = response.status
    result["http_length"] = len(body)
    result["http_sha256"] = hashlib.sha256(body).hexdigest()
    print(json.dumps(result))
    """
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UsageError("the demo creates a network namespace and a TUN device: run it as root")
    if not os.path.exists("/dev/net/tun"):
        raise UsageError("/dev/net/tun is missing (modprobe tun)")
    if args.nbytes < 0:
        raise UsageError("--bytes must be >= 0")
    check_output_path("--pcap", args.pcap)
    # SIGTERM unwinds like Ctrl-C, so the namespace below is deleted on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    with netns() as ns:
        print(f"namespace {ns.name}: kernel {KERNEL_ADDRESS}/24 <-> TUN <-> utcp {UTCP_ADDRESS}")
        return trio.run(_demo, ns, args)


async def _demo(ns: Namespace, args: argparse.Namespace) -> int:
    start: list[float] = []

    def tap(direction: str, raw: bytes, now: float) -> None:
        if args.quiet:
            return
        if not start:
            start.append(now)
        arrow = "kernel > utcp " if direction == "in" else "utcp > kernel "
        try:
            line = format_packet(parse_ipv4(raw, verify_checksums=False))
        except WireError as exc:
            line = f"malformed ({exc})"
        print(f"{now - start[0]:10.6f} {arrow} {line}")

    async with UtcpStack(
        netns=ns.name, address=f"{UTCP_ADDRESS}/24", peer_address=KERNEL_ADDRESS, tap=tap, pcap=args.pcap
    ) as stack:
        echo_listeners = await stack.open_tcp_listeners(7)
        http_listeners = await stack.open_tcp_listeners(80)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, guarded(SERVICES["echo"]), echo_listeners)
            nursery.start_soon(trio.serve_listeners, guarded(SERVICES["http"]), http_listeners)
            command = ns.argv([sys.executable, "-c", KERNEL_CLIENT, UTCP_ADDRESS, str(args.nbytes)])
            client = None
            with trio.move_on_after(60):
                client = await trio.run_process(
                    command, capture_stdout=True, capture_stderr=True, check=False
                )
            nursery.cancel_scope.cancel()
        counters = dict(stack.host.counters)
    kernel = ns.nstat()

    print()
    if client is None:
        print("kernel client did not finish within 60 s")
        return EXIT_FAILED
    if client.returncode != 0 or not client.stdout.strip():
        print(f"kernel client failed (exit {client.returncode}): {client.stderr.decode(errors='replace')}")
        return EXIT_FAILED
    result = json.loads(client.stdout.decode().strip().splitlines()[-1])
    expected = hashlib.sha256(body_bytes(args.nbytes)).hexdigest()
    echo_ok = result["echo_received"] == result["echo_sent"]
    http_ok = result["http_status"] == 200 and result["http_sha256"] == expected
    print(f"echo:  sent {result['echo_sent'].strip()!r}, got it back: {'OK' if echo_ok else 'MISMATCH'}")
    print(
        f"http:  GET /bytes/{args.nbytes} -> {result['http_status']}, {result['http_length']} bytes, "
        f"sha256 {'matches' if http_ok else 'DIFFERS'}"
    )
    interesting = ("ActiveOpens", "PassiveOpens", "InSegs", "OutSegs", "RetransSegs", "OutRsts")
    print("utcp:  " + ", ".join(f"{k} {counters.get(k, 0)}" for k in interesting))
    print("kernel: " + ", ".join(f"{k} {kernel.get('Tcp' + k, 0)}" for k in interesting))
    print("outcome: " + ("OK" if echo_ok and http_ok else "FAILED"))
    return EXIT_OK if echo_ok and http_ok else EXIT_FAILED
