"""`utcp snat`, `utcp lb` and `utcp impair` as processes between two namespaces: a kernel client talks
through the box to a kernel server, the status file shows counters and conntrack entries, and SIGINT ends
the box with exit 0 and its TUN devices gone."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from utcp.lab.netns import Namespace

UTCP_CMD = [sys.executable, "-m", "utcp.cli.main"]
CLIENT = "198.18.1.1"  # the kernel client's address (the command's default --client-addr)
SERVER = "198.18.2.1"  # the kernel server's address (default --server-addr)
PORT = 8080


def _socket(ns: Namespace) -> trio.socket.SocketType:
    # Created on a thread inside `ns`: the socket belongs to that namespace from then on.
    return trio.socket.from_stdlib_socket(ns.call(socket.socket, socket.AF_INET, socket.SOCK_STREAM))


class BoxProcess:
    """A `utcp <box>` subprocess, ended by PID only."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*UTCP_CMD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.devices: dict[str, str] = {}

    async def ready(self) -> None:
        """Wait for `running CMD client=DEV@NS server=DEV@NS`."""
        assert self.proc.stdout is not None
        with trio.fail_after(20):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        assert line.startswith("running "), line + self.stderr_now()
        for word in line.split()[2:]:
            side, _, where = word.partition("=")
            self.devices[side] = where.partition("@")[0]

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read() if self.proc.stderr else ""

    async def interrupt(self) -> tuple[int, str]:
        """SIGINT (Ctrl-C), then the exit status and stderr."""
        os.kill(self.proc.pid, signal.SIGINT)
        _, err = await trio.to_thread.run_sync(lambda: self.proc.communicate(timeout=20))
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@asynccontextmanager
async def box_process(argv: list[str]) -> AsyncIterator[BoxProcess]:
    box = BoxProcess(argv)
    try:
        await box.ready()
        yield box
    finally:
        box.kill()


@asynccontextmanager
async def two_namespaces() -> AsyncIterator[tuple[Namespace, Namespace]]:
    ns_client, ns_server = Namespace(), Namespace()
    try:
        ns_client.create()
        ns_server.create()
        yield ns_client, ns_server
    finally:
        ns_client.delete()
        ns_server.delete()


async def echo_through(
    ns_client: Namespace, ns_server: Namespace, target: tuple[str, int], payload: bytes
) -> tuple[tuple[str, int], tuple[str, int], bytes]:
    """A kernel client in ns_client sends `payload` to `target`; the kernel echo server on SERVER:PORT
    in ns_server sends it back. Returns (the client's own address, the peer the server saw, echoed)."""
    lsock = _socket(ns_server)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await lsock.bind((SERVER, PORT))
    lsock.listen(8)
    client = _socket(ns_client)
    seen: list[tuple[str, int]] = []
    echoed = bytearray()

    async def serve() -> None:
        conn, peer = await lsock.accept()
        seen.append(peer)
        async with trio.SocketStream(conn) as stream:
            while chunk := await stream.receive_some(65536):
                await stream.send_all(chunk)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.connect(target)
            own = client.getsockname()
            stream = trio.SocketStream(client)

            async def send() -> None:
                await stream.send_all(payload)
                await stream.send_eof()

            nursery.start_soon(send)
            while chunk := await stream.receive_some(65536):
                echoed.extend(chunk)
            await stream.aclose()
    lsock.close()
    return own, seen[0], bytes(echoed)


