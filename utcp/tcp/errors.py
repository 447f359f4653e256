"""Errors split by cause: the caller misused the API, or the connection failed."""


class TcpUsageError(Exception):
    """The caller did something the API does not allow (send after shutdown, port in use, ...)."""


class ConnectionFailed(Exception):
    """The connection failed for a reason the peer or the network caused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectionReset(ConnectionFailed):
    """An RST ended the connection (RFC 9293 3.10.7)."""


class ConnectionRefused(ConnectionFailed):
    """An RST answered our SYN (RFC 9293 3.10.7.3, SYN-SENT)."""


class ConnectionTimedOut(ConnectionFailed):
    """Retransmissions ran out (RFC 9293 3.8.3, R2) or keepalive probes went unanswered."""


class ConnectionAborted(ConnectionFailed):
    """The local side aborted the connection."""
