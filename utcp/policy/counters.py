"""Counter names: utcp counts under Linux's SNMP/netstat MIB names, without the `Tcp`/`TcpExt` prefix
`nstat` adds, so one assertion can read a utcp host's `counters` or a kernel's `nstat -az`.

`linux_counter_name("PAWSEstab") == "TcpExtPAWSEstab"`, `linux_counter_name("EstabResets") ==
"TcpEstabResets"`: RFC 4022's TCP-MIB objects (Linux `snmp4_tcp_list`, shown as `Tcp*`) versus Linux's
own extensions (`snmp4_net_list`, shown as `TcpExt*`).
"""

from __future__ import annotations

__all__ = [
    "POLICY_COUNTERS",
    "TCP_MIB_COUNTERS",
    "linux_counter_name",
    "utcp_counter_name",
]

# Linux net/ipv4/proc.c snmp4_tcp_list: the RFC 4022 TCP group, printed by nstat as Tcp<Name>.
TCP_MIB_COUNTERS = frozenset(
    {
        "RtoAlgorithm",
        "RtoMin",
        "RtoMax",
        "MaxConn",
        "ActiveOpens",
        "PassiveOpens",
        "AttemptFails",
        "EstabResets",
        "CurrEstab",
        "InSegs",
        "OutSegs",
        "RetransSegs",
        "InErrs",
        "OutRsts",
        "InCsumErrors",
    }
)

# Every counter a policy decision (or the engine carrying one out) may bump. All exist in Linux 6.18's
# `nstat -az` except PAWSPassive, which left with tcp_tw_recycle in Linux 4.12.
POLICY_COUNTERS = frozenset(
    {
        "PAWSEstab",  # LINUX_MIB_PAWSESTABREJECTED
        "PAWSActive",  # LINUX_MIB_PAWSACTIVEREJECTED
        "PAWSPassive",  # LINUX_MIB_PAWSPASSIVEREJECTED (<= 4.11)
        "PAWSOldAck",  # LINUX_MIB_PAWS_OLD_ACK (>= 6.15)
        "PAWSTimewait",  # LINUX_MIB_PAWS_TW_REJECTED (>= 6.15)
        "TSEcrRejected",  # LINUX_MIB_TSECRREJECTED (>= 6.15)
        "TCPChallengeACK",
        "TCPSYNChallenge",
        "TCPACKSkippedChallenge",
        "TCPACKSkippedSynRecv",
        "TCPACKSkippedPAWS",
        "TCPACKSkippedSeq",
        "TCPACKSkippedTimeWait",
        "EmbryonicRsts",
        "EstabResets",
        "AttemptFails",
        "PassiveOpens",
        "OutRsts",
        "InErrs",
    }
)


def linux_counter_name(name: str) -> str:
    """The name `nstat` prints for a utcp counter: "PAWSEstab" -> "TcpExtPAWSEstab", "OutRsts" ->
    "TcpOutRsts". A name that already carries its prefix is returned unchanged."""
    if name.startswith("TcpExt") or (name.startswith("Tcp") and name[3:] in TCP_MIB_COUNTERS):
        return name
    return ("Tcp" if name in TCP_MIB_COUNTERS else "TcpExt") + name


def utcp_counter_name(linux_name: str) -> str:
    """The inverse: "TcpExtPAWSEstab" -> "PAWSEstab", "TcpEstabResets" -> "EstabResets"."""
    if linux_name.startswith("TcpExt"):
        return linux_name[len("TcpExt") :]
    if linux_name.startswith("Tcp") and linux_name[3:] in TCP_MIB_COUNTERS:
        return linux_name[3:]
    raise ValueError(f"{linux_name!r} is not a Tcp or TcpExt counter name")
