"""What a host tells its runtime: frozen values drained with `Host.events()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from utcp.tcp.connection import Connection
    from utcp.tcp.host import Listener


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed; a passive open now waits in its listener's accept queue."""

    connection: Connection
    listener: Listener | None = None


@dataclass(frozen=True, slots=True)
class DataReceived:
    """In-order bytes became readable (`Connection.read`)."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class EofReceived:
    """The peer's FIN arrived in order: no more data will come."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class SendSpace:
    """Send buffer space was freed (data acknowledged)."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class Reset:
    """The connection was reset (peer RST, local abort) or failed (timeout, refused)."""

    connection: Connection
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED and left the host's tables: no further events."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class SegmentDropped:
    """A packet was dropped; `counter` is the Linux MIB name it was counted under, if any."""

    reason: str
    counter: str | None = None
    summary: str = ""


Event: TypeAlias = Connected | DataReceived | EofReceived | SendSpace | Reset | Closed | SegmentDropped
