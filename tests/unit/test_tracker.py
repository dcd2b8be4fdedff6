"""
The minute rules (the project's minute-log document; "rule N" below) on the pure tracker.
"""

from __future__ import annotations

import random
from datetime import datetime

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.channels import channel_name, parse_channel_name
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker, Row, minute_of

D = "shellypro4pm-aabbccddeeff"
E = "shellyplus1pm-112233445566"


def at(hhmmss: str, day: str = "2026-03-28") -> float:
    """Unix seconds of a UTC wall-clock time."""
    return datetime.fromisoformat(f"{day}T{hhmmss}+00:00").timestamp()


def minute(hhmm: str, day: str = "2026-03-28") -> int:
    return minute_of(at(hhmm + ":00", day))


def values(
    apower: float | None,
    voltage: float | None = 230.1,
    current: float | None = None,
    total: float | None = 100.0,
) -> ChannelValues:
    return ChannelValues(apower=apower, voltage=voltage, current=current, energy_total=total)


class TrackerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.tracker = ChannelTracker(clock=self.clock, threshold=5, max_carry=10)
        self.written: list[Row] = []

    def set_time(self, t: float) -> None:
        self.clock.advance(t - self.clock.seconds())

    def read(self, t: float, v: ChannelValues, device: str = D, channel: int = 2) -> None:
        self.set_time(t)
        self.tracker.readings(device, {channel: v})

    def tick(self, t: float) -> list[Row]:
        self.set_time(t)
        rows = self.tracker.close_completed()
        self.written.extend(rows)
        return rows

    def summary(self, rows: list[Row]) -> list[tuple[int, str, int, float | None]]:
        return [(r.minute, r.device_id, r.channel, r.values.apower) for r in rows]


class WorkedExampleTests(TrackerTestCase):
    """The worked example of the minute-log document, step by step."""

    def test_worked_example(self) -> None:
        self.read(at("10:00:20"), values(450, 230.1, None, 100.0))
        self.read(at("10:00:50"), values(460, 230.1, None, 100.0))
        self.assertEqual(self.tick(at("10:01:00")), [Row(minute("10:00"), D, 2, values(460))])
        self.assertEqual(self.tick(at("10:02:00")), [Row(minute("10:01"), D, 2, values(460))])
        self.read(at("10:02:30"), values(0))
        self.assertEqual(self.tick(at("10:03:00")), [Row(minute("10:02"), D, 2, values(460))])
        self.assertEqual(self.tick(at("10:04:00")), [])
        self.read(at("10:04:10"), values(300))
        self.read(at("10:04:40"), values(3))
        self.assertEqual(self.tick(at("10:05:00")), [Row(minute("10:04"), D, 2, values(300))])
        self.read(at("10:05:05"), values(3, total=101.2))  # merged apower is still 3
        self.assertEqual(self.tick(at("10:06:00")), [])
        self.read(at("10:06:15"), values(5, total=101.2))
        self.assertEqual(self.tick(at("10:07:00")), [])
        self.read(at("10:07:30"), values(900, total=101.2))
        self.set_time(at("10:07:45"))
        self.tracker.disconnected(D)
        self.assertEqual(
            self.tick(at("10:08:00")), [Row(minute("10:07"), D, 2, values(900, total=101.2))]
        )
        for t in ("10:09:00", "10:10:00", "10:30:00"):
            self.assertEqual(self.tick(at(t)), [])


