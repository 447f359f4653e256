"""How segments are validated: PAWS, RST acceptance, SYN in synchronized states, challenge ACK limits,
the per-peer timestamp cache of tw_recycle.

Every decision comes back as data (`Decision`: verdict + reason + Linux MIB counter). One policy object
per host, overridable per listener (`Host.listen(policy=...)`, inherited by its connections) and per
connection (`Host.connect(policy=...)`). Presets (`PRESETS`, `resolve_policy("linux")`): `linux`
(the default), `linux-tw-recycle`, `rfc793`, `rfc5961`, `rfc7323`. A user policy subclasses one and
overrides a knob or a method (see docs/policies.md); `resolve_policy("package.module:Name")` loads it.
"""

from utcp.policy.base import (
    ACCEPT,
    KNOBS,
    TCP_PAWS_24DAYS,
    TCP_PAWS_MSL,
    TCP_PAWS_WINDOW,
    AckUnsent,
    Decision,
    Knob,
    KnobValue,
    PeerStamp,
    PeerTimestampCache,
    Policy,
    PolicyContext,
    RstPaws,
    RstRule,
    SynRule,
    Verdict,
)
from utcp.policy.counters import POLICY_COUNTERS, linux_counter_name, utcp_counter_name
from utcp.policy.linux import LinuxPolicy, LinuxTwRecyclePolicy
from utcp.policy.presets import PRESETS, describe_knobs, describe_policies, describe_policy, resolve_policy
from utcp.policy.rfc import Rfc793Policy, Rfc5961Policy, Rfc7323Policy

__all__ = [
    "ACCEPT",
    "KNOBS",
    "POLICY_COUNTERS",
    "PRESETS",
    "TCP_PAWS_24DAYS",
    "TCP_PAWS_MSL",
    "TCP_PAWS_WINDOW",
    "AckUnsent",
    "Decision",
    "Knob",
    "KnobValue",
    "LinuxPolicy",
    "LinuxTwRecyclePolicy",
    "PeerStamp",
    "PeerTimestampCache",
    "Policy",
    "PolicyContext",
    "Rfc793Policy",
    "Rfc5961Policy",
    "Rfc7323Policy",
    "RstPaws",
    "RstRule",
    "SynRule",
    "Verdict",
    "describe_knobs",
    "describe_policies",
    "describe_policy",
    "linux_counter_name",
    "resolve_policy",
    "utcp_counter_name",
]
