"""The sender's SACK scoreboard (RFC 2018 3, RFC 6675 4): which bytes above SND.UNA the peer holds.

Ranges are stream offsets [start, end), sorted, merged, all above snd_una. Usually a handful of entries.
"""

from __future__ import annotations

import bisect

__all__ = ["Scoreboard"]


class Scoreboard:
    """SACKed ranges above the cumulative ACK."""

    __slots__ = ("_ends", "_starts", "sacked")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.sacked = 0  # bytes

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def highest(self) -> int | None:
        """End of the highest SACKed range (RFC 6675 HighACK-side "highest SACKed" sequence)."""
        return self._ends[-1] if self._ends else None

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, start: int, end: int) -> int:
        """Mark [start, end) SACKed; returns how many bytes were newly SACKed."""
        if end <= start:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect.bisect_left(ends, start)  # first range ending at/after start (touching merges)
        j = i
        new_start, new_end = start, end
        covered = 0
        while j < len(starts) and starts[j] <= end:
            new_start = min(new_start, starts[j])
            new_end = max(new_end, ends[j])
            covered += ends[j] - starts[j]
            j += 1
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        added = (new_end - new_start) - covered
        self.sacked += added
        return added

    def advance(self, snd_una: int) -> None:
        """The cumulative ACK moved to `snd_una`: forget what it covers."""
        starts, ends = self._starts, self._ends
        n = 0
        while n < len(starts) and ends[n] <= snd_una:
            self.sacked -= ends[n] - starts[n]
            n += 1
        if n:
            del starts[:n], ends[:n]
        if starts and starts[0] < snd_una:
            self.sacked -= snd_una - starts[0]
            starts[0] = snd_una

    def lost_boundary(self, threshold: int) -> int | None:
        """RFC 6675 IsLost: the highest offset p with at least `threshold` SACKed bytes above it; holes
        below p count as lost. None when fewer bytes are SACKed."""
        acc = 0
        starts, ends = self._starts, self._ends
        for i in range(len(starts) - 1, -1, -1):
            size = ends[i] - starts[i]
            if acc + size >= threshold:
                return ends[i] - (threshold - acc)
            acc += size
        return None

    def is_sacked(self, offset: int) -> bool:
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and self._ends[i] > offset

    def next_hole(self, offset: int, limit: int) -> tuple[int, int] | None:
        """The first un-SACKed range [s, e) with offset <= s < limit, e clipped to limit."""
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and ends[i] > offset:
            offset = ends[i]  # inside a SACKed range: skip it
            i += 1
        else:
            i += 1
        if offset >= limit:
            return None
        end = starts[i] if i < len(starts) else limit
        return offset, min(end, limit)

    def unsacked_between(self, a: int, b: int) -> int:
        """Bytes in [a, b) that are not SACKed."""
        if b <= a:
            return 0
        total = b - a
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(ends, a)
        while i < len(starts) and starts[i] < b:
            total -= min(ends[i], b) - max(starts[i], a)
            i += 1
        return total

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self.sacked = 0


class _SharedEmptyScoreboard(Scoreboard):
    """EMPTY_SCOREBOARD's class: reads like any empty scoreboard, refuses to hold anything."""

    __slots__ = ()

    def add(self, start: int, end: int) -> int:
        raise TypeError("EMPTY_SCOREBOARD is shared: give the connection its own Scoreboard first")

    def clear(self) -> None:
        raise TypeError("EMPTY_SCOREBOARD is shared: give the connection its own Scoreboard first")


# What a connection holds until the peer first SACKs something (most never do): one shared empty
# scoreboard instead of three objects per connection for the garbage collector to walk.
EMPTY_SCOREBOARD: Scoreboard = _SharedEmptyScoreboard()
