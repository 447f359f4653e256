"""Random link impairments (loss, duplication, reordering, delay, jitter), pure and generic over the packet.

The same object serves the virtual-time simulator and the trio runtime (between a TUN device and a utcp
host): `apply(packet, now)` says when each copy of the packet should be delivered, and never sleeps.
Like Linux netem, but with reordering made explicit: a "reordered" packet is held back by
`reorder_delay`, so packets sent after it overtake it; jitter alone keeps the order unless
`jitter_reorders` is set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Impairment", "ImpairmentStats", "RandomImpairment"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Impairment:
    """What a link does to packets. Probabilities are per packet, delays in seconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0  # fixed extra one-way delay
    jitter: float = 0.0  # uniform extra delay in [0, jitter]
    reorder_delay: float = 0.010  # how long a reordered packet is held back
    duplicate_delay: float = 0.0  # the duplicate arrives this much after the original
    jitter_reorders: bool = False  # let jitter alone reorder (netem's default behaviour)
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("delay", "jitter", "reorder_delay", "duplicate_delay"):
            value = getattr(self, name)
            if value < 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    @property
    def is_noop(self) -> bool:
        """True when the impairment delivers every packet once, at once, in order."""
        return (
            self.loss == 0.0
            and self.duplicate == 0.0
            and self.reorder == 0.0
            and self.delay == 0.0
            and self.jitter == 0.0
        )


@dataclass(slots=True)
class ImpairmentStats:
    """What a RandomImpairment did, packet by packet (a packet can be both reordered and duplicated)."""

    packets: int = 0  # packets offered
    delivered: int = 0  # copies scheduled for delivery (duplicates included)
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0  # packets given any extra delay


class RandomImpairment(Generic[P]):
    """Applies an `Impairment` with its own seeded `random.Random`; keeps counts in `.stats`."""

    def __init__(
        self, config: Impairment, *, salt: str = "", key: Callable[[P], Hashable] | None = None
    ) -> None:
        """`salt` separates the random streams of impairments sharing one config (e.g. two directions).

        `key` makes a packet's fate depend on what it is rather than on its place in the stream: the draws
        for a packet come from (seed, salt, key(packet), how often that key was seen). Two runs that send
        the same data then lose, reorder and duplicate the same original segments even when their
        algorithms send different packets in between, which is what an A/B comparison needs.
        """
        self.config = config
        self._salt = salt
        self._key = key
        self._seen: dict[Hashable, int] = {}
        self._rng = random.Random(f"{config.seed}/{salt}") if config.seed is not None else random.Random()
        self.stats = ImpairmentStats()
        self._last_in_order = float("-inf")  # latest delivery time given to a non-reordered packet

    def apply(self, packet: P, now: float) -> list[tuple[float, P]]:
        """Delivery times for `packet` sent at `now`, earliest first; empty when it is dropped."""
        cfg = self.config
        rng = self._rng
        if self._key is not None:
            key = self._key(packet)
            nth = self._seen.get(key, 0)
            self._seen[key] = nth + 1
            rng.seed(f"{cfg.seed}/{self._salt}/{key!r}/{nth}")
        self.stats.packets += 1
        if cfg.loss and rng.random() < cfg.loss:
            self.stats.dropped += 1
            return []
        extra = cfg.delay + (rng.uniform(0.0, cfg.jitter) if cfg.jitter else 0.0)
        reordered = bool(cfg.reorder) and rng.random() < cfg.reorder
        if reordered:
            self.stats.reordered += 1
            at = now + extra + cfg.reorder_delay
        else:
            at = now + extra
            if not cfg.jitter_reorders:
                # jitter must not let a later packet overtake an earlier one (FIFO link)
                at = max(at, self._last_in_order)
            self._last_in_order = at
        if at > now:
            self.stats.delayed += 1
        out = [(at, packet)]
        if cfg.duplicate and rng.random() < cfg.duplicate:
            self.stats.duplicated += 1
            out.append((at + cfg.duplicate_delay, packet))
        self.stats.delivered += len(out)
        return out
