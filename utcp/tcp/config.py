"""Per-connection knobs. Defaults follow Linux 6.x where it has one."""

from __future__ import annotations

from dataclasses import dataclass

from utcp.tcp.errors import TcpUsageError


@dataclass(frozen=True, slots=True)
class TcpConfig:
    """Every knob a connection has; pass a modified copy (`dataclasses.replace`) to bend one."""

    mss: int | None = None  # advertised MSS; None: from the host's MTU (MTU - 40)
    window_scale: int | None = 7  # shift we offer; None: do not offer (RFC 7323 2.2)
    sack: bool = True  # offer SACK-permitted (RFC 2018)
    timestamps: bool = True  # offer timestamps (RFC 7323 3)
    recv_buffer: int = 256 * 1024
    send_buffer: int = 256 * 1024
    nodelay: bool = False  # disable Nagle (RFC 9293 3.7.4)
    delayed_ack: float = 0.040  # Linux TCP_DELACK_MIN; 0 acks every segment at once
    initial_rto: float = 1.0  # RFC 6298 2.1
    min_rto: float = 0.200  # Linux TCP_RTO_MIN
    max_rto: float = 120.0  # Linux TCP_RTO_MAX
    syn_retries: int = 6  # Linux tcp_syn_retries
    synack_retries: int = 5  # Linux tcp_synack_retries
    retries: int = 15  # Linux tcp_retries2: data retransmissions before failing
    time_wait: float = 60.0  # 2*MSL (Linux TCP_TIMEWAIT_LEN)
    fin_wait2_timeout: float = 60.0  # Linux tcp_fin_timeout for orphaned FIN_WAIT_2
    initial_cwnd: int = 10  # segments (RFC 6928, Linux TCP_INIT_CWND)
    keepalive_idle: float | None = None  # None: keepalive off
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    persist_min: float = 0.200  # first zero-window probe interval
    # connect() never takes an ephemeral port that would make local == remote (a self-connect, SCENARIOS
    # E); Go's net package gets the same by closing a self-connected socket and redialing.
    refuse_self_connect: bool = False
    # Linux tcp_syncookies=1: a listener whose SYN queue is full answers with a SYN cookie
    # (utcp.tcp.syncookies) instead of dropping the SYN. Off by default: older tests expect the drop.
    syn_cookies: bool = False

    def __post_init__(self) -> None:
        # API misuse is caught at construction, not when a peer first fills a buffer
        for name in ("recv_buffer", "send_buffer", "initial_cwnd"):
            if getattr(self, name) < 1:
                raise TcpUsageError(f"TcpConfig.{name} must be at least 1, not {getattr(self, name)}")
        if self.mss is not None and not 1 <= self.mss <= 65535:
            raise TcpUsageError(f"TcpConfig.mss must be in 1..65535, not {self.mss}")
