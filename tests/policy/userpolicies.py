"""User policies as a user would write them, loaded by `resolve_policy("tests.policy.userpolicies:...")`.

Also a few things that are *not* policies, for the registry's error messages."""

from __future__ import annotations

from utcp.policy import Decision, LinuxPolicy, Policy, PolicyContext, Verdict
from utcp.wire.packet import TcpFlags, TcpSegment


class TrustingRsts(LinuxPolicy):
    """Linux, except that a request socket takes an RST whatever its timestamp (RFC 7323 5.2): one decision
    overridden, every other one inherited."""

    name = "linux-trusting-rsts"

    def check_request_paws(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        if seg.flags & TcpFlags.RST:
            return Decision(Verdict.ACCEPT, "user policy: RSTs bypass PAWS on request sockets")
        return super().check_request_paws(ctx, seg, now)


class Recording(LinuxPolicy):
    """Linux, keeping every RST decision it makes (composition by delegation to the inherited rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.rst_decisions: list[Decision] = []

    def check_rst(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        d = super().check_rst(ctx, seg, now)
        self.rst_decisions.append(d)
        return d


STRICT_LINUX = LinuxPolicy(challenge_ack_interval=1.0)  # an instance: used as is


def make_lenient() -> Policy:
    """A factory: called without arguments."""
    return LinuxPolicy(rst_paws_request="always")


class NotAPolicy:
    pass


NOT_CALLABLE = 42


def returns_a_string() -> str:
    return "linux"
