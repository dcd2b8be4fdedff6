"""
L{DeviceRegistry} on its own: connections are plain objects and time is a L{Clock}, with
neither Autobahn nor a site in the way.
"""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.registry import (
    CLOSE_REPLACED,
    FORGET_AFTER,
    MAX_FORGET_MISSES,
    DeviceRecord,
    DeviceRegistry,
)
from tests.support.frames import DEVICE
from tests.support.wire import FakeSink

OTHER = "shellyplus1pm-112233445566"


@attrs.define(eq=False)
class FakeConnection:
    """A connection as the registry sees it; remembers the closes asked of it."""

    device_id: str | None = None
    peer: str | None = "tcp:192.0.2.7:40001"
    open: bool = True
    closes: list[tuple[int, str]] = attrs.field(factory=list)

    def close_with(self, code: int, reason: str) -> bool:
        self.closes.append((code, reason))
        was_open, self.open = self.open, False
        return was_open


class StubbornSink(FakeSink):
    """A tracker that cannot forget the devices in C{keep} yet (their row is to come)."""

    def __init__(self, keep: set[str]) -> None:
        super().__init__()
        self.keep = keep

    def forget(self, device_id: str) -> bool:
        super().forget(device_id)
        return device_id not in self.keep


def registry(sink: FakeSink | None = None, **kwargs: int) -> DeviceRegistry:
    clock = Clock()
    clock.advance(1_800_000_000)
    return DeviceRegistry(sink=sink or FakeSink(), clock=clock, **kwargs)


def forgotten(sink: FakeSink) -> list[str]:
    return [d for kind, d, _ in sink.calls if kind == "forget"]


