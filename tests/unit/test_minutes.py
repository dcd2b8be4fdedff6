"""
The minute tick service: aligned to boundaries, flushes gaps, survives errors, writes at stop.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.minutes import MinuteService
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker, Row

T0 = 1_800_000_000  # a minute boundary: 2027-01-15T08:00:00Z
assert T0 % 60 == 0


class RecordingSink:
    def __init__(self) -> None:
        self.opened = False
        self.closed = False
        self.writes: list[tuple[float, list[Row]]] = []
        self.fail_next = 0
        self.clock: Clock | None = None

    problem = None

    @property
    def pending(self) -> int:
        return 0

    def open(self) -> dict[tuple[str, int], int]:
        self.opened = True
        return {("dev-1", 0): T0 // 60 - 1}

    def write(self, rows: list[Row]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("a bug in the sink")
        assert self.clock is not None
        self.writes.append((self.clock.seconds(), rows))

    def close(self) -> None:
        self.closed = True


class MinuteServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0 + 17.5)
        self.tracker = ChannelTracker(clock=self.clock, threshold=5, max_carry=10)
        self.sink = RecordingSink()
        self.sink.clock = self.clock
        self.service = MinuteService(self.tracker, self.sink, self.clock)

    def read(self, apower: float) -> None:
        self.tracker.readings("dev-1", {0: ChannelValues(apower, 230.0, 1.0, 5.0)})

    def minutes_written(self) -> list[int]:
        return [r.minute for _, rows in self.sink.writes for r in rows]

    def test_ticks_at_minute_boundaries(self) -> None:
        self.service.startService()
        self.assertTrue(self.sink.opened)
        self.read(100)
        self.clock.advance(42.4)  # T0 + 59.9
        self.assertEqual(self.sink.writes, [])
        self.clock.advance(0.1)  # T0 + 60
        self.assertEqual(self.sink.writes, [(T0 + 60, [Row(T0 // 60, "dev-1", 0,
                                                           ChannelValues(100, 230.0, 1.0, 5.0))])])
        self.clock.advance(60)
        self.assertEqual(self.sink.writes[-1][0], T0 + 120)
        self.assertEqual(self.minutes_written(), [T0 // 60, T0 // 60 + 1])

    def test_stall_flushes_every_missed_minute_in_order(self) -> None:
        self.service.startService()
        self.read(100)
        self.clock.advance(42.5)
        self.sink.writes.clear()
        # The reactor stalls for five minutes: one late tick writes all of them.
        self.clock.advance(300)
        self.assertEqual(len(self.sink.writes), 1)
        self.assertEqual(self.minutes_written(), list(range(T0 // 60 + 1, T0 // 60 + 6)))
        self.clock.advance(60)
        self.assertEqual(self.minutes_written()[-1], T0 // 60 + 6)

    def test_an_unexpected_error_does_not_stop_the_loop(self) -> None:
        self.service.startService()
        self.read(100)
        self.sink.fail_next = 1
        self.clock.advance(42.5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.sink.writes, [])
        self.clock.advance(60)
        self.assertEqual(self.minutes_written(), [T0 // 60 + 1])

    def test_resume_from_the_file(self) -> None:
        """Minutes the file already holds are not written again (rule 4, restarts)."""
        self.clock.advance(-60)  # T0 - 42.5: inside the minute the file already holds
        self.service.startService()
        self.read(100)
        self.clock.advance(60 - 17.5 + 60)
        self.assertEqual(self.minutes_written(), [T0 // 60])

    def test_stop_writes_minute_in_progress_and_closes(self) -> None:
        self.service.startService()
        self.read(100)
        self.clock.advance(62.5)  # T0 + 80: 08:00 written, 08:01 carried and in progress
        self.service.stopService()
        self.assertEqual(self.minutes_written(), [T0 // 60, T0 // 60 + 1])
        self.assertTrue(self.sink.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_before_first_tick(self) -> None:
        self.service.startService()
        self.read(100)
        self.service.stopService()
        self.assertEqual(self.minutes_written(), [T0 // 60])
        self.assertEqual(self.clock.getDelayedCalls(), [])