class WhichMinutesTests(TrackerTestCase):
    """Rule 1: a row exactly for the minutes in which the channel was active."""

    def test_threshold_is_strict(self) -> None:
        """A reading at the threshold is idle; just above it is active."""
        self.read(at("10:00:10"), values(5))
        self.read(at("10:01:10"), values(5.000001))
        self.tick(at("10:02:30"))
        self.assertEqual(self.summary(self.written)[:1], [(minute("10:01"), D, 2, 5.000001)])
        self.assertNotIn(minute("10:00"), [r.minute for r in self.written])

    def test_negative_threshold(self) -> None:
        """A negative threshold makes every reading with a number active, 0 W included."""
        self.tracker.threshold = -1
        self.read(at("10:00:10"), values(0))
        self.tracker.max_carry = 0
        self.assertEqual(self.summary(self.tick(at("10:01:00"))), [(minute("10:00"), D, 2, 0)])

    def test_on_and_off_inside_one_minute(self) -> None:
        """Active for a few seconds of a minute still gives that minute a row, and no more."""
        self.read(at("10:00:10"), values(1))
        self.read(at("10:00:20"), values(800))
        self.read(at("10:00:25"), values(0))
        self.assertEqual(self.summary(self.tick(at("10:01:00"))), [(minute("10:00"), D, 2, 800)])
        self.assertEqual(self.tick(at("10:05:00")), [])

    def test_missing_apower_neither_starts_nor_ends(self) -> None:
        """A reading without apower is never a row's source and does not end a carry."""
        self.read(at("10:00:10"), values(None))
        self.assertEqual(self.tick(at("10:01:00")), [])
        self.read(at("10:01:10"), values(50))
        self.read(at("10:01:20"), values(None, voltage=999))
        self.read(at("10:02:20"), values(None, voltage=998))
        rows = self.tick(at("10:03:00"))
        self.assertEqual(
            rows,
            [Row(minute("10:01"), D, 2, values(50)), Row(minute("10:02"), D, 2, values(50))],
        )

    def test_carry_limit(self) -> None:
        """Rule 1b: carried while received at most max-carry minutes before M began."""
        self.read(at("10:00:00"), values(100))
        rows = self.tick(at("10:30:00"))
        # 10:00 by the reading itself, 10:01..10:10 carried (10:10 began 600 s after it).
        self.assertEqual([r.minute for r in rows], list(range(minute("10:00"), minute("10:11"))))

    def test_carry_limit_partial_second(self) -> None:
        self.read(at("10:00:00.5"), values(100))
        rows = self.tick(at("10:30:00"))
        self.assertEqual(rows[-1].minute, minute("10:10"))
        self.assertEqual(len(rows), 11)

    def test_max_carry_zero(self) -> None:
        self.tracker.max_carry = 0
        self.read(at("10:00:30"), values(100))
        self.assertEqual(self.summary(self.tick(at("10:05:00"))), [(minute("10:00"), D, 2, 100)])

    def test_readings_refresh_the_carry(self) -> None:
        """Each new active reading restarts the carry window."""
        self.tracker.max_carry = 2
        self.read(at("10:00:30"), values(100))
        self.read(at("10:02:30"), values(110))
        rows = self.tick(at("10:20:00"))
        self.assertEqual(
            self.summary(rows),
            [
                (minute("10:00"), D, 2, 100),
                (minute("10:01"), D, 2, 100),
                (minute("10:02"), D, 2, 110),
                (minute("10:03"), D, 2, 110),
                (minute("10:04"), D, 2, 110),
            ],
        )


class RowValuesTests(TrackerTestCase):
    """Rule 2: the values of the latest active reading of M, else the carried one."""

    def test_latest_active_wins(self) -> None:
        self.read(at("10:00:05"), values(100, voltage=229.0, current=0.5, total=1.0))
        self.read(at("10:00:40"), values(200, voltage=231.0, current=0.9, total=1.1))
        self.read(at("10:00:50"), values(2, voltage=232.0, current=0.0, total=1.2))
        self.assertEqual(
            self.tick(at("10:01:00")),
            [Row(minute("10:00"), D, 2, values(200, voltage=231.0, current=0.9, total=1.1))],
        )

    def test_reading_in_minute_beats_carry(self) -> None:
        self.read(at("10:00:05"), values(100))
        self.read(at("10:01:50"), values(150))
        rows = self.tick(at("10:02:00"))
        self.assertEqual([r.values.apower for r in rows], [100, 150])

    def test_no_value_from_after_the_minute(self) -> None:
        """A late tick still writes each minute with the values known in it."""
        self.read(at("10:00:05"), values(100))
        self.read(at("10:02:10"), values(300))  # the tick at 10:01 and 10:02 never came
        self.read(at("10:03:10"), values(0))
        rows = self.tick(at("10:04:00"))
        self.assertEqual(
            self.summary(rows),
            [
                (minute("10:00"), D, 2, 100),
                (minute("10:01"), D, 2, 100),
                (minute("10:02"), D, 2, 300),
                (minute("10:03"), D, 2, 300),
            ],
        )