class BindTests(SynchronousTestCase):
    """Which connection speaks for which device, and the records of devices."""

    def test_new_registry_is_empty(self) -> None:
        reg = registry()
        self.assertEqual((reg.devices, reg.records, reg.open_connections), ({}, {}, set()))
        self.assertEqual((reg.rejected, reg.received, reg.per_address), ({}, {}, {}))
        self.assertEqual(
            (reg.connections_opened, reg.connections_closed, reg.devices_forgotten),
            (0, 0, 0))

    def test_bind_records_the_device(self) -> None:
        reg = registry()
        connection = FakeConnection(DEVICE)
        record = reg.bind(connection)
        self.assertIs(reg.records[DEVICE], record)
        self.assertEqual(record, DeviceRecord(
            DEVICE, connected=True, peer="tcp:192.0.2.7:40001",
            connected_since=reg.clock.seconds(), connections=1))
        self.assertEqual(reg.devices, {DEVICE: connection})
        self.assertTrue(reg.is_current(connection))
        self.assertEqual(record.reconnects, 0)

    def test_bind_without_peer(self) -> None:
        record = registry().bind(FakeConnection(DEVICE, peer=None))
        self.assertEqual(record.peer, "")

    def test_unbound_connection_is_not_current(self) -> None:
        reg = registry()
        self.assertFalse(reg.is_current(FakeConnection()))
        self.assertFalse(reg.is_current(FakeConnection(DEVICE)))

    def test_newer_connection_replaces_older(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        old, new = FakeConnection(DEVICE), FakeConnection(DEVICE, peer="tcp:192.0.2.8:1")
        reg.bind(old)
        reg.clock.advance(5)  # type: ignore[attr-defined]
        record = reg.bind(new)
        self.assertEqual(old.closes, [CLOSE_REPLACED])
        self.assertEqual(CLOSE_REPLACED, (1000, "replaced by a newer connection"))
        self.assertEqual(new.closes, [])
        # The tracker drops the old connection's readings (rule 5).
        self.assertEqual(sink.disconnected_calls, [DEVICE])
        self.assertEqual(reg.devices, {DEVICE: new})
        self.assertFalse(reg.is_current(old))
        self.assertEqual((record.connections, record.reconnects), (2, 1))
        self.assertEqual(record.peer, "tcp:192.0.2.8:1")
        self.assertEqual(record.connected_since, reg.clock.seconds())

    def test_binding_again_is_not_a_replacement(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        connection = FakeConnection(DEVICE)
        reg.bind(connection)
        reg.bind(connection)
        self.assertEqual((connection.closes, sink.disconnected_calls), ([], []))

    def test_unbind_current(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        connection = FakeConnection(DEVICE)
        record = reg.bind(connection)
        reg.unbind(connection)
        self.assertEqual(reg.devices, {})
        self.assertFalse(record.connected)
        # Kept, for /status: fewer than max_devices records, and gone for less than a week.
        self.assertEqual(reg.records, {DEVICE: record})
        self.assertEqual(sink.disconnected_calls, [DEVICE])

    def test_unbind_replaced_changes_nothing(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        old, new = FakeConnection(DEVICE), FakeConnection(DEVICE)
        reg.bind(old)
        reg.bind(new)
        reg.unbind(old)
        self.assertEqual(reg.devices, {DEVICE: new})
        self.assertTrue(reg.records[DEVICE].connected)
        self.assertEqual(sink.disconnected_calls, [DEVICE])

    def test_unbind_nameless(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        reg.unbind(FakeConnection())
        self.assertEqual((reg.devices, sink.calls), ({}, []))


class ForgetTests(SynchronousTestCase):
    """Devices that left are forgotten: the oldest beyond max_devices, all after a week."""

    def visit(self, reg: DeviceRegistry, device_id: str) -> FakeConnection:
        connection = FakeConnection(device_id)
        reg.bind(connection)
        reg.unbind(connection)
        return connection

    def test_beyond_max_devices_oldest_forgotten(self) -> None:
        sink = FakeSink()
        reg = registry(sink, max_devices=2)
        for n in range(3):
            self.visit(reg, f"device-{n}")
            reg.clock.advance(1)  # type: ignore[attr-defined]
        self.assertEqual(sorted(reg.records), ["device-1", "device-2"])
        self.assertEqual(forgotten(sink), ["device-0"])
        self.assertEqual(reg.devices_forgotten, 1)

    def test_connected_devices_never_forgotten(self) -> None:
        sink = FakeSink()
        reg = registry(sink, max_devices=1)
        reg.bind(FakeConnection(DEVICE))
        reg.bind(FakeConnection(OTHER))
        self.assertEqual(sorted(reg.records), sorted([DEVICE, OTHER]))
        self.assertEqual(forgotten(sink), [])

    def test_returning_device_not_forgotten(self) -> None:
        sink = FakeSink()
        reg = registry(sink, max_devices=1)
        self.visit(reg, DEVICE)
        reg.bind(FakeConnection(DEVICE))
        reg.clock.advance(FORGET_AFTER + 1)  # type: ignore[attr-defined]
        reg.forget_gone()
        self.assertEqual(list(reg.records), [DEVICE])
        self.assertEqual(forgotten(sink), [])

    def test_gone_for_a_week(self) -> None:
        sink = FakeSink()
        reg = registry(sink)
        self.visit(reg, DEVICE)
        reg.clock.advance(FORGET_AFTER - 1)  # type: ignore[attr-defined]
        reg.forget_gone()
        self.assertEqual(list(reg.records), [DEVICE])
        reg.clock.advance(1)  # type: ignore[attr-defined]
        reg.forget_gone()
        self.assertEqual(reg.records, {})
        self.assertEqual(reg.devices_forgotten, 1)

    def test_tracker_not_ready_goes_to_the_back(self) -> None:
        sink = StubbornSink(keep={"device-0"})
        reg = registry(sink, max_devices=1)
        self.visit(reg, "device-0")
        self.visit(reg, "device-1")
        # device-0 could not be forgotten yet; device-1, behind it, was.
        self.assertEqual(list(reg.records), ["device-0"])
        self.assertEqual(reg.devices_forgotten, 1)
        # Once its row is written (the tick calls forget_gone), it goes too.
        sink.keep.clear()
        self.visit(reg, "device-2")
        reg.forget_gone()
        self.assertEqual(list(reg.records), ["device-2"])
        self.assertEqual(reg.devices_forgotten, 2)

    def test_misses_bounded(self) -> None:
        waiting = {f"device-{n}" for n in range(10)}
        sink = StubbornSink(keep=waiting)
        reg = registry(sink, max_devices=1)
        for n in range(10):
            self.visit(reg, f"device-{n}")
        del sink.calls[:]
        reg.forget_gone()
        self.assertEqual(len(forgotten(sink)), MAX_FORGET_MISSES)
        self.assertEqual(len(reg.records), 10)


class ConnectionTests(SynchronousTestCase):
    """Open connections, their addresses, and closing them all."""

    def test_opened_and_closed_counted(self) -> None:
        reg = registry()
        first, second = FakeConnection(), FakeConnection()
        reg.opened(first)
        reg.opened(second)
        reg.closed(first)
        self.assertEqual((reg.connections_opened, reg.connections_closed), (2, 1))
        self.assertEqual(reg.open_connections, {second})

    def test_close_all_none_open(self) -> None:
        self.assertIsNone(self.successResultOf(registry().close_all(1001, "server stopping")))

    def test_close_all_fires_once_all_closed(self) -> None:
        reg = registry()
        first, second = FakeConnection(), FakeConnection()
        reg.opened(first)
        reg.opened(second)
        done = reg.close_all(1001, "server stopping")
        self.assertEqual(first.closes, [(1001, "server stopping")])
        self.assertEqual(second.closes, [(1001, "server stopping")])
        reg.closed(first)
        self.assertNoResult(done)
        reg.closed(second)
        self.assertIsNone(self.successResultOf(done))

    def test_per_address_limit(self) -> None:
        reg = registry()
        self.assertTrue(reg.address_opened("192.0.2.7", 2))
        self.assertTrue(reg.address_opened("192.0.2.7", 2))
        self.assertFalse(reg.address_opened("192.0.2.7", 2))
        self.assertTrue(reg.address_opened("192.0.2.8", 2))
        self.assertEqual(reg.per_address, {"192.0.2.7": 2, "192.0.2.8": 1})
        reg.address_closed("192.0.2.7")
        self.assertTrue(reg.address_opened("192.0.2.7", 2))

    def test_closed_address_not_kept(self) -> None:
        reg = registry()
        reg.address_opened("192.0.2.7", 1)
        reg.address_closed("192.0.2.7")
        self.assertEqual(reg.per_address, {})


class BudgetTests(SynchronousTestCase):
    """The registry's log budgets run on its clock, within --max-warnings."""

    def test_budgets(self) -> None:
        reg = registry(max_warnings=7)
        self.assertIs(reg.log_budget.clock, reg.clock)
        self.assertEqual(reg.log_budget.per_minute, 7)
        self.assertIs(reg.access_budget.clock, reg.clock)
        self.assertEqual(reg.access_budget.what, "access log lines")
        self.assertIsNot(reg.log_budget, registry(max_warnings=7).log_budget)
