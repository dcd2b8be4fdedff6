"""
A smoke run of the benchmark (C{bench/run.py --quick}): every step runs, with real server
processes and the load generator, and the table comes out. What the figures are is not
checked; a shared CI machine could not promise any.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import child_environment
from tests.support.tools import missing, tool

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"

MEASURES = (
    "1. throughput, ",
    "2. idle ",
    "3. storm, ",
    "4. minute tick, ",
)


class BenchSmokeTests(SynchronousTestCase):
    def test_quick_run_prints_the_table(self) -> None:
        if not RUN.exists():
            missing("no bench/ next to the tests")
        tool("taskset", "util-linux")
        if len(os.sched_getaffinity(0)) < 2:
            missing("needs two CPUs")
        done = subprocess.run(
            [sys.executable, str(RUN), "--quick"],
            capture_output=True,
            text=True,
            timeout=120,
            # Its server and load generator import the shellylog under test, not another.
            env=child_environment(),
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        out = done.stdout
        self.assertIn("bare autobahn", out)
        self.assertIn("shellylog/bare", out)
        for measure in MEASURES:
            [line] = [line for line in out.splitlines() if measure in line]
            # Every measure has a figure for shellylog (the third column).
            cells = [c.strip() for c in line.split("|")]
            self.assertNotEqual(cells[2], "n/a", line)
        self.assertNotIn("error", out)


DAY = Path(__file__).resolve().parents[2] / "bench" / "day.py"


class DayBenchSmokeTests(SynchronousTestCase):
    def test_small_log(self) -> None:
        """
        C{bench/day.py} on a few days of a few channels, plain and rotated: both days have
        their rows, and the report's command line gives the same runs.
        """
        if not DAY.exists():
            missing("no bench/ next to the tests")
        for rotate in ([], ["--rotate"]):
            done = subprocess.run(
                [sys.executable, str(DAY), "--days", "4", "--channels", "6", "--repeat", "1",
                 "--compare", *rotate],
                capture_output=True, text=True, timeout=120, env=child_environment(),
            )
            self.assertEqual((done.returncode, done.stderr), (0, ""))
            figures = json.loads(done.stdout)
            self.assertEqual((figures["rows"], figures["files"], figures["same_runs"]),
                             (4 * 1440 * 6, 4 if rotate else 1, True))
            self.assertEqual([figures["channel_day"][d]["points"] for d in ("middle", "today")],
                             [1440, 1440])


DB = Path(__file__).resolve().parents[2] / "bench" / "db.py"


class DbBenchSmokeTests(SynchronousTestCase):
    def test_small_batches(self) -> None:
        """C{bench/db.py} on small batches, with the CSV file and the resume query."""
        if not DB.exists():
            missing("no bench/ next to the tests")
        from tests.support.postgres import postgres_bin

        postgres_bin()
        done = subprocess.run(
            [sys.executable, str(DB), "--rows", "400", "--repeat", "2", "--csv",
             "--resume-rows", "1000"],
            capture_output=True, text=True, timeout=120, env=child_environment(),
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        figures = json.loads(done.stdout)
        self.assertNotIn("error", figures)
        self.assertEqual(len(figures["batch_s"]), 2)
        self.assertEqual(figures["resume_channels"], 40_000)
