"""The `utcp` command against the kernel: `peer` serves and leaves nothing behind on SIGTERM,
`connect` is nc over utcp, `demo` runs end to end."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import trio

from tests.kernel.helpers import KERNEL, UTCP, KernelPeer
from tests.kernel.transfers import payload
from utcp.lab.netns import Namespace

UTCP_CMD = [sys.executable, "-m", "utcp.cli.main"]


async def test_peer_serves_a_kernel_client_then_exits_cleanly_on_sigterm(namespace: Namespace) -> None:
    peer = subprocess.Popen(
        [*UTCP_CMD, "peer", "--netns", namespace.name, "--listen", "7", "--serve", "echo", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        line = await trio.to_thread.run_sync(peer.stdout.readline)
        assert line.startswith(f"listening {UTCP}:7 echo"), line + (peer.stderr.read() if peer.stderr else "")
        device = line.split()[-1]
        assert device in namespace.ip("-br", "link")
        nbytes = 2 * 2**20
        result = await KernelPeer(namespace, "echo-client", UTCP, "7", str(nbytes)).result(timeout=120)
        assert result["received"] == nbytes
        assert result["sha256"] == hashlib.sha256(payload(nbytes)).hexdigest()
        os.kill(peer.pid, signal.SIGTERM)
        _, err = await trio.to_thread.run_sync(lambda: peer.communicate(timeout=20))
        assert peer.returncode == 0, err
        assert device not in namespace.ip("-br", "link")
    finally:
        if peer.poll() is None:
            os.kill(peer.pid, signal.SIGKILL)
            peer.wait()


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
