"""The runtime logs each connection's events at info, bound to its 4-tuple, for a logger that emits info;
a logger that filters info out costs no binding (the library never configures structlog itself)."""

from __future__ import annotations

import logging
from typing import Any

import structlog
import structlog.testing

from tests.io.pairs import A_ADDRESS, B_ADDRESS, host_pair
from utcp.io.api import open_tcp_listeners, open_tcp_stream


class RecordingLogger:
    """A bound-logger look-alike: records (event, bound values, fields) and counts bind() calls."""

    def __init__(self, level: int, records: list[tuple[str, dict[str, Any]]], binds: list[int]) -> None:
        self.level = level
        self.records = records
        self.binds = binds
        self.values: dict[str, Any] = {}

    def bind(self, **values: Any) -> RecordingLogger:
        self.binds.append(1)
        child = RecordingLogger(self.level, self.records, self.binds)
        child.values = {**self.values, **values}
        return child

    def is_enabled_for(self, level: int) -> bool:
        return level >= self.level

    def _log(self, level: int, event: str, **fields: Any) -> None:
        if level >= self.level:
            self.records.append((event, {**self.values, **fields}))

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, **fields)


async def _one_exchange(level: int) -> tuple[list[tuple[str, dict[str, Any]]], list[int]]:
    records: list[tuple[str, dict[str, Any]]] = []
    binds: list[int] = []
    async with host_pair(logger=RecordingLogger(level, records, binds)) as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 80)
        client = await open_tcp_stream(rt_a, B_ADDRESS, 80)
        server = await listener.accept()
        await server.send_eof()
        assert await client.receive_some() == b""
        await client.aclose()
        assert await server.receive_some() == b""
        await server.aclose()
    return records, binds


async def test_connection_events_are_logged_at_info_with_the_four_tuple() -> None:
    records, _ = await _one_exchange(logging.INFO)
    events = [(event, fields["local"]) for event, fields in records if "local" in fields]
    local = events[0][1]
    assert local.startswith(f"{A_ADDRESS}:")
    assert ("connected", local) in events
    assert ("eof received", local) in events
    assert ("closed", local) in events
    connected = next(fields for event, fields in records if event == "connected")
    assert connected["remote"] == f"{B_ADDRESS}:80"
    assert connected["passive"] is False


async def test_a_logger_filtering_info_is_never_bound_per_connection() -> None:
    records, binds = await _one_exchange(logging.WARNING)
    assert records == []
    assert binds == []


async def test_structlog_default_logger_emits_connection_events() -> None:
    # The runtime's own logger (structlog.get_logger) follows the configuration in force when the
    # runtime starts: capture_logs() stands for an application that configured structlog.
    with structlog.testing.capture_logs() as logs:
        async with host_pair() as (rt_a, rt_b):
            (listener,) = await open_tcp_listeners(rt_b, 80)
            client = await open_tcp_stream(rt_a, B_ADDRESS, 80)
            server = await listener.accept()
            await client.aclose()
            await server.aclose()
    connected = [entry for entry in logs if entry["event"] == "connected"]
    assert {entry["passive"] for entry in connected} == {False, True}
    assert all(entry["log_level"] == "info" for entry in connected)
    assert {entry["remote"] for entry in connected} >= {f"{B_ADDRESS}:80"}
