"""User policies: a subclass overriding one decision keeps every other one; knobs compose the same change;
a user policy sweeps through the whole B table by name; policies override per listener and per
connection, and passive connections inherit their listener's."""

from __future__ import annotations

import pytest

from interop.b_script import Row, run_row_sim
from interop.b_table import TABLE
from tests.policy.userpolicies import Recording, TrustingRsts
from tests.tcp.helpers import AK, ISS, PEER_ISS, B, R, S, make_host, one, pkt, syn_opts, ts
from utcp.policy import (
    Decision,
    LinuxPolicy,
    PolicyContext,
    Rfc793Policy,
    Rfc7323Policy,
    Verdict,
    resolve_policy,
)
from utcp.tcp.state import TcpState
from utcp.wire.packet import TcpSegment

# rows where a request socket meets an RST older than the SYN: the only ones the override changes
CASE_4 = {row.id for row in TABLE if row.id.startswith("4")}


@pytest.mark.parametrize(
    "spec", ["tests.policy.userpolicies:TrustingRsts", "tests.policy.userpolicies:make_lenient"]
)
@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_a_user_policy_sweeps_through_the_b_table(spec: str, row: Row) -> None:
    """Overriding the request-socket PAWS decision (by method or by knob) changes case 4 into what
    rfc7323 does and leaves every other row as linux does."""
    observed, _ = run_row_sim(row, spec)
    reference = "rfc7323" if row.id in CASE_4 else "linux"
    assert observed.mismatches(row.expect[reference]) == []


def test_an_overridden_decision_leaves_the_inherited_ones_alone() -> None:
    user, linux = TrustingRsts(), LinuxPolicy()
    assert user.knobs() == linux.knobs()
    assert type(user).check_request_paws is not LinuxPolicy.check_request_paws
    for method in ("check_paws", "check_rst", "check_syn_synchronized", "check_ack", "check_time_wait"):
        assert getattr(type(user), method) is getattr(LinuxPolicy, method)


def test_a_delegating_policy_sees_each_decision_as_data() -> None:
    policy = Recording()
    host = make_host(policy=policy)
    host.listen("198.18.0.1", 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=500)), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(501)), 0.01)
    host.receive(pkt(R, PEER_ISS + 1 + 77, options=ts(502)), 0.02)
    host.receive(pkt(R, PEER_ISS + 1, options=ts(503)), 0.03)
    assert [(d.verdict, d.counter) for d in policy.rst_decisions] == [
        (Verdict.CHALLENGE_ACK, None),
        (Verdict.RESET, None),
    ]
    assert "RFC 5961 3.2" in policy.rst_decisions[0].reason
    assert host.counters["TCPChallengeACK"] == 1 and host.counters["EstabResets"] == 1


def test_one_method_override_can_drop_every_rst() -> None:
    class NoResets(LinuxPolicy):
        def check_rst(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
            return Decision(Verdict.DROP, "user policy: RSTs never kill", "UserDroppedRsts")

    host = make_host(policy=NoResets())
    lst = host.listen("198.18.0.1", 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=500)), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(501)), 0.01)
    host.receive(pkt(R, PEER_ISS + 1, options=ts(502)), 0.02)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    assert host.counters["UserDroppedRsts"] == 1


def test_policy_per_host_listener_and_connection() -> None:
    host_policy, listener_policy, conn_policy = LinuxPolicy(), Rfc7323Policy(), Rfc793Policy()
    host = make_host(policy=host_policy)
    default_lst = host.listen("198.18.0.1", 80)
    own_lst = host.listen("198.18.0.1", 81, policy=listener_policy)
    assert default_lst.policy is host_policy and own_lst.policy is listener_policy
    for port, sport in ((80, 50000), (81, 50001)):
        host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=500), sport=sport, dport=port), 0.0)
        host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(501), sport=sport, dport=port), 0.01)
    passive_default, passive_own = default_lst.accept(), own_lst.accept()
    assert passive_default is not None and passive_default.policy is host_policy
    assert passive_own is not None and passive_own.policy is listener_policy  # inherited from its listener
    active = host.connect(B, 443, 0.0)
    active_own = host.connect(B, 444, 0.0, policy=conn_policy)
    assert active.policy is host_policy and active_own.policy is conn_policy


def test_the_default_host_policy_is_linux() -> None:
    assert type(make_host(policy=None).policy) is LinuxPolicy
    assert type(resolve_policy("linux")) is type(make_host(policy=None).policy)
