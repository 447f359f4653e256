"""The `utcp` command against the kernel: `peer` serves and leaves nothing behind on SIGTERM,
`connect` is nc over utcp, `demo` runs end to end."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import trio

from tests.kernel.helpers import KERNEL, UTCP, KernelPeer
from tests.kernel.transfers import payload
from utcp.lab.netns import Namespace

UTCP_CMD = [sys.executable, "-m", "utcp.cli.main"]


@contextlib.contextmanager
def _utcp_peer(namespace: Namespace, *options: str) -> Iterator[subprocess.Popen[str]]:
    """`utcp peer --serve echo` on port 7 in `namespace`; killed by its PID if still running at the end."""
    peer = subprocess.Popen(
        [*UTCP_CMD, "peer", "--netns", namespace.name, "--listen", "7", "--serve", "echo", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield peer
    finally:
        if peer.poll() is None:
            os.kill(peer.pid, signal.SIGKILL)
            peer.wait()


async def _listening_device(peer: subprocess.Popen[str]) -> str:
    """The TUN device named by the line `utcp peer` prints once it listens."""
    assert peer.stdout is not None
    line = await trio.to_thread.run_sync(peer.stdout.readline)
    assert line.startswith(f"listening {UTCP}:7 echo"), line + (peer.stderr.read() if peer.stderr else "")
    return line.split()[-1]


async def _stop(peer: subprocess.Popen[str]) -> None:
    os.kill(peer.pid, signal.SIGTERM)
    _, err = await trio.to_thread.run_sync(lambda: peer.communicate(timeout=20))
    assert peer.returncode == 0, err


async def test_peer_serves_a_kernel_client_then_exits_cleanly_on_sigterm(namespace: Namespace) -> None:
    with _utcp_peer(namespace, "--seed", "3") as peer:
        device = await _listening_device(peer)
        assert device in namespace.ip("-br", "link")
        nbytes = 2 * 2**20
        result = await KernelPeer(namespace, "echo-client", UTCP, "7", str(nbytes)).result(timeout=120)
        assert result["received"] == nbytes
        assert result["sha256"] == hashlib.sha256(payload(nbytes)).hexdigest()
        await _stop(peer)
        assert device not in namespace.ip("-br", "link")


async def test_peer_with_a_pool_of_two_workers_serves_four_kernel_clients_started_together(
    namespace: Namespace,
) -> None:
    # With two workers, a client beyond two waits in the accept queue until one is free
    # (serve_workers; the in-process tests pin the bound): every echo must still come back whole.
    with _utcp_peer(namespace, "--workers", "2") as peer:
        await _listening_device(peer)
        sizes = [300_000 + i for i in range(4)]
        results: dict[int, dict[str, object]] = {}

        async def client(nbytes: int) -> None:
            results[nbytes] = await KernelPeer(namespace, "echo-client", UTCP, "7", str(nbytes)).result(
                timeout=120
            )

        async with trio.open_nursery() as nursery:
            for nbytes in sizes:
                nursery.start_soon(client, nbytes)
        for nbytes in sizes:
            assert results[nbytes]["received"] == nbytes
            assert results[nbytes]["sha256"] == hashlib.sha256(payload(nbytes)).hexdigest()
        await _stop(peer)


async def test_connect_is_nc_over_utcp(namespace: Namespace) -> None:
    server = KernelPeer(namespace, "echo-server", "5001")
    try:
        await server.ready()
        message = b"hello kernel, from utcp connect\n" * 100
        proc = await trio.run_process(
            [*UTCP_CMD, "connect", "--netns", namespace.name, KERNEL, "5001"],
            stdin=message,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == message
        result = await server.result(timeout=20)
        assert result["echoed"] == len(message)
    finally:
        server.stop()


def test_demo_runs_end_to_end(privileged: None) -> None:
    proc = subprocess.Popen([*UTCP_CMD, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "outcome: OK" in out
    assert "kernel > utcp" in out and "utcp > kernel" in out
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [n for n in namespaces.split() if n.startswith(f"utcp-{proc.pid}-")]  # cleaned up
