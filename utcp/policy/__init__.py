"""How segments are validated: PAWS, RST acceptance, SYN in synchronized states, challenge ACK limits.

Decisions come back as data (`Decision`: verdict + reason + Linux MIB counter). `LinuxPolicy` is the
default; `Policy` holds the mechanisms and the knobs presets set.
"""

from utcp.policy.base import (
    ACCEPT,
    TCP_PAWS_24DAYS,
    TCP_PAWS_MSL,
    TCP_PAWS_WINDOW,
    Decision,
    Policy,
    PolicyContext,
    Verdict,
)
from utcp.policy.linux import LinuxPolicy

__all__ = [
    "ACCEPT",
    "TCP_PAWS_24DAYS",
    "TCP_PAWS_MSL",
    "TCP_PAWS_WINDOW",
    "Decision",
    "LinuxPolicy",
    "Policy",
    "PolicyContext",
    "Verdict",
]