async def wait_status(path: Path, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the status file until one written after this call is `ready(status)`.

    The box rewrites it every --stats-interval (every second with 0); an older one can be stale by that
    much: the impair test's SYN retransmission, also at 1 s, once met a snapshot holding the second SYN
    but not yet the server's SYN-ACK.
    """
    called_at = time.time()
    status: dict[str, Any] = {}
    with trio.move_on_after(10):
        while True:
            if path.exists():
                status = json.loads(path.read_text())
                if status["time"] > called_at and ready(status):
                    return status
            await trio.sleep(0.05)
    raise AssertionError(f"status never became ready: {status}")


def _links(ns: Namespace) -> str:
    return ns.ip("-br", "link")


async def test_snat_command_masquerades_a_kernel_exchange_and_stops_cleanly_on_sigint(
    privileged: None, tmp_path: Path
) -> None:
    status_path = tmp_path / "snat.json"
    outside = "198.18.2.100"
    payload = os.urandom(256 * 1024)
    async with two_namespaces() as (ns_client, ns_server):
        argv = ["snat", "--client-netns", ns_client.name, "--server-netns", ns_server.name, "--to", outside,
                "--stats-interval", "0.1", "--status-file", str(status_path)]  # fmt: skip
        async with box_process(argv) as box:
            assert box.devices["client"] in _links(ns_client)
            assert box.devices["server"] in _links(ns_server)
            own, peer, echoed = await echo_through(ns_client, ns_server, (SERVER, PORT), payload)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            assert peer == (outside, own[1])  # masqueraded, source port preserved (nf_nat: it was free)

            status = await wait_status(status_path, lambda s: s["conntrack"]["count"] == 1)
            assert status["running"] is True and status["command"] == "snat"
            assert status["devices"] == box.devices
            (entry,) = status["conntrack"]["entries"]
            assert entry["nat"] == {"inside": f"{CLIENT}:{own[1]}", "outside": f"{outside}:{own[1]}"}
            assert entry["original"] == {"src": CLIENT, "sport": own[1], "dst": SERVER, "dport": PORT}
            assert entry["reply"] == {"src": SERVER, "sport": PORT, "dst": outside, "dport": own[1]}
            assert entry["assured"] and entry["line"].startswith("tcp      6 ")
            runtime, stats = status["runtime"], status["stats"]
            assert stats["snat_conn_mapped"] == 1 and stats["snat_port_preserved"] == 1
            assert stats["snat_out_packets"] > 256 * 1024 // 65536  # the data crossed the box
            assert runtime["packets_out_to_server"] == stats["snat_out_packets"]
            assert runtime["packets_out_to_client"] == stats["snat_in_packets"]
            assert runtime.get("malformed_dropped", 0) == 0 and runtime.get("box_errors", 0) == 0

            code, err = await box.interrupt()
            assert code == 0, err
            assert "Traceback" not in err and "stopped" in err
            assert box.devices["client"] not in _links(ns_client)
            assert box.devices["server"] not in _links(ns_server)
            final = json.loads(status_path.read_text())
            assert final["running"] is False
            assert final["stats"]["snat_out_packets"] >= stats["snat_out_packets"]


async def test_lb_command_balances_a_kernel_client_onto_a_kernel_real_server(
    privileged: None, tmp_path: Path
) -> None:
    status_path = tmp_path / "lb.json"
    vip, laddr = "198.18.1.100", "198.18.2.100"
    payload = os.urandom(512 * 1024)
    async with two_namespaces() as (ns_client, ns_server):
        argv = ["lb", "--client-netns", ns_client.name, "--server-netns", ns_server.name,
                "--vip", f"{vip}:80", "--rs", f"{SERVER}:{PORT}", "--laddr", laddr,
                "--stats-interval", "0.1", "--status-file", str(status_path), "--log-json"]  # fmt: skip
        async with box_process(argv) as box:
            own, peer, echoed = await echo_through(ns_client, ns_server, (vip, 80), payload)
            assert echoed == payload
            assert peer[0] == laddr  # FullNAT: the real server sees the local address

            status = await wait_status(
                status_path,
                lambda s: s["conntrack"]["count"] == 1 and s["stats"].get("lb_out_packets", 0) > 0,
            )
            (entry,) = status["conntrack"]["entries"]
            assert entry["nat"] == {
                "vip": f"{vip}:80",
                "client": f"{CLIENT}:{own[1]}",
                "real_server": f"{SERVER}:{PORT}",
                "local": f"{laddr}:{peer[1]}",
            }
            stats = status["stats"]
            assert stats["lb_conn_scheduled"] == 1
            # TOA on the SYN and on every segment acking the RS's ISN+1 (DPVS fdata_seq): the third ACK and
            # the data sent before the first echo came back.
            assert stats["toa_inserted"] >= 2
            assert stats.get("toa_skipped_mtu", 0) == 0 and stats.get("toa_skipped_no_room", 0) == 0
            assert stats["ts_removed"] == 1 and stats["mss_adjusted"] == 1
            # Only the SYN, the SYN-ACK (MSS) and the TOA carriers were rebuilt; the rest took the fast path.
            assert stats["lb_bytes_slow_path"] == stats["toa_inserted"] + 1
            assert stats["lb_bytes_fast_path"] > 100
            runtime = status["runtime"]
            assert runtime["packets_out_to_server"] == stats["lb_in_packets"]
            assert runtime["packets_out_to_client"] == stats["lb_out_packets"]

            code, err = await box.interrupt()
            assert code == 0, err
            lines = [json.loads(line) for line in err.splitlines()]  # --log-json: every line is JSON
            assert [e["event"] for e in lines if e["event"] in ("running", "stopped")] == [
                "running",
                "stopped",
            ]
            assert any(e["event"] == "stats" for e in lines)
            assert box.devices["client"] not in _links(ns_client)


async def test_impair_command_drops_the_first_syn_and_counts_it_per_rule(
    privileged: None, tmp_path: Path
) -> None:
    status_path = tmp_path / "impair.json"
    async with two_namespaces() as (ns_client, ns_server):
        argv = ["impair", "--client-netns", ns_client.name, "--server-netns", ns_server.name,
                "--drop", "dir=c2s flags=S nth=1 name=first-syn", "--stats-interval", "0",
                "--status-file", str(status_path)]  # fmt: skip
        async with box_process(argv) as box:
            start = trio.current_time()
            _, _, echoed = await echo_through(ns_client, ns_server, (SERVER, PORT), b"x" * 1000)
            assert echoed == b"x" * 1000
            assert trio.current_time() - start >= 0.9  # connected on the SYN retransmission (1 s RTO)
            status = await wait_status(status_path, lambda s: s["rules"]["first-syn"].get("matched") == 2)
            assert status["rules"]["first-syn"]["dropped"] == 1  # the SYN, not its retransmission
            assert (
                status["stats"]["forwarded"]
                == status["runtime"]["packets_in_client"] - 1 + (status["runtime"]["packets_in_server"])
            )
            code, err = await box.interrupt()
            assert code == 0, err


async def test_lb_then_rewrite_toa_lets_the_real_server_see_the_client_address(
    privileged: None, tmp_path: Path
) -> None:
    """Issue 4, as commands: kernel client -> `utcp lb` -> a forwarding namespace -> `utcp toa --mode
    rewrite` -> kernel RS, whose accept() reports the client's own address and port."""
    vip, laddr, rs = "198.18.1.100", "198.18.2.100", "198.18.3.1"
    status_path = tmp_path / "toa.json"
    payload = os.urandom(64 * 1024)
    ns_client, ns_mid, ns_rs = Namespace(), Namespace(), Namespace()
    try:
        for ns in (ns_client, ns_mid, ns_rs):
            ns.create()
        ns_mid.sysctl("net.ipv4.ip_forward", 1)  # the LB's RS side and the TOA box's LB side meet here
        lb_argv = ["lb", "--client-netns", ns_client.name, "--server-netns", ns_mid.name,
                   "--vip", f"{vip}:80", "--rs", f"{rs}:{PORT}", "--laddr", laddr]  # fmt: skip
        toa_argv = ["toa", "--client-netns", ns_mid.name, "--server-netns", ns_rs.name, "--mode", "rewrite",
                    "--client-addr", "198.18.4.1/24", "--server-addr", f"{rs}/24",
                    "--stats-interval", "0.1", "--status-file", str(status_path)]  # fmt: skip
        async with box_process(lb_argv) as lb, box_process(toa_argv) as toa:
            # The RS answers rewritten packets addressed to the client through the TOA box.
            ns_rs.add_route("198.18.1.0/24", device=toa.devices["server"])
            lsock = _socket(ns_rs)
            await lsock.bind((rs, PORT))
            lsock.listen(8)
            client = _socket(ns_client)
            with trio.fail_after(20):
                await client.connect((vip, 80))
                conn, peer = await lsock.accept()
                stream, rs_stream = trio.SocketStream(client), trio.SocketStream(conn)
                await stream.send_all(payload)
                received = bytearray()
                while len(received) < len(payload):
                    received.extend(await rs_stream.receive_some(65536))
                await rs_stream.send_all(b"pong")
                assert await stream.receive_some(4) == b"pong"
            assert bytes(received) == payload
            assert peer == (CLIENT, client.getsockname()[1])  # getpeername() on the RS: the client itself
            status = await wait_status(status_path, lambda s: s["stats"].get("toa_out_rewritten", 0) > 0)
            (entry,) = status["conntrack"]["entries"]
            assert entry["nat"]["client"] == f"{CLIENT}:{peer[1]}"
            assert entry["nat"]["lvs"].startswith(f"{laddr}:")
            assert status["stats"]["toa_in_rewritten"] > 0
            await stream.aclose()
            await rs_stream.aclose()
            lsock.close()
            for box in (toa, lb):
                code, err = await box.interrupt()
                assert code == 0, err
    finally:
        for ns in (ns_client, ns_mid, ns_rs):
            ns.delete()
