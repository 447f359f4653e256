"""Ctrl-C (SIGINT) in the middle of a `utcp` command leaves no namespace, TUN device or process behind and
prints no traceback (issue 7 must-show 7). Each command runs as a subprocess; namespaces it needs are
created here and deleted afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from utcp.lab.netns import Namespace, netns

UTCP = [sys.executable, "-m", "utcp.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> dict[int, bytes]:
    """Every live process whose parent is `pid`, with its start time (to tell a reused PID apart)."""
    out: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[1]) == pid:
            out[int(entry.name)] = fields[19]
    return out


def _descendants(pid: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    todo = [pid]
    while todo:
        for child, started in _children(todo.pop()).items():
            if child not in found:
                found[child] = started
                todo.append(child)
    return found


def _alive(pid: int, started: bytes) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[19] == started and fields[0] != b"Z"


def _namespaces_of(pid: int) -> set[str]:
    """The namespaces this PID created: Namespace names embed the creator's PID (`utcp-...<pid>-<hex>`)."""
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    return {name for name in names if name.startswith("utcp-") and f"{pid}-" in name}


def _tun_devices(ns: Namespace) -> list[str]:
    out = ns.ip("-o", "link", "show")
    return [line.split(":")[1].strip() for line in out.splitlines() if "lo:" not in line]


class Running:
    """A `utcp` subprocess, its output, and every process it started while we watched."""

    def __init__(self, argv: list[str], *, stdin: int = subprocess.DEVNULL) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [*UTCP, *argv], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
        )
        self.seen: dict[int, bytes] = {}
        self.stdout_lines: list[str] = []

    def wait_for_line(self, needle: str, timeout: float) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), False)
        buffer = b""
        while time.monotonic() < deadline:
            self.seen.update(_descendants(self.proc.pid))
            chunk = self.proc.stdout.read()
            if chunk:
                buffer += chunk
                if needle.encode() in buffer:
                    self.stdout_lines = buffer.decode(errors="replace").splitlines()
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"no {needle!r} line: {buffer.decode(errors='replace')[-2000:]}")

    def watch(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.seen.update(_descendants(self.proc.pid))
            time.sleep(0.05)

    def interrupt(self, timeout: float = 30.0) -> tuple[int, str]:
        self.seen.update(_descendants(self.proc.pid))
        self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s after SIGINT")
        return self.proc.returncode, err.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, started in self.seen.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)

    def leftover_processes(self) -> list[int]:
        time.sleep(0.2)  # SIGTERM'd grandchildren get a moment to go
        return [pid for pid, started in self.seen.items() if _alive(pid, started)]


@pytest.fixture
def two_namespaces(privileged: None) -> Iterator[tuple[Namespace, Namespace]]:
    with netns() as client, netns() as server:
        yield client, server


def _check_clean(run: Running, code: int, err: str) -> None:
    try:
        assert "Traceback" not in err, err
        assert code in (0, 128 + signal.SIGINT), (code, err)
        assert _namespaces_of(run.proc.pid) == set()
        assert run.leftover_processes() == []
    finally:
        run.kill()


@pytest.mark.parametrize("after", [0.0, 1.0], ids=["at-start", "mid-download"])
def test_ctrl_c_stops_demo_cleanly(privileged: None, after: float) -> None:
    run = Running(["demo", "--quiet", "--bytes", "200000000"])
    run.wait_for_line("namespace utcp-", timeout=20)
    assert _namespaces_of(run.proc.pid), "the demo's namespace should exist while it runs"
    run.watch(after)
    code, err = run.interrupt()
    _check_clean(run, code, err)


def test_ctrl_c_stops_peer_and_removes_its_device(namespace: Namespace) -> None:
    run = Running(["peer", "--netns", namespace.name, "--listen", "7", "--log-level", "warning"])
    run.wait_for_line("listening", timeout=20)
    assert _tun_devices(namespace), "peer should have created a TUN device"
    code, err = run.interrupt()
    _check_clean(run, code, err)
    assert code == 0
    assert _tun_devices(namespace) == []


def test_ctrl_c_stops_connect_blocked_on_stdin(namespace: Namespace) -> None:
    # a kernel echo server inside the namespace, reached through connect's TUN device
    server = namespace.popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        run = Running(["connect", "--netns", namespace.name, "198.18.0.1", "7007"], stdin=subprocess.PIPE)
        assert run.proc.stdin is not None
        run.proc.stdin.write(b"hello over utcp\n")
        run.proc.stdin.flush()
        run.wait_for_line("hello over utcp", timeout=20)  # echoed: connected, now blocked on stdin
        code, err = run.interrupt()
        _check_clean(run, code, err)
        assert _tun_devices(namespace) == []
    finally:
        namespace.terminate(server)


ECHO_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7007))
s.listen()
print("ready", flush=True)
conn, _ = s.accept()
while data := conn.recv(4096):
    conn.sendall(data)
"""


def test_ctrl_c_stops_a_box_and_removes_both_devices(two_namespaces: tuple[Namespace, Namespace]) -> None:
    client, server = two_namespaces
    argv = ["impair", "--client-netns", client.name, "--server-netns", server.name, "--drop", "nth=1000"]
    run = Running([*argv, "--log-level", "warning"])
    run.wait_for_line("running impair", timeout=20)
    assert _tun_devices(client) and _tun_devices(server)
    code, err = run.interrupt()
    _check_clean(run, code, err)
    assert code == 0
    assert _tun_devices(client) == [] and _tun_devices(server) == []


@pytest.mark.parametrize("after", [0.0, 1.5], ids=["first-lab", "mid-run"])
def test_ctrl_c_stops_the_matrix_and_deletes_its_labs(privileged: None, tmp_path: Path, after: float) -> None:
    # netns cells of scenario B with a few role assignments, several at once
    run = Running(["matrix", "--only", "B/*/netns", "--jobs", "3", "--out", str(tmp_path / "report")])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _namespaces_of(run.proc.pid) and run.proc.poll() is None:
        run.watch(0.1)
    assert _namespaces_of(run.proc.pid), "the matrix should be running cells in namespaces"
    run.watch(after)
    code, err = run.interrupt(timeout=60)
    _check_clean(run, code, err)
