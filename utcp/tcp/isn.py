"""Initial sequence numbers, RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey).

M is a timer; RFC 6528 section 3 asks for 4-microsecond ticks. Linux `secure_tcp_seq()`
(net/core/secure_seq.c) uses `seq_scale()`: siphash of the 4-tuple plus `ktime_get_real_ns() >> 6`
(64 ns ticks, wrapping every ~274 s). We do the same with `now` (seconds) and a keyed BLAKE2s for F.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import struct

from utcp.tcp.addr import PackedAddresses

__all__ = ["IsnGenerator"]

_U32 = 0xFFFFFFFF
_PORTS = struct.Struct("!HH")
_PAIR_CACHE = 4096  # address pairs whose packed bytes are kept


class IsnGenerator:
    """RFC 6528 ISN generator. Immutable once built; `isn()` is a pure function of its arguments."""

    __slots__ = ("_keyed", "_packed", "_pairs", "_secret", "fixed", "tick_shift")

    def __init__(
        self,
        secret: bytes | None = None,
        rng_seed: int | None = None,
        *,
        fixed: int | None = None,
        tick_shift: int = 6,
    ) -> None:
        """`secret` keys F; without one, `rng_seed` derives it (deterministic), else it is random.

        `fixed` forces every ISN (tests). `tick_shift`: M = nanoseconds >> tick_shift (Linux: 6).
        """
        if secret is None:
            if rng_seed is not None:
                secret = random.Random(rng_seed).randbytes(16)
            else:
                secret = secrets.token_bytes(16)
        if not 1 <= len(secret) <= 32:
            raise ValueError("secret must be 1..32 bytes (blake2s key)")
        if fixed is not None and not 0 <= fixed <= _U32:
            raise ValueError("fixed ISN must fit in 32 bits")
        if tick_shift < 0:
            raise ValueError("tick_shift must be >= 0")
        self._secret = secret
        # F's hash with the key already taken in: a copy per ISN costs less than keying a new one
        self._keyed = hashlib.blake2s(key=secret, digest_size=4)
        self.fixed = fixed
        self.tick_shift = tick_shift
        self._packed = PackedAddresses()
        # (local, remote) -> their packed bytes, the hash input's first part: a host meets few pairs
        self._pairs: dict[tuple[str, str], bytes] = {}

    def _pair(self, local_addr: str, remote_addr: str) -> bytes:
        pair = (local_addr, remote_addr)
        value = self._pairs.get(pair)
        if value is None:
            value = self._packed(local_addr) + self._packed(remote_addr)
            if len(self._pairs) >= _PAIR_CACHE:
                self._pairs.clear()  # bounded: a flood of peer addresses cannot grow it without end
            self._pairs[pair] = value
        return value

    def offset(self, local_addr: str, local_port: int, remote_addr: str, remote_port: int) -> int:
        """F: the keyed hash of the 4-tuple (Linux: siphash_3u32(saddr, daddr, sport << 16 | dport))."""
        h = self._keyed.copy()
        h.update(self._pair(local_addr, remote_addr) + _PORTS.pack(local_port, remote_port))
        return int.from_bytes(h.digest(), "big")

    def timer(self, now: float) -> int:
        """M: `now` in nanoseconds >> tick_shift (Linux seq_scale)."""
        return (round(now * 1_000_000_000) >> self.tick_shift) & _U32

    def isn(self, local_addr: str, local_port: int, remote_addr: str, remote_port: int, now: float) -> int:
        """The ISN for a new connection on this 4-tuple at time `now`."""
        if self.fixed is not None:
            return self.fixed
        return (self.timer(now) + self.offset(local_addr, local_port, remote_addr, remote_port)) & _U32
