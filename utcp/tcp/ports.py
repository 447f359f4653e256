"""Ephemeral port allocators: which source port `connect()` and `bind(0)` pick.

`LinuxPortAllocator` mimics Linux 6.x:

- connect() without a bound port: `__inet_hash_connect()` (net/ipv4/inet_hashtables.c). The start offset is
  per destination: `port_offset = secure_ipv4_port_ephemeral(saddr, daddr, dport)` (a keyed siphash, 64
  bits); `index = port_offset & (INET_TABLE_PERTURB_SIZE - 1)`;
  `offset = (table_perturb[index] + (port_offset >> 32)) % remaining`, rounded down to even. Ports of the
  range start's parity are scanned first, stepping by 2 from `low + offset`, then the other parity. On
  success `table_perturb[index] += max(i, get_random_u32_below(8) * step) + step`, where `i` is how far the
  scan went: with no contention the next connect to the same destination starts 2..16 ports further on.
- bind(0): `inet_csk_find_open_port()` (net/ipv4/inet_connection_sock.c) starts at a random *odd* offset
  (`offset |= 1`), i.e. the other parity, "to not pollute connect() users", then tries the remaining parity.
- `IP_LOCAL_PORT_RANGE` (socket option 51, Linux 6.3+) makes `__inet_hash_connect()` step by 1 over any
  port; Linux <= 4.5 did the same for connect() and bind(0). `step_one=True` models both.

Facts measured on Linux 6.18 (SCENARIOS.md, E), which this model reproduces: with
`ip_local_port_range = "40000 40010"` and nothing listening, repeated connects to 127.0.0.1:P hand out P
(and so self-connect) for P=40006 after 4-8 attempts and P=40000 after 1-2 (both typical draws: with no
contention each attempt lands on one of 40000, 40002, ..., 40008), never an odd P and never 40010. Why
never 40010: `high++` makes the range [40000, 40011), `remaining = 11 & ~1 = 10`, so the first candidate
`low + (offset % 10 & ~1)` is at most 40008. 40010 is only reached as a *later* candidate of the even scan
(start 40008, next 40010 < 40011), which needs 40008 busy; a refused connect leaves nothing busy. (A pass
tries `remaining / 2 = 5` ports and wraps by subtracting 10, so with 11 ports it never covers all six even
ones: a pass from 40000 stops at 40008, one from 40002..40008 visits 40010 but not 40000. Linux does this.)
A failed connect does not advance table_perturb, so retrying one destination repeats the same pass.

Every allocator keeps its own state (no module globals); randomness comes from its own `random.Random`.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable
from typing import Protocol

from utcp.tcp.addr import PackedAddresses

__all__ = [
    "LINUX_DEFAULT_RANGE",
    "LinuxPortAllocator",
    "PortAllocator",
    "RandomPortAllocator",
    "SequentialPortAllocator",
]

LINUX_DEFAULT_RANGE = (32768, 60999)  # net.ipv4.ip_local_port_range default
INET_TABLE_PERTURB_SIZE = 1 << 16  # Linux CONFIG_INET_TABLE_PERTURB_ORDER = 16
_U32 = 0xFFFFFFFF
_OFFSET_CACHE = 4096  # destinations whose port_offset is kept


class PortAllocator(Protocol):
    """What a host asks when it needs a local port."""

    def connect_port(
        self, local_addr: str, remote_addr: str, remote_port: int, in_use: Callable[[int], bool]
    ) -> int | None:
        """A source port for connect(); `in_use(port)` says whether it would collide for this 4-tuple.

        None when every port in the range is taken (Linux: EADDRNOTAVAIL).
        """
        ...

    def bind_port(self, local_addr: str, in_use: Callable[[int], bool]) -> int | None:
        """A port for bind(0); `in_use(port)` says whether the port is bound at all. None when exhausted."""
        ...


def _check_range(port_range: tuple[int, int]) -> tuple[int, int]:
    low, high = port_range
    if not (1 <= low <= high <= 65535):
        raise ValueError(f"port range must satisfy 1 <= low <= high <= 65535, got {port_range!r}")
    return low, high


class LinuxPortAllocator:
    """Linux 6.x ephemeral port choice (see the module docstring for the functions it mimics)."""

    def __init__(
        self,
        port_range: tuple[int, int] = LINUX_DEFAULT_RANGE,
        secret: bytes | None = None,
        *,
        step_one: bool = False,
        seed: int | None = None,
        reserved: frozenset[int] = frozenset(),
    ) -> None:
        """`secret` keys the per-destination hash (Linux net_secret); `seed` seeds the random draws.

        With a secret but no seed, the draws are seeded from the secret, so a given secret is deterministic.
        `reserved` mimics net.ipv4.ip_local_reserved_ports (inet_is_local_reserved_port).
        """
        self.low, self.high = _check_range(port_range)
        if secret is None:
            secret = random.Random(seed).randbytes(16) if seed is not None else secrets.token_bytes(16)
        if not 1 <= len(secret) <= 64:
            raise ValueError("secret must be 1..64 bytes (blake2b key)")
        self._secret = secret
        self._rng = random.Random(seed if seed is not None else secret)
        self.step_one = step_one
        self.reserved = reserved
        # Linux fills table_perturb[] with random bytes once (get_random_sleepable_once); we draw lazily.
        self._table_perturb: dict[int, int] = {}
        self._packed = PackedAddresses()
        # (saddr, daddr, dport) -> port_offset: a client connects to the same few destinations over and over
        self._offsets: dict[tuple[str, str, int], int] = {}

    def port_offset(self, local_addr: str, remote_addr: str, remote_port: int) -> int:
        """64-bit keyed hash of (saddr, daddr, dport): Linux secure_ipv4_port_ephemeral (siphash)."""
        dest = (local_addr, remote_addr, remote_port)
        value = self._offsets.get(dest)
        if value is None:
            data = self._packed(local_addr) + self._packed(remote_addr) + remote_port.to_bytes(2, "big")
            digest = hashlib.blake2b(data, key=self._secret, digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            if len(self._offsets) >= _OFFSET_CACHE:
                self._offsets.clear()  # bounded: a scan of many destinations cannot grow it without end
            self._offsets[dest] = value
        return value

    def _perturb(self, index: int) -> int:
        value = self._table_perturb.get(index)
        if value is None:
            value = self._rng.getrandbits(32)
            self._table_perturb[index] = value
        return value

    def connect_port(
        self, local_addr: str, remote_addr: str, remote_port: int, in_use: Callable[[int], bool]
    ) -> int | None:
        """Linux __inet_hash_connect(): per-destination offset, low's parity first, step 2."""
        low = self.low
        high = self.high + 1  # [32768, 60999] -> [32768, 61000[
        step = 1 if self.step_one else 2
        remaining = high - low
        if not self.step_one and remaining > 1:
            remaining &= ~1
        port_offset = self.port_offset(local_addr, remote_addr, remote_port)
        index = port_offset & (INET_TABLE_PERTURB_SIZE - 1)
        perturb = self._perturb(index)
        offset = ((perturb + (port_offset >> 32)) & _U32) % remaining
        if not self.step_one:
            offset &= ~1  # first pass: ports of @low parity
        while True:
            port = low + offset
            i = 0
            while i < remaining:
                if port >= high:
                    port -= remaining
                if port not in self.reserved and not in_use(port):
                    # "add a little bit of randomness to the next source port": max() with a random so
                    # that low contention gives maximal randomness.
                    bump = max(i, self._rng.randrange(8) * step)
                    self._table_perturb[index] = (perturb + bump + step) & _U32
                    return port
                i += step
                port += step
            if self.step_one:
                return None
            offset += 1
            if (offset & 1) and remaining > 1:
                continue  # other_parity_scan
            return None  # -EADDRNOTAVAIL; table_perturb is left alone

    def bind_port(self, local_addr: str, in_use: Callable[[int], bool]) -> int | None:
        """Linux inet_csk_find_open_port(): random odd offset (other parity than connect()), step 2.

        The SO_REUSEADDR "attempt_half" split of the range is not modelled (no such knob here).
        """
        low = self.low
        high = self.high + 1
        remaining = high - low
        if self.step_one:
            # Linux <= 4.5 inet_csk_get_port(): random start, step 1, no parity preference.
            offset = self._rng.randrange(remaining)
            port = low + offset
            for _ in range(remaining):
                if port >= high:
                    port -= remaining
                if port not in self.reserved and not in_use(port):
                    return port
                port += 1
            return None
        if remaining > 1:
            remaining &= ~1
        offset = self._rng.randrange(remaining) | 1  # "do the opposite to not pollute connect() users"
        while True:
            port = low + offset
            for _ in range(0, remaining, 2):
                if port >= high:
                    port -= remaining
                if port not in self.reserved and not in_use(port):
                    return port
                port += 2
            offset = (offset - 1) & _U32
            if not offset & 1:
                continue  # other_parity_scan
            return None


