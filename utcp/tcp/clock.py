"""TCP timestamp clocks (RFC 7323 section 5.4): what TSval a host stamps at time `now`.

Linux: TSval = tcp_clock_ms() + tp->tsoffset, where tsoffset = secure_tcp_ts_off(net, saddr, daddr), a
siphash of the address pair keyed by ts_secret, when net.ipv4.tcp_timestamps=1 (RFC 7323 5.4: a random
offset per connection, here per address pair as Linux does), and 0 when tcp_timestamps=2.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
from typing import Literal

from utcp.tcp.addr import PackedAddresses

__all__ = ["OffsetMode", "TimestampClock"]

OffsetMode = Literal["per-pair", "zero", "fixed"]
_U32 = 0xFFFFFFFF
# now * hz is a float; 0.007 * 1000 gives 7.000000000000001 but 0.57 * 100 gives 56.99999999999999.
TICK_EPSILON = 1e-6
_OFFSET_CACHE = 4096  # address pairs whose offset is kept


class TimestampClock:
    """A TSval source. Immutable config; `tsval()` is a pure function of its arguments."""

    __slots__ = ("_offsets", "_packed", "_secret", "fixed_offset", "frozen_at", "hz", "offset_mode", "skew")

    def __init__(
        self,
        hz: int = 1000,
        *,
        offset_mode: OffsetMode = "per-pair",
        fixed_offset: int = 0,
        secret: bytes | None = None,
        frozen_at: int | None = None,
        skew: float = 1.0,
        seed: int | None = None,
    ) -> None:
        """`hz`: ticks per second (Linux 1000). `offset_mode`: "per-pair" (tcp_timestamps=1), "zero"
        (tcp_timestamps=2) or "fixed" (`fixed_offset` for every pair). `secret` keys the per-pair hash;
        without one `seed` derives it, else it is random. `frozen_at`: every TSval is this constant.
        `skew` multiplies the clock rate (1.01 runs 1% fast)."""
        if hz <= 0:
            raise ValueError("hz must be positive")
        if offset_mode not in ("per-pair", "zero", "fixed"):
            raise ValueError(f"unknown offset_mode {offset_mode!r}")
        if skew <= 0:
            raise ValueError("skew must be positive")
        if frozen_at is not None and not 0 <= frozen_at <= _U32:
            raise ValueError("frozen_at must fit in 32 bits")
        if secret is None:
            secret = random.Random(seed).randbytes(16) if seed is not None else secrets.token_bytes(16)
        if not 1 <= len(secret) <= 32:
            raise ValueError("secret must be 1..32 bytes (blake2s key)")
        self.hz = hz
        self.offset_mode: OffsetMode = offset_mode
        self.fixed_offset = fixed_offset & _U32
        self._secret = secret
        self.frozen_at = frozen_at
        self.skew = skew
        self._packed = PackedAddresses()
        # per-pair offsets already hashed: a host meets the same pair on every connection to a peer
        self._offsets: dict[tuple[str, str], int] = {}

    def offset(self, local_addr: str, remote_addr: str) -> int:
        """The offset added for this address pair (Linux secure_tcp_ts_off, or 0, or fixed)."""
        if self.offset_mode == "zero":
            return 0
        if self.offset_mode == "fixed":
            return self.fixed_offset
        pair = (local_addr, remote_addr)
        value = self._offsets.get(pair)
        if value is None:
            data = self._packed(local_addr) + self._packed(remote_addr)
            value = int.from_bytes(hashlib.blake2s(data, key=self._secret, digest_size=4).digest(), "big")
            if len(self._offsets) >= _OFFSET_CACHE:
                self._offsets.clear()  # bounded: a flood of peer addresses cannot grow it without end
            self._offsets[pair] = value
        return value

    def ticks(self, now: float) -> int:
        """Clock ticks elapsed at `now` (before the offset and the 32-bit wrap). Connection.tsval_at
        works the same out inline."""
        return math.floor(now * self.hz * self.skew + TICK_EPSILON)

    def tsval(self, local_addr: str, remote_addr: str, now: float) -> int:
        """The 32-bit TSval to send from `local_addr` to `remote_addr` at `now`."""
        if self.frozen_at is not None:
            return self.frozen_at
        return (self.ticks(now) + self.offset(local_addr, remote_addr)) & _U32
