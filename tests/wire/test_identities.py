"""
Identities and connection slots on the whole service (L{tests.support.stack.Stack}):
C{--max-per-address}, and (below) the bound on device records, C{--max-devices}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from shellylog.status import ChannelValues
from shellylog.tap import Options
from shellylog.tracker import ChannelTracker
from tests.support.frames import notify, switch
from tests.support.stack import T0, Stack


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--csv", "x.csv", *args])
    return options


class MaxPerAddressTests(SynchronousTestCase):
    """C{--max-per-address}: the open connections of one IP address."""

    def test_limit_refuses_with_503(self) -> None:
        stack = Stack(self, "--max-per-address", "1")
        first, _ = stack.connect()
        self.assertTrue(first.opened)
        stack.send(first, notify({"switch:0": switch(100)}, src="shellyplus1pm-000000000001"))
        second, _ = stack.connect()
        self.assertFalse(second.opened)
        assert second.closed is not None
        self.assertIn("503", second.closed[2] or "")
        self.assertEqual(stack.registry.rejected, {"too_many_from_address": 1})
        self.assertEqual(stack.get_status()["server"]["options"]["max-per-address"], 1)
        # Another host still gets in.
        stack.harness.client_host = "198.51.100.9"
        third, _ = stack.connect()
        self.assertTrue(third.opened)

    def test_default_lets_200_in(self) -> None:
        stack = Stack(self)
        clients = [stack.connect()[0] for _ in range(201)]
        self.assertEqual([c.opened for c in clients], [True] * 200 + [False])
        self.assertEqual(stack.registry.rejected, {"too_many_from_address": 1})

    def test_bad_values(self) -> None:
        for value in ("0", "-1", "many"):
            with self.subTest(value=value):
                error = self.assertRaises(usage.UsageError, parse, "--max-per-address", value)
                self.assertIn("--max-per-address", str(error))


def device(n: int) -> str:
    return f"shellyplus1pm-{n:012x}"


class MaxDevicesTests(SynchronousTestCase):
    """
    C{--max-devices}: device records (C{/status}) and the tracker's state are bounded;
    the devices that left longest ago are forgotten first, never a connected one, and
    never one whose row for the open minute is still to come.
    """

    def visit(self, stack: Stack, n: int, apower: float = 0.0) -> None:
        """Device C{n} connects, reports C{apower} on switch:0, and leaves."""
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(apower)}, src=device(n)))
        client.sendClose(code=1000)
        stack.harness.flush()

    def listed(self, stack: Stack) -> list[str]:
        # /status is built at most once a second.
        stack.advance(1)
        return [d["device_id"] for d in stack.get_status()["devices"]]

    def rows(self, stack: Stack) -> list[list[str]]:
        with open(stack.csv, encoding="utf-8") as f:
            return [line.rstrip("\n").split(",")[:4] for line in f.readlines()[1:]]

    def test_least_recently_seen_forgotten_first(self) -> None:
        stack = Stack(self, "--max-devices", "2")
        staying, _ = stack.connect()
        stack.send(staying, notify({"switch:0": switch(0)}, src=device(0)))
        for n in (1, 2, 3, 4):
            self.visit(stack, n)
        # Kept: the connected device, and the one that left last.
        self.assertEqual(self.listed(stack), [device(0), device(4)])
        self.assertEqual(stack.tracker.view(device(1)), {})
        self.assertNotEqual(stack.tracker.view(device(4)), {})
        self.assertEqual(stack.registry.devices_forgotten, 3)
        self.assertEqual(stack.get_status()["server"]["options"]["max-devices"], 2)
        # A connected device is never forgotten, however many come and go.
        for n in (5, 6, 7):
            self.visit(stack, n)
        self.assertEqual(self.listed(stack), [device(0), device(7)])

    def test_device_with_a_row_to_come_kept_until_written(self) -> None:
        stack = Stack(self, "--max-devices", "1")
        self.visit(stack, 1, apower=100.0)  # active in the open minute: a row to come
        self.visit(stack, 2)
        self.visit(stack, 3)
        # Over the limit only by what must be kept.
        self.assertEqual(self.listed(stack), [device(1)])
        stack.advance_to(T0 + 61)  # the tick writes device 1's row for minute T0
        self.visit(stack, 4)
        self.assertEqual(self.listed(stack), [device(4)])
        # Device 1 returns in the next minute, and again after that minute: one row per
        # minute, never one twice.
        self.visit(stack, 1, apower=100.0)
        stack.advance_to(T0 + 125)
        self.visit(stack, 5)
        self.visit(stack, 1, apower=100.0)
        stack.advance_to(T0 + 185)
        minutes = [(row[0], row[1]) for row in self.rows(stack)]
        self.assertEqual(len(minutes), len(set(minutes)), minutes)
        self.assertEqual([d for _, d in minutes], [device(1)] * 3)

    def test_forgotten_at_the_tick_that_wrote_its_row(self) -> None:
        stack = Stack(self, "--max-devices", "1")
        self.visit(stack, 1, apower=100.0)
        self.visit(stack, 2, apower=100.0)
        self.assertEqual(self.listed(stack), [device(1), device(2)])
        stack.advance_to(T0 + 61)
        self.assertEqual(self.listed(stack), [device(2)])
        self.assertEqual([row[1] for row in self.rows(stack)], [device(1), device(2)])

    def test_gone_for_a_week_forgotten(self) -> None:
        stack = Stack(self)
        self.visit(stack, 1)
        stack.advance(7 * 24 * 3600 - 10)
        self.visit(stack, 2)
        self.assertEqual(self.listed(stack), [device(1), device(2)])
        stack.clock.advance(11)
        self.visit(stack, 3)
        self.assertEqual(self.listed(stack), [device(2), device(3)])

    def test_default_keeps_20000(self) -> None:
        self.assertEqual(parse().config.limits.max_devices, 20000)

    def test_bad_values(self) -> None:
        for value in ("0", "-1", "lots"):
            with self.subTest(value=value):
                error = self.assertRaises(usage.UsageError, parse, "--max-devices", value)
                self.assertIn("--max-devices", str(error))


class ForgetTests(SynchronousTestCase):
    """L{ChannelTracker.forget}: never what could let a row be written twice."""

    def test_minute_resumed_from_the_csv_kept(self) -> None:
        clock = Clock()
        clock.advance(T0)
        tracker = ChannelTracker(clock=clock)
        tracker.readings(device(1), {0: ChannelValues(0.0, None, None, None)})
        tracker.disconnected(device(1))
        # The file says minute T0 + 5 was written already: the clock was set back.
        tracker.resume(device(1), 0, T0 // 60 + 5)
        self.assertFalse(tracker.forget(device(1)))
        tracker.resume(device(2), 0, T0 // 60 - 1)
        self.assertTrue(tracker.forget(device(2)))

    def test_connected_kept(self) -> None:
        clock = Clock()
        tracker = ChannelTracker(clock=clock)
        tracker.readings(device(1), {0: ChannelValues(0.0, None, None, None)})
        self.assertFalse(tracker.forget(device(1)))
        tracker.disconnected(device(1))
        self.assertTrue(tracker.forget(device(1)))
        self.assertEqual(tracker.view(device(1)), {})
