"""
The report on what the server really writes: the simulator's pump (a Pro 4PM whose
switch:2 runs 3 minutes on, 5 off) on the whole in-memory server for forty minutes, then
its runs, where C{energy_Wh} (from power) and C{counter_Wh} (from the device's counter)
differ as the README says.
"""

from __future__ import annotations

import csv
import math
from itertools import pairwise
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from shellylog.report.output import iso_minute
from shellylog.report.rows import read_rows
from shellylog.report.runs import Run, RunBuilder
from shellylog.simulate.client import DeviceClientFactory, DeviceClientProtocol
from shellylog.simulate.profiles import PROFILES
from tests.support.stack import T0, Stack

MINUTES = 40


class PumpReportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stack = Stack(self, "--tz", "Europe/Berlin", start=T0 + 5)
        self.device = PROFILES["pump"].create_device(0, self.stack.clock, seed=1)
        factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", self.device, self.stack.clock)
        client = factory.buildProtocol(None)
        assert isinstance(client, DeviceClientProtocol)
        self.assertTrue(self.stack.harness._connect(client, client).upgraded)
        factory.start_sampling()
        pump = self.device.channels[2]
        before = pump.total
        self.stack.advance(MINUTES * 60)
        # What the pump really drew, by the simulator's own integration.
        self.drawn: float = pump.total - before
        factory.stop()
        self.stack.stop()
        with open(self.stack.csv, encoding="utf-8", newline="") as f:
            self.rows: list[list[str]] = list(csv.reader(f))[1:]
        with open(self.stack.csv, encoding="utf-8", newline="") as f:
            self.runs: list[Run] = list(RunBuilder().runs(read_rows(f, "power.csv", self.fail)))

    def rows_of(self, run: Run) -> list[list[str]]:
        zone = ZoneInfo("Europe/Berlin")
        stamps = {iso_minute(m, zone) for m in range(run.start, run.end)}
        return [r for r in self.rows if r[0] in stamps and r[2] == run.channel]

    def test_runs(self) -> None:
        """
        Every 8 minutes the pump runs 3 minutes; starting and stopping inside a minute, it
        has rows in 4 minutes.
        """
        self.assertEqual({r.channel for r in self.runs}, {"2"})
        self.assertEqual(len(self.runs), 5)
        starts = [r.start for r in self.runs]
        self.assertEqual([b - a for a, b in pairwise(starts)], [8] * 4)
        self.assertEqual([r.minutes for r in self.runs], [4] * 5)
        self.assertEqual([r.end - r.start for r in self.runs], [4] * 5)
        for run in self.runs:
            assert run.peak_W is not None and run.mean_W is not None
            self.assertTrue(700 < run.mean_W <= abs(run.peak_W) < 800, run)

    def test_definitions(self) -> None:
        """C{energy_Wh} is the rows' power over their minutes; C{counter_Wh} the counter's
        rise over the rows."""
        for run in self.runs:
            rows = self.rows_of(run)
            self.assertEqual(len(rows), run.minutes)
            assert run.energy_Wh is not None and run.counter_Wh is not None
            self.assertAlmostEqual(run.energy_Wh, math.fsum(float(r[3]) for r in rows) / 60,
                                   places=9)
            self.assertAlmostEqual(run.counter_Wh, float(rows[-1][6]) - float(rows[0][6]),
                                   places=9)

    def test_power_and_counter_differ(self) -> None:
        """
        The counter reaches the log about a minute late (a device sends it once a minute,
        for the minute before): a run's rows see its rise up to the start of its last
        minute, and the rest shows in the next row, the next run's first. Power counts
        each row's minute whole, the pump's partial first and last ones too. So what the
        pump drew lies between the two: C{counter_Wh} below, C{energy_Wh} above, each by
        less than a minute at full power per run.
        """
        counted = math.fsum(r.counter_Wh or 0.0 for r in self.runs)
        powered = math.fsum(r.energy_Wh or 0.0 for r in self.runs)
        minute_at_peak = max(abs(r.peak_W or 0.0) for r in self.runs) / 60
        self.assertLess(counted, self.drawn)
        self.assertLess(self.drawn, powered)
        self.assertLess(self.drawn - counted, len(self.runs) * minute_at_peak)
        self.assertLess(powered - self.drawn, len(self.runs) * minute_at_peak)
        for run, after in pairwise(self.runs):
            # Between two runs the pump is off, yet the counter rose: the last minute.
            late = float(self.rows_of(after)[0][6]) - float(self.rows_of(run)[-1][6])
            self.assertTrue(0 < late < minute_at_peak, (run, late))
            assert run.energy_Wh is not None and run.counter_Wh is not None
            # The run's part of what was drawn, its counter's rise and that minute, is
            # still less than its power figure, which counts the first minute whole too.
            self.assertLess(run.counter_Wh + late, run.energy_Wh)