class TickTests(TrackerTestCase):
    """Rule 3: every completed minute, in order, even after a stall."""

    def test_gap_flush_after_stall(self) -> None:
        self.read(at("10:00:05"), values(100), channel=0)
        self.read(at("10:00:06"), values(200), channel=10)
        self.read(at("10:00:07"), values(300), device=E, channel=0)
        self.tracker.max_carry = 3
        rows = self.tick(at("10:07:30"))
        expected = []
        for m in range(minute("10:00"), minute("10:04")):
            expected += [(m, E, 0, 300), (m, D, 0, 100), (m, D, 10, 200)]
        self.assertEqual(self.summary(rows), expected)
        self.assertEqual(self.tick(at("10:08:00")), [])

    def test_rows_ordered_by_device_then_numeric_channel(self) -> None:
        self.read(at("10:00:01"), values(1000), device=E, channel=0)
        self.read(at("10:00:02"), values(1000), channel=10)
        self.read(at("10:00:03"), values(1000), channel=2)
        self.tracker.max_carry = 0
        rows = self.tick(at("10:01:00"))
        # "shellyplus1pm-..." sorts before "shellypro4pm-..." in plain string order.
        self.assertEqual([(r.device_id, r.channel) for r in rows], [(E, 0), (D, 2), (D, 10)])

    def test_reading_closes_earlier_minutes_first(self) -> None:
        """A reading applied after a missed tick cannot change the minute before it."""
        self.read(at("10:00:30"), values(100))
        self.read(at("10:01:05"), values(700))
        self.assertEqual(self.tracker.pending, 1)
        rows = self.tick(at("10:02:00"))
        self.assertEqual(self.summary(rows), [(minute("10:00"), D, 2, 100),
                                              (minute("10:01"), D, 2, 700)])

    def test_reading_on_the_minute_boundary_belongs_to_the_new_minute(self) -> None:
        self.read(at("10:00:30"), values(100))
        self.read(at("10:01:00"), values(700))
        self.read(at("10:01:59.999"), values(300))
        rows = self.tick(at("10:02:00"))
        self.assertEqual(self.summary(rows), [(minute("10:00"), D, 2, 100),
                                              (minute("10:01"), D, 2, 300)])

    def test_tick_before_any_reading(self) -> None:
        self.assertEqual(self.tick(at("10:00:00")), [])
        self.read(at("10:00:10"), values(10))
        self.assertEqual(self.summary(self.tick(at("10:01:00"))), [(minute("10:00"), D, 2, 10)])

    def test_long_idle_gap_is_skipped_cheaply(self) -> None:
        self.read(at("10:00:10"), values(10))
        self.tick(at("10:01:00"))
        self.set_time(at("10:00:00", day="2026-04-28"))
        self.assertEqual(len(self.tick(at("10:00:00", day="2026-04-28"))), 10)
        self.assertEqual(self.tracker.open_minute, minute("10:00", day="2026-04-28"))