class SequentialPortAllocator:
    """The traditional BSD choice: one counter, step 1, shared by every destination (RFC 6056 2.2)."""

    def __init__(self, port_range: tuple[int, int] = LINUX_DEFAULT_RANGE) -> None:
        self.low, self.high = _check_range(port_range)
        self._next = self.low

    def _scan(self, in_use: Callable[[int], bool]) -> int | None:
        count = self.high - self.low + 1
        port = self._next
        for _ in range(count):
            if not in_use(port):
                self._next = self.low if port == self.high else port + 1
                return port
            port = self.low if port == self.high else port + 1
        return None

    def connect_port(
        self, local_addr: str, remote_addr: str, remote_port: int, in_use: Callable[[int], bool]
    ) -> int | None:
        """The next port after the last one handed out that does not collide."""
        return self._scan(in_use)

    def bind_port(self, local_addr: str, in_use: Callable[[int], bool]) -> int | None:
        """The next port after the last one handed out that is not bound."""
        return self._scan(in_use)


class RandomPortAllocator:
    """RFC 6056 3.3.1 Algorithm 1 (simple port randomization): random start, then step 1 with wrap."""

    def __init__(self, port_range: tuple[int, int] = LINUX_DEFAULT_RANGE, seed: int | None = None) -> None:
        self.low, self.high = _check_range(port_range)
        self._rng = random.Random(seed)

    def _scan(self, in_use: Callable[[int], bool]) -> int | None:
        count = self.high - self.low + 1
        port = self.low + self._rng.randrange(count)
        for _ in range(count):
            if not in_use(port):
                return port
            port = self.low if port == self.high else port + 1
        return None

    def connect_port(
        self, local_addr: str, remote_addr: str, remote_port: int, in_use: Callable[[int], bool]
    ) -> int | None:
        """A random free port for this 4-tuple."""
        return self._scan(in_use)

    def bind_port(self, local_addr: str, in_use: Callable[[int], bool]) -> int | None:
        """A random unbound port."""
        return self._scan(in_use)
