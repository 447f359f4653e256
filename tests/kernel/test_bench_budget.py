"""tools.bench_conn_budget: each part of the server's budget is measured for real, and the parts fit
inside each other (the trio model is part of the in-process server, which is part of the TUN run)."""

from __future__ import annotations

import trio

from tools.bench.kernel_side import rr_handler
from tools.bench_conn_budget import _NullListener, budget, report, trio_model_us


def test_the_null_listener_serves_exactly_its_count_under_serve_listeners() -> None:
    closes = [0]

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            # rr_handler closes each stream; serve_listeners' aclose_forcefully closes it again
            await nursery.start(trio.serve_listeners, rr_handler, [_NullListener(50, closes)])
            with trio.fail_after(5):
                while closes[0] < 50:
                    await trio.sleep(0.001)
            await trio.sleep(0.01)  # a 51st would be accepted by now if the listener miscounted
            nursery.cancel_scope.cancel()

    trio.run(run)
    assert closes == [50]
    assert trio_model_us(200) > 0


def test_the_budget_measures_each_part_and_prices_the_target(privileged: None) -> None:
    figures = budget(count=300, runs=1)
    for name in ("tun_conn_per_s", "tun_user_us", "tun_sys_us", "inprocess_us", "trio_model_us",
                 "engine_both_ends_us"):  # fmt: skip
        assert figures[name] > 0, (name, figures)
    # the parts nest: trio's model inside the in-process server (which also runs an engine end)
    assert figures["trio_model_us"] < figures["inprocess_us"]
    assert figures["engine_both_ends_us"] / 2 < figures["inprocess_us"]
    # the budget's arithmetic: 200 us minus what sys and the scaled trio model take
    scaled_trio = figures["trio_model_us"] * figures["tun_factor"]
    assert abs(figures["left_for_engine_runtime_api_us"] - (200 - figures["tun_sys_us"] - scaled_trio)) < 1e-6
    text = report(figures)
    assert "budget at 5,000 conn/s: 200 us per connection" in text
    assert f"{figures['tun_conn_per_s']:,.0f} conn/s" in text
