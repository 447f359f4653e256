"""utcp.tcp.state.States: the engine's fast spelling of TcpState's members must be exactly them."""

from __future__ import annotations

from utcp.tcp.state import States, TcpState


def test_states_are_the_enum_members() -> None:
    names = {n for n in vars(States) if not n.startswith("_")}
    assert names == set(TcpState.__members__)
    for name, member in TcpState.__members__.items():
        assert getattr(States, name) is member