class NeverTwiceTests(TrackerTestCase):
    """Rule 4: one row per (device, channel, minute), in increasing minute order."""

    def test_clock_step_back_counts_toward_open_minute(self) -> None:
        self.read(at("10:05:10"), values(100))
        self.tick(at("10:06:00"))
        # The clock steps back by five minutes: the reading counts for 10:06, the open one.
        self.read(at("10:01:00"), values(222))
        rows = self.tick(at("10:07:00"))
        self.assertEqual(self.summary(rows), [(minute("10:06"), D, 2, 222)])
        minutes = [r.minute for r in self.written]
        self.assertEqual(minutes, sorted(set(minutes)))

    def test_clock_step_back_carries_from_the_open_minute(self) -> None:
        """A reading from behind the clock is stamped at the open minute's start."""
        self.tracker.max_carry = 2
        self.read(at("10:05:10"), values(100))
        self.read(at("09:05:10"), values(100))  # the clock stepped back an hour
        # Carried for two minutes counted from the open minute (10:05), not from 09:05.
        self.tick(at("10:09:00"))
        self.assertEqual([(r.minute, r.carried) for r in self.written],
                         [(minute("10:05"), False), (minute("10:06"), True),
                          (minute("10:07"), True)])

    def test_tick_with_clock_behind_writes_nothing_again(self) -> None:
        self.read(at("10:05:10"), values(100))
        self.tick(at("10:06:00"))
        self.assertEqual(self.tick(at("10:02:00")), [])
        self.tick(at("10:08:00"))
        minutes = [r.minute for r in self.written]
        self.assertEqual(minutes, [minute("10:05"), minute("10:06"), minute("10:07")])

    def test_reconnect_within_a_minute_writes_once(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:00:20"))
        self.tracker.disconnected(D)
        self.read(at("10:00:40"), values(120))
        self.tick(at("10:01:00"))
        self.assertEqual(self.summary(self.written), [(minute("10:00"), D, 2, 120)])

    def test_resume_suppresses_written_minutes(self) -> None:
        self.tracker.resume(D, 2, minute("10:01"))
        self.read(at("10:01:30"), values(100))
        self.tick(at("10:03:00"))
        self.assertEqual([r.minute for r in self.written], [minute("10:02")])


class DisconnectTests(TrackerTestCase):
    """Rule 5: active up to the close; nothing carried past it; fresh start after."""

    def test_disconnect_keeps_minute_of_close_by_carry(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:03:20"))
        self.tracker.disconnected(D)
        rows = self.tick(at("10:10:00"))
        self.assertEqual([r.minute for r in rows], list(range(minute("10:00"), minute("10:04"))))

    def test_reconnect_starts_from_fresh_readings(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:00:20"))
        self.tracker.disconnected(D)
        self.tick(at("10:01:00"))
        # Reconnected with an idle reading: nothing of the old 100 W carries.
        self.read(at("10:01:30"), values(0))
        self.tick(at("10:05:00"))
        self.read(at("10:05:30"), values(70))
        self.tick(at("10:06:00"))
        self.assertEqual(
            self.summary(self.written),
            [(minute("10:00"), D, 2, 100), (minute("10:05"), D, 2, 70)],
        )

    def test_reconnect_without_readings_does_not_carry(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:00:20"))
        self.tracker.disconnected(D)
        self.tick(at("10:05:00"))
        self.assertEqual([r.minute for r in self.written], [minute("10:00")])

    def test_disconnect_of_other_device_keeps_carry(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:00:20"))
        self.tracker.disconnected(E)
        self.tick(at("10:03:00"))
        self.assertEqual(len(self.written), 3)


class ShutdownTests(TrackerTestCase):
    """Rule 6: a clean stop writes completed minutes and closes the one in progress."""

    def test_shutdown_closes_minute_in_progress(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.read(at("10:02:10"), values(0))
        self.read(at("10:03:10"), values(40))
        self.set_time(at("10:03:30"))
        rows = self.tracker.shutdown()
        self.assertEqual(
            self.summary(rows),
            [
                (minute("10:00"), D, 2, 100),
                (minute("10:01"), D, 2, 100),
                (minute("10:02"), D, 2, 100),
                (minute("10:03"), D, 2, 40),
            ],
        )

    def test_shutdown_closes_carried_minute(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.tick(at("10:01:00"))
        self.set_time(at("10:01:01"))
        self.assertEqual(self.summary(self.tracker.shutdown()), [(minute("10:01"), D, 2, 100)])

    def test_nothing_after_shutdown(self) -> None:
        self.read(at("10:00:10"), values(100))
        self.set_time(at("10:00:20"))
        self.tracker.shutdown()
        self.read(at("10:00:30"), values(100))
        self.tracker.disconnected(D)
        self.assertEqual(self.tick(at("10:05:00")), [])
        self.assertEqual(self.tracker.shutdown(), [])


class KindAndViewTests(TrackerTestCase):
    """Rows say whether they were measured or carried; the view is for /status."""

    def test_carried_flag(self) -> None:
        self.read(at("10:00:20"), values(450))
        self.read(at("10:02:30"), values(0))
        self.read(at("10:03:30"), values(80))
        rows = self.tick(at("10:04:00"))
        self.assertEqual([r.carried for r in rows], [False, True, True, False])

    def test_view(self) -> None:
        self.assertEqual(self.tracker.view(D), {})
        self.read(at("10:00:20"), values(450))
        self.read(at("10:00:30"), values(None, voltage=231.0), channel=3)
        self.tick(at("10:01:00"))
        view = self.tracker.view(D)
        self.assertEqual(sorted(view), [2, 3])
        self.assertEqual(view[2].latest, values(450))
        self.assertTrue(view[2].active)
        self.assertEqual(view[2].last_written, minute("10:00"))
        self.assertEqual(view[3].latest, values(None, voltage=231.0))
        self.assertFalse(view[3].active)
        self.assertIsNone(view[3].last_written)
        self.set_time(at("10:01:10"))
        self.tracker.disconnected(D)
        self.assertFalse(self.tracker.view(D)[2].active)
        self.assertEqual(self.tracker.view(D)[2].latest, values(450))


class RunsTests(TrackerTestCase):
    """L{ChannelTracker.runs}: the first minute of a running channel's run, for /metrics."""

    def runs(self, device: str = D) -> dict[int, int | None]:
        return {channel: first for channel, _, first in self.tracker.runs(device)}

    def test_unknown_device(self) -> None:
        self.assertEqual(self.tracker.runs(D), [])

    def test_resumed_channel_without_reading(self) -> None:
        """A channel known only from the file (rule 4) has no reading: not listed."""
        self.tracker.resume(D, 2, minute("09:59"))
        self.assertEqual(self.runs(), {})

    def test_first_minute(self) -> None:
        self.read(at("10:00:20"), values(450))
        self.read(at("10:00:30"), values(1), channel=3)
        self.assertEqual(self.runs(), {2: minute("10:00"), 3: None})
        self.tick(at("10:03:10"))
        self.assertEqual(self.runs(), {2: minute("10:00"), 3: None})
        self.read(at("10:03:20"), values(0))
        self.assertEqual(self.runs(), {2: None, 3: None})

    def test_matches_the_rows(self) -> None:
        """
        Over random readings, ticks and disconnects: while a channel runs, its run begins
        at the first of the rows written one minute after the other up to the open minute.
        """
        rng = random.Random(13)
        t = at("10:00:00")
        written: dict[int, list[int]] = {2: [], 3: []}
        longer = 0
        for _ in range(2000):
            t += rng.choice([5, 20, 45, 70])
            self.set_time(t)
            event = rng.random()
            if event < 0.05:
                self.tracker.disconnected(D)
            elif event < 0.7:
                channel = rng.choice([2, 3])
                self.tracker.readings(D, {channel: values(rng.choice([0, 3, 450, 900]))})
            for row in self.tracker.close_completed():
                written[row.channel].append(row.minute)
            open_minute = self.tracker.open_minute
            assert open_minute is not None
            for channel, _, first in self.tracker.runs(D):
                if first is None:
                    continue
                rows = [m for m in written[channel] if m < open_minute] + [open_minute]
                start = open_minute
                while start - 1 in rows:
                    start -= 1
                self.assertEqual(first, start)
                longer += first < open_minute
        self.assertGreater(longer, 100)  # runs of more than a minute were checked


class ExportTests(TrackerTestCase):
    """Activity is |power| above the threshold: a meter that exports is running too."""

    def test_export_is_active(self) -> None:
        em_c = parse_channel_name("em:0:c")
        assert em_c is not None
        self.read(at("10:00:10"), values(-250.3), channel=em_c)
        self.read(at("10:01:10"), values(-5), channel=em_c)  # at the threshold: idle
        self.read(at("10:03:10"), values(-5.5), channel=em_c)
        self.assertEqual(self.summary(self.tick(at("10:04:00"))), [
            (minute("10:00"), D, em_c, -250.3),
            (minute("10:01"), D, em_c, -250.3),  # carried (rule 1b)
            (minute("10:03"), D, em_c, -5.5),
        ])

    def test_negative_threshold(self) -> None:
        """Every reading with a number is active; one without is not."""
        self.tracker = ChannelTracker(clock=self.clock, threshold=-1, max_carry=0)
        self.read(at("10:00:10"), values(0))
        self.read(at("10:02:10"), values(None))
        self.assertEqual(self.summary(self.tick(at("10:03:00"))), [(minute("10:00"), D, 2, 0)])


class OrderAcrossMinutesTests(TrackerTestCase):
    """Row order stays right as channels start, stop and start again (the sort is reused)."""

    def test_order_as_the_live_set_changes(self) -> None:
        self.tracker.max_carry = 1
        self.read(at("10:00:01"), values(100), channel=2)
        self.read(at("10:00:02"), values(100), device=E, channel=0)
        first = self.tick(at("10:01:00"))
        self.read(at("10:01:03"), values(100), channel=10)  # a new channel joins
        second = self.tick(at("10:02:00"))
        self.read(at("10:02:30"), values(0), channel=2)  # idle; its carry ended with 10:01
        self.read(at("10:03:10"), values(100), channel=1)
        third = self.tick(at("10:04:00"))
        self.read(at("10:04:10"), values(100), channel=2)  # starts again
        fourth = self.tick(at("10:05:00"))
        self.assertEqual([(r.device_id, r.channel) for r in first], [(E, 0), (D, 2)])
        self.assertEqual([(r.device_id, r.channel) for r in second],
                         [(E, 0), (D, 2), (D, 10)])
        self.assertEqual(
            [(r.minute - minute("10:00"), r.device_id, r.channel) for r in third],
            [(2, D, 10), (3, D, 1)],
        )
        self.assertEqual([(r.device_id, r.channel) for r in fourth], [(D, 1), (D, 2)])


#: Rule 8's order of the families after the switches, written out again here.
_FAMILY_ORDER = ["cct", "cover", "em", "em1", "light", "pm1", "rgb", "rgbw"]


def _rule8(channel: int) -> tuple[int, ...]:
    """
    Where a channel's rows go (rule 8), worked out from its name as people read it, not
    from the tracker's keys: switches by number, families by name, ids, phases.
    """
    name = channel_name(channel)
    if name.isdigit():
        return (0, int(name))
    family, component_id, *phase = name.split(":")
    return (1, _FAMILY_ORDER.index(family), int(component_id), " abc".index((phase or [" "])[0]))


#: Channels of every family, by name, for the random fleets.
_MIXED = [parse_channel_name(name) for name in (
    "0", "2", "10", "pm1:0", "pm1:1", "em:0", "em:0:a", "em:0:b", "em:0:c", "em:1:c",
    "em1:1", "cover:0", "light:2", "rgbw:0", "cct:1", "rgb:3",
)]


class _EagerModel:
    """
    The minute rules applied the plain way, for comparison: every reading of every
    channel is applied as it comes, and every known channel is looked at in every close.
    """

    def __init__(self, threshold: float, max_carry: int) -> None:
        self.threshold, self.max_carry = threshold, max_carry
        self.open: int | None = None
        self.channels: dict[tuple[str, int], dict[str, object]] = {}
        self.rows: list[tuple[int, str, int, ChannelValues, bool]] = []

    def active(self, v: object) -> bool:
        return isinstance(v, ChannelValues) and v.apower is not None \
            and abs(v.apower) > self.threshold

    def advance(self, now: float) -> int:
        target = minute_of(now)
        if self.open is None:
            self.open = target
        while self.open < target:
            self.close(self.open)
            self.open += 1
        return self.open

    def close(self, m: int) -> None:
        for (device, channel), s in sorted(self.channels.items(),
                                           key=lambda item: (item[0][0], _rule8(item[0][1]))):
            source = s["best"] if s["best"] is not None else s["carried"]
            if source is not None and (s["written"] is None or m > s["written"]):  # type: ignore[operator]
                assert isinstance(source, ChannelValues)
                self.rows.append((m, device, channel, source, s["best"] is None))
                s["written"] = m
            s["best"] = None
            fresh = (m + 1) * 60 - s["last_at"] <= self.max_carry * 60  # type: ignore[operator]
            s["carried"] = s["last"] if self.active(s["last"]) and fresh else None

    def readings(self, device: str, values: dict[int, ChannelValues], now: float) -> None:
        m = self.advance(now)
        at = max(now, m * 60)
        for channel, reading in values.items():
            s = self.channels.setdefault((device, channel), dict(
                latest=None, best=None, carried=None, last=None, last_at=0.0, written=None))
            s["latest"] = reading
            if reading.apower is None:
                continue
            s["last"], s["last_at"] = reading, at
            if self.active(reading):
                s["best"] = reading

    def disconnected(self, device: str, now: float) -> None:
        self.advance(now)
        for (d, _channel), s in self.channels.items():
            if d == device:
                s["last"] = None

    def take(self) -> list[tuple[int, str, int, ChannelValues, bool]]:
        rows, self.rows = self.rows, []
        return rows


class FollowingChannelsTests(SynchronousTestCase):
    """
    The tracker applies an unchanged reading (the same object as before) only when it
    needs it; random fleets give the very rows of the plain model above.
    """

    def run_fleet(self, seed: int, mixed: bool = False) -> None:
        """
        Random frames, disconnects, clock steps and ticks; with C{mixed}, the channels
        are of every family (rule 8's order) and powers may be negative (export).
        """
        rng = random.Random(seed)
        pool: list[int] = [c for c in _MIXED if c is not None] if mixed else [0, 1, 2, 3]
        powers: list[float | None] = [None, 0, 3, 5, 5.5, 50, 300, 1200]
        if mixed:
            powers += [-3, -5, -5.5, -300]
        clock = Clock()
        clock.advance(at("10:00:00") + rng.random() * 60)
        max_carry = rng.choice([0, 1, 2, 10])
        tracker = ChannelTracker(clock=clock, threshold=5, max_carry=max_carry)
        model = _EagerModel(5, max_carry)
        status: dict[str, dict[int, ChannelValues] | None] = {D: None, E: None}

        def new_values() -> ChannelValues:
            return values(rng.choice(powers), total=rng.choice([None, 1.0, 2.5]))

        def rows(got: list[Row]) -> list[tuple[int, str, int, ChannelValues, bool]]:
            return [(r.minute, r.device_id, r.channel, r.values, r.carried) for r in got]

        for _ in range(80):
            kind = rng.random()
            if kind < 0.45:
                device = rng.choice([D, E])
                known = status[device]
                if known is None:  # a connection's first frame: its full status
                    first = (rng.sample(pool, rng.randint(1, 3)) if mixed
                             else range(rng.randint(1, 3)))
                    known = status[device] = {c: new_values() for c in first}
                else:
                    for _change in range(rng.choice([0, 0, 1, 1, 2])):
                        known[rng.choice(pool) if mixed else rng.randint(0, 3)] = new_values()
                    if known and rng.random() < 0.05:
                        del known[rng.choice(sorted(known))]
                tracker.readings(device, dict(known))
                model.readings(device, dict(known), clock.seconds())
            elif kind < 0.55:
                device = rng.choice([D, E])
                status[device] = None
                tracker.disconnected(device)
                model.disconnected(device, clock.seconds())
            elif kind < 0.85:
                if rng.random() < 0.1:
                    clock.rightNow -= rng.choice([30, 90, 4000])
                else:
                    clock.advance(rng.choice([0.5, 5, 20, 59, 60, 61, 130, 700]))
            else:
                got = tracker.close_completed()
                if not tracker.stopped:
                    model.advance(clock.seconds())
                self.assertEqual(rows(got), model.take(), seed)
        open_minute = model.advance(clock.seconds())
        model.close(open_minute)
        self.assertEqual(rows(tracker.shutdown()), model.take(), seed)
        for device in (D, E):
            for channel, view in tracker.view(device).items():
                s = model.channels[(device, channel)]
                self.assertIs(view.latest, s["latest"])
                self.assertEqual(view.active, model.active(s["last"]))

    def test_random_fleets(self) -> None:
        for seed in range(400):
            self.run_fleet(seed)

    def test_random_fleets_of_every_family(self) -> None:
        """The same with channels of every metering family, exporting ones among them."""
        for seed in range(400):
            self.run_fleet(seed, mixed=True)
