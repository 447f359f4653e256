"""Network namespaces for the lab: create, enter, run things inside, read counters, delete.

Namespaces are made with `ip netns` (a bind mount under /run/netns, so `ip netns exec`, `nsenter` and
humans all see them); links, addresses and routes are configured over netlink with pyroute2 from a thread
moved into the namespace by `setns(2)` (as is other code that must run inside: opening a TUN device,
creating kernel sockets). The root namespace's addresses and routes are never touched: a `Namespace` only
configures itself and the interfaces created inside it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = Path("/run/netns")
NAME_PREFIX = "utcp-"
CLONE_NEWNET = 0x40000000  # <linux/sched.h>

T = TypeVar("T")


_OWN_NAME = re.compile(rf"{NAME_PREFIX}(\d+)-[0-9a-f]{{6}}")  # what unique_name() makes


class NamespaceError(RuntimeError):
    """A namespace could not be created, entered or configured."""


def unique_name(prefix: str = NAME_PREFIX) -> str:
    """`utcp-<pid>-<random>`: unique across concurrent test workers and leftover runs."""
    return f"{prefix}{os.getpid()}-{secrets.token_hex(3)}"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # Python 3.11 has no os.setns; call libc directly. Affects the calling thread only.
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(path: str | os.PathLike[str]) -> Iterator[None]:
    """Move the *calling thread* into the network namespace at `path`, and back on exit.

    Only for threads that nobody else reuses (see `run_in_namespace`): if restoring fails the thread
    must die rather than run unrelated code in the wrong namespace.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.fspath(path), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run_in_namespace(path: str | os.PathLike[str], fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on a fresh thread moved into the namespace; return its result or raise its error.

    A fresh thread (never a pooled one such as trio's thread cache) so the namespace switch cannot leak
    into unrelated work. File descriptors it opens (sockets, TUN devices) stay bound to that namespace and
    remain usable from any thread afterwards.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with entered(path):
                result.append(fn(*args))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, name="utcp-setns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def parse_nstat_json(text: str) -> dict[str, int]:
    """`nstat -j` output -> {Linux counter name: value} (e.g. TcpExtPAWSEstab)."""
    data = json.loads(text)
    counters: dict[str, int] = {}
    for group in data.values():
        if isinstance(group, dict):
            for name, value in group.items():
                counters[name] = int(value)
    return counters


class Namespace:
    """A network namespace, created on `create()` / `with`, deleted on `delete()` even after errors.

    `Namespace(name, owned=False)` attaches to an existing namespace (it is then never deleted
    by us, and nothing but the interfaces we add is configured).
    """

    def __init__(self, name: str | None = None, *, owned: bool = True, disable_ipv6: bool = True) -> None:
        self.name = name if name is not None else unique_name()
        self.owned = owned
        self._disable_ipv6 = disable_ipv6
        self._created = False
        self._processes: dict[int, subprocess.Popen[Any]] = {}
        self._atexit: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> Namespace:
        if not self.owned:
            if not self.exists():
                raise NamespaceError(f"network namespace {self.name!r} does not exist")
            return self
        # Armed before `ip netns add` runs: a Ctrl-C landing after the namespace appears but before this
        # method returns must still delete it.
        self._created = True
        self._atexit = self.delete
        atexit.register(self._atexit)
        try:
            proc = subprocess.run(
                ["ip", "netns", "add", self.name], capture_output=True, text=True, check=False
            )
        except BaseException:
            self.delete()
            raise
        if proc.returncode != 0:
            self._created = False  # not ours (e.g. the name exists): never delete it
            atexit.unregister(self._atexit)
            self._atexit = None
            raise NamespaceError(f"ip netns add {self.name}: {proc.stderr.strip()}")
        try:
            if self._disable_ipv6:
                # New interfaces inherit `default`: no IPv6 router solicitations from our devices.
                self.sysctl("net.ipv6.conf.default.disable_ipv6", "1", missing_ok=True)
                self.sysctl("net.ipv6.conf.all.disable_ipv6", "1", missing_ok=True)
            self.set_up("lo")
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        """Terminate the processes we started in here (by PID), then remove the namespace."""
        self.terminate_processes()
        # Delete first, disarm the atexit safety net after: a Ctrl-C landing in between leaves the
        # namespace to atexit instead of leaking it.
        if self._created:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
            self._created = False
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None

    def __enter__(self) -> Namespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()

    # -- running things inside ----------------------------------------------------------------------
    def argv(self, command: Sequence[str]) -> list[str]:
        """The argv that runs `command` inside this namespace (for subprocess or trio.run_process)."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(
        self, command: Sequence[str], *, check: bool = True, timeout: float | None = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        proc = subprocess.run(self.argv(command), timeout=timeout, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise NamespaceError(
                f"{' '.join(command)} in {self.name} exited {proc.returncode}: {(proc.stderr or '').strip()}"
            )
        return proc

    def popen(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `command` inside; tracked by PID and terminated on `delete()` if still running."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.argv(command), **kwargs)
        self._processes[proc.pid] = proc
        return proc

    def terminate(self, proc: subprocess.Popen[Any], *, timeout: float = 3.0) -> int:
        """SIGTERM then, after `timeout`, SIGKILL this one process (by its PID); return its exit code."""
        self._processes.pop(proc.pid, None)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def terminate_processes(self) -> None:
        for proc in list(self._processes.values()):
            self.terminate(proc)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in this namespace on a dedicated thread (blocking)."""
        return run_in_namespace(self.path, fn, *args)

    # -- configuration over netlink (pyroute2) -------------------------------------------------------
    def _netlink(self, what: str, fn: Callable[[Any], T]) -> T:
        """`fn(ipr)` with an IPRoute socket opened inside this namespace (netlink sockets belong to the
        namespace of the thread that opens them); a netlink error becomes one NamespaceError line."""

        def body() -> T:
            with IPRoute() as ipr:
                return fn(ipr)

        try:
            return self.call(body)
        except NetlinkError as exc:
            raise NamespaceError(f"{what} in {self.name}: {os.strerror(exc.code)}") from exc

    @staticmethod
    def _index(ipr: Any, device: str) -> int:
        found = ipr.link_lookup(ifname=device)
        if not found:
            raise NamespaceError(f"no interface {device!r}")
        return int(found[0])

    def add_veth(self, name: str, peer_name: str, peer: Namespace) -> None:
        """A veth pair created here with its peer end moved straight into `peer` (never the root)."""
        self._netlink(
            f"veth {name}/{peer_name}",
            lambda ipr: ipr.link(
                "add", ifname=name, kind="veth", peer={"ifname": peer_name, "net_ns_fd": peer.name}
            ),
        )

    def set_up(self, device: str) -> None:
        self._netlink(
            f"link {device} up", lambda ipr: ipr.link("set", index=self._index(ipr, device), state="up")
        )

    def add_address(self, device: str, interface: str) -> None:
        """`interface` as "198.18.0.1/24" on `device`."""
        iface = ipaddress.IPv4Interface(interface)
        self._netlink(
            f"address {iface} on {device}",
            lambda ipr: ipr.addr(
                "add",
                index=self._index(ipr, device),
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
            ),
        )

    def add_route(self, prefix: str, *, via: str | None = None, device: str | None = None) -> None:
        """A route to `prefix` through gateway `via` and/or out of `device`."""
        network = ipaddress.IPv4Network(prefix, strict=False)

        def add(ipr: Any) -> None:
            spec: dict[str, Any] = {"dst": str(network)}
            if via is not None:
                spec["gateway"] = via
            if device is not None:
                spec["oif"] = self._index(ipr, device)
            ipr.route("add", **spec)

        where = "".join((f" via {via}" if via else "", f" dev {device}" if device else ""))
        self._netlink(f"route {network}{where}", add)

    def ipv4_addresses(self, *, scope: str = "global") -> list[ipaddress.IPv4Interface]:
        """The IPv4 addresses configured here, in the order the kernel lists them (`ip -4 addr show`)."""
        scopes = {"global": 0, "link": 253, "host": 254}  # RT_SCOPE_* (<linux/rtnetlink.h>)
        if scope not in scopes:
            raise ValueError(f"scope {scope!r}: one of {', '.join(scopes)}")
        scope_id = scopes[scope]

        def read(ipr: Any) -> list[ipaddress.IPv4Interface]:
            return [
                ipaddress.IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                for msg in ipr.get_addr(family=socket.AF_INET)
                if msg["scope"] == scope_id
            ]

        return self._netlink("list addresses", read)

    # -- configuration and observation --------------------------------------------------------------
    def ip(self, *args: str) -> str:
        """`ip ARGS...` run inside (for what the netlink methods above do not cover)."""
        return self.run(["ip", *args]).stdout

    def sysctl(self, name: str, value: str | int, *, missing_ok: bool = False) -> None:
        proc = self.run(["sysctl", "-q", "-w", f"{name}={value}"], check=False)
        if proc.returncode != 0 and not (missing_ok and "No such file" in (proc.stderr or "")):
            raise NamespaceError(f"sysctl {name}={value} in {self.name}: {(proc.stderr or '').strip()}")

    def sysctl_get(self, name: str) -> str:
        return self.run(["sysctl", "-n", name]).stdout.strip()

    def nstat(self) -> dict[str, int]:
        """Absolute SNMP/netstat counters of this namespace, by Linux name (TcpExtPAWSEstab, TcpInSegs).

        `-a` ignores and `-s` never writes nstat's history file, so readings are absolute and calls
        from different namespaces cannot disturb each other.
        """
        return parse_nstat_json(self.run(["nstat", "-a", "-s", "-z", "-j"]).stdout)


@contextlib.contextmanager
def netns(name: str | None = None, *, disable_ipv6: bool = True) -> Iterator[Namespace]:
    """A fresh namespace for the duration of the block, deleted on any exit (errors, Ctrl-C)."""
    ns = Namespace(name, disable_ipv6=disable_ipv6)
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def stale_namespaces() -> list[str]:
    """Namespaces named by `unique_name()` whose creating process is gone and that hold no process:
    leftovers of a run killed by a signal whose default action ends it (SIGTERM, SIGKILL), where neither
    `finally` nor atexit ran. Any other namespace is never listed (a reused PID keeps its leftover)."""
    if not NETNS_DIR.is_dir():
        return []
    stale = []
    for entry in sorted(NETNS_DIR.iterdir()):
        match = _OWN_NAME.fullmatch(entry.name)
        if match is None or _process_exists(int(match.group(1))):
            continue
        inside = subprocess.run(
            ["ip", "netns", "pids", entry.name], capture_output=True, text=True, check=False
        )
        if inside.returncode == 0 and not inside.stdout.strip():
            stale.append(entry.name)
    return stale


def prune_stale_namespaces() -> list[str]:
    """Delete what `stale_namespaces()` lists; returns the names deleted."""
    deleted = []
    for name in stale_namespaces():
        proc = subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        if proc.returncode == 0:
            deleted.append(name)
    return deleted
