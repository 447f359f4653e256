"""TCP connection states (RFC 9293 section 3.3.2) and the transitions that are pure tables.

The segment-driven transitions that need more than a lookup (handshake, RST) live in
`utcp.tcp.connection`; the ones below are the same for every connection, so they are data.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Final

__all__ = [
    "CLOSE_TRANSITIONS",
    "FIN_ACKED_TRANSITIONS",
    "FIN_RECEIVED_TRANSITIONS",
    "SHUTDOWN_TRANSITIONS",
    "SYNCHRONIZED",
    "States",
    "TcpState",
]


class TcpState(enum.Enum):
    """RFC 9293 state names."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members compare by identity, so identity hashing is consistent with it: object's C hash instead of
    # Enum.__hash__ (a Python call, hash(self._name_)) for every transition-table lookup and set test.
    __hash__ = object.__hash__


S = TcpState


class States:
    """TcpState's members as plain class attributes, for the engine's hot paths: on Python 3.11 reading a
    member through the enum class (`TcpState.ESTABLISHED`) goes through EnumType.__getattr__ and costs
    ~6x an ordinary class attribute, and the engine reads states several times per segment. Same
    objects: `States.ESTABLISHED is TcpState.ESTABLISHED`."""

    CLOSED: Final = TcpState.CLOSED
    LISTEN: Final = TcpState.LISTEN
    SYN_SENT: Final = TcpState.SYN_SENT
    SYN_RECEIVED: Final = TcpState.SYN_RECEIVED
    ESTABLISHED: Final = TcpState.ESTABLISHED
    FIN_WAIT_1: Final = TcpState.FIN_WAIT_1
    FIN_WAIT_2: Final = TcpState.FIN_WAIT_2
    CLOSE_WAIT: Final = TcpState.CLOSE_WAIT
    CLOSING: Final = TcpState.CLOSING
    LAST_ACK: Final = TcpState.LAST_ACK
    TIME_WAIT: Final = TcpState.TIME_WAIT


SYNCHRONIZED: Final = frozenset(
    {
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.CLOSE_WAIT,
        S.CLOSING,
        S.LAST_ACK,
        S.TIME_WAIT,
    }
)
"""States where both ISNs are known (RFC 9293 3.5.2 "synchronized")."""

# close() (RFC 9293 3.10.4; Linux tcp_close_state new_state[]): (next state, send a FIN).
# SYN-SENT: delete the TCB. States already closing stay where they are.
CLOSE_TRANSITIONS: Final = MappingProxyType(
    {
        S.SYN_SENT: (S.CLOSED, False),
        S.SYN_RECEIVED: (S.FIN_WAIT_1, True),
        S.ESTABLISHED: (S.FIN_WAIT_1, True),
        S.CLOSE_WAIT: (S.LAST_ACK, True),
        S.FIN_WAIT_1: (S.FIN_WAIT_1, False),
        S.FIN_WAIT_2: (S.FIN_WAIT_2, False),
        S.CLOSING: (S.CLOSING, False),
        S.LAST_ACK: (S.LAST_ACK, False),
        S.TIME_WAIT: (S.TIME_WAIT, False),
        S.CLOSED: (S.CLOSED, False),
    }
)

# shutdown(SHUT_WR): as close() for the states that can still send (Linux tcp_shutdown); SYN-SENT queues
# the FIN until ESTABLISHED (RFC 9293 3.10.4 allows queueing) instead of dropping the connection.
SHUTDOWN_TRANSITIONS: Final = MappingProxyType(
    {
        S.SYN_RECEIVED: (S.FIN_WAIT_1, True),
        S.ESTABLISHED: (S.FIN_WAIT_1, True),
        S.CLOSE_WAIT: (S.LAST_ACK, True),
    }
)

# Our FIN was acknowledged (RFC 9293 3.10.7.4, fifth, ACK processing in each state).
FIN_ACKED_TRANSITIONS: Final = MappingProxyType(
    {
        S.FIN_WAIT_1: S.FIN_WAIT_2,
        S.CLOSING: S.TIME_WAIT,
        S.LAST_ACK: S.CLOSED,
    }
)

# The peer's FIN arrived in order (RFC 9293 3.10.7.4, eighth, check the FIN bit). FIN-WAIT-1 whose FIN is
# already acked became FIN-WAIT-2 during ACK processing, so FIN-WAIT-1 here means simultaneous close.
FIN_RECEIVED_TRANSITIONS: Final = MappingProxyType(
    {
        S.SYN_RECEIVED: S.CLOSE_WAIT,
        S.ESTABLISHED: S.CLOSE_WAIT,
        S.FIN_WAIT_1: S.CLOSING,
        S.FIN_WAIT_2: S.TIME_WAIT,
        S.CLOSE_WAIT: S.CLOSE_WAIT,
        S.CLOSING: S.CLOSING,
        S.LAST_ACK: S.LAST_ACK,
        S.TIME_WAIT: S.TIME_WAIT,
    }
)
