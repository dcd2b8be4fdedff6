"""
One channel's day from the CSV log (L{shellylog.dayview}): the log's files, the day's
edges (DST days of Europe/Berlin included), equality with the report's command line, and
the shortcuts (files skipped, bisection, early stop) giving what a full read gives.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterable
from datetime import date, timedelta
from itertools import chain

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from shellylog import dayview
from shellylog.dayview import ChannelDay, api_channel, channel_day, log_files
from shellylog.report.files import file_lines, in_time_order
from shellylog.report.output import run_lines
from shellylog.report.rows import NotShellylogError, RowFilter, local_midnight, read_rows
from shellylog.report.runs import DailyBuilder, RunBuilder
from tests.support.reports import BERLIN, PLUS, PRO, UTC, csv_text, minute_at, row, run_main

#: 2027-01-15T00:00 in Berlin.
MIDNIGHT = minute_at("2027-01-15T00:00:00+01:00")
DAY = date(2027, 1, 15)


class Folder(SynchronousTestCase):
    """A test with a folder for files."""

    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.warnings: list[str] = []

    def file(self, name: str, text: str) -> str:
        path = os.path.join(self.folder, name)
        data = text.encode()
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    def day(self, paths: Iterable[str], day: date = DAY, device: str = PRO,
            channel: str = "2") -> ChannelDay:
        return channel_day(list(paths), device, channel, day, BERLIN, self.warnings.append)


class ApiChannelTests(SynchronousTestCase):
    def test_names(self) -> None:
        """Switches as C{switch:N} or the CSV's C{N}; other families as the CSV names them."""
        self.assertEqual(
            [api_channel(n) for n in ("switch:0", "0", "switch:12", "pm1:0", "em:1:a", "em:1")],
            [("switch:0", "0"), ("switch:0", "0"), ("switch:12", "12"), ("pm1:0", "pm1:0"),
             ("em:1:a", "em:1:a"), ("em:1", "em:1")])

    def test_not_channels(self) -> None:
        """Names the CSV never writes are not channels."""
        for name in ("", "switch", "switch:", "switch:01", "01", "switch:-1", "switch:pm1:0",
                     "pm1", "pm1:x", "pm1:01", "em:0:d", "sys:0", "switch:٣", "1e3"):
            self.assertIsNone(api_channel(name), name)


class LogFilesTests(Folder):
    def test_rotated(self) -> None:
        """
        The file and its rotated siblings (numbered, gzipped, with dateext), in the order
        of their first rows; other files of the folder are not the log's.
        """
        log = os.path.join(self.folder, "log.csv")
        for name, minute in [("log.csv", 50), ("log.csv.1", 40), ("log.csv.2.gz", 30),
                             ("log.csv-20270110", 20), ("log.csv-20270101.gz", 10),
                             ("log.csv.bak", 0), ("log.csv.1.old", 0), ("log.csvx", 0),
                             ("other.csv", 0), ("log.csv-2027", 0), ("log.csv.gz", 0)]:
            self.file(name, csv_text([row(MIDNIGHT + minute)]))
        self.assertEqual(log_files(log), [os.path.join(self.folder, name) for name in (
            "log.csv-20270101.gz", "log.csv-20270110", "log.csv.2.gz", "log.csv.1", "log.csv")])

    def test_none_yet(self) -> None:
        """A new install: no file, or not even the folder, is no file."""
        self.assertEqual(log_files(os.path.join(self.folder, "log.csv")), [])
        self.assertEqual(log_files(os.path.join(self.folder, "none", "log.csv")), [])

    def test_without_rows_first(self) -> None:
        """A file without rows (just created, or only a header) comes first, as in the report."""
        self.file("log.csv", "")
        self.file("log.csv.1", csv_text([row(MIDNIGHT)]))
        self.assertEqual([os.path.basename(p) for p in
                          log_files(os.path.join(self.folder, "log.csv"))],
                         ["log.csv", "log.csv.1"])

    def test_not_shellylog(self) -> None:
        """A sibling that is not shellylog's is an error, as in the report."""
        self.file("log.csv.1", "date,watts\n")
        self.assertRaises(NotShellylogError, log_files, os.path.join(self.folder, "log.csv"))


def full_day(paths: list[str], device: str, channel: str, day: date
             ) -> tuple[list[int], list[object], list[str], float | None]:
    """A day as the report makes it from every line of every file: the reference."""
    keep = RowFilter(device=device, channels=frozenset({channel}),
                     since=local_midnight(day, BERLIN),
                     until=local_midnight(day + timedelta(days=1), BERLIN))
    readings = list(chain.from_iterable(
        read_rows(file_lines(p), p, lambda m: None, keep) for p in in_time_order(paths)))
    totals = list(DailyBuilder(BERLIN).totals(readings))
    times: list[int] = []
    powers: list[object] = []
    for minute, _, _, apower, _ in readings:
        if not times or minute * 60 > times[-1]:
            times.append(minute * 60)
            powers.append(apower)
    return (times, powers, list(run_lines(RunBuilder().runs(readings), BERLIN, "json")),
            totals[0].energy_Wh if totals else None)


def view(result: ChannelDay) -> tuple[list[int], list[object], list[str], float | None]:
    return (list(result.points[0]), list(result.points[1]),
            list(run_lines(result.runs, BERLIN, "json")), result.energy_Wh)


def log_rows(rng: random.Random, first: int, minutes: int, devices: tuple[str, ...] = (PRO, PLUS),
             channels: tuple[str, ...] = ("0", "2", "em:0:a")) -> list[str]:
    """Rows as the server writes them: by minute, device, channel; channels on and off."""
    on = {(d, c): rng.random() < 0.5 for d in devices for c in channels}
    counters = {key: rng.uniform(0, 1000) for key in on}
    lines = []
    for minute in range(first, first + minutes):
        for key in on:
            if rng.random() < 0.02:
                on[key] = not on[key]
            if on[key]:
                apower = rng.choice(["", str(round(rng.uniform(6, 2000), 1))])
                counters[key] += rng.uniform(0, 30)
                lines.append(row(minute, key[0], key[1], apower, round(counters[key], 3)))
    return lines


class ChannelDayTests(Folder):
    def test_edges(self) -> None:
        """The local day from its midnight to the next, not a minute more or less."""
        path = self.file("log.csv", csv_text(row(MIDNIGHT + n, apower=n + 1000)
                                             for n in (-2, -1, 0, 1, 1438, 1439, 1440, 1441)))
        result = self.day([path])
        self.assertEqual(result.points, (
            tuple((MIDNIGHT + n) * 60 for n in (0, 1, 1438, 1439)),
            (1000.0, 1001.0, 2438.0, 2439.0)))
        self.assertEqual((result.device_id, result.channel, result.day),
                         (PRO, "2", DAY))

    def test_dst_days(self) -> None:
        """Berlin's spring day has 23 hours of minutes, its autumn day 25."""
        for day, hours in ((date(2027, 3, 28), 23), (date(2027, 10, 31), 25),
                           (date(2027, 7, 1), 24)):
            start = local_midnight(day, BERLIN)
            path = self.file(f"{day}.csv", csv_text(row(m) for m in
                                                    range(start - 30, start + 26 * 60)))
            result = self.day([path], day)
            self.assertEqual(len(result.points[0]), hours * 60, day)
            self.assertEqual(result.points[0][0], start * 60)
            (run,) = result.runs
            self.assertEqual(run.minutes, hours * 60)
            self.assertEqual(result.energy_Wh, hours * 60 * 450 / 60)

    def test_run_across_midnight(self) -> None:
        """A run across midnight is cut there, as the report cuts it with --since/--until."""
        path = self.file("log.csv", csv_text(row(MIDNIGHT + n, energy=n) for n in range(-5, 5)))
        (before,) = self.day([path], DAY - timedelta(days=1)).runs
        (after,) = self.day([path]).runs
        self.assertEqual((before.start, before.end, before.minutes, before.counter_Wh),
                         (MIDNIGHT - 5, MIDNIGHT, 5, 4.0))
        self.assertEqual((after.start, after.end, after.minutes, after.counter_Wh),
                         (MIDNIGHT, MIDNIGHT + 5, 5, 4.0))

    def test_no_rows(self) -> None:
        """No files, files without rows, no rows of the channel that day: nothing."""
        empty = ChannelDay(PRO, "2", DAY, ((), ()), (), None)
        self.assertEqual(self.day([]), empty)
        self.assertEqual(self.day([self.file("a.csv", ""), self.file("b.csv", csv_text([]))]),
                         empty)
        path = self.file("log.csv", csv_text([row(MIDNIGHT - 1), row(MIDNIGHT, channel="3"),
                                              row(MIDNIGHT, PLUS)]))
        self.assertEqual(self.day([path]), empty)

    def test_torn_lines(self) -> None:
        """
        The newest file's torn last line (the server is writing it) is left out quietly;
        one in an older file is left out with the report's warning.
        """
        older = self.file("log.csv.1", csv_text([row(MIDNIGHT), row(MIDNIGHT + 1)])[:-30])
        newest = self.file("log.csv", csv_text([row(MIDNIGHT + 2), row(MIDNIGHT + 3)])[:-30])
        result = self.day([newest, older])
        self.assertEqual(result.points[0], (MIDNIGHT * 60, (MIDNIGHT + 2) * 60))
        self.assertEqual(self.warnings, [
            f"{older}: line 3 is torn (no line end); ignored: "
            "'2027-01-15T00:01:00+01:00,shellypro4pm-'"])

    def test_equals_the_command_line(self) -> None:
        """
        Every other day of a log of ten days across a DST change in four files (gzipped,
        dateext, numbered, current), for each device and channel: the runs equal what
        C{shellylog-report --since DAY --until DAY --device ID --channel CH} prints, the
        energy what it prints with C{--daily}.
        """
        self.patch(dayview, "BISECT_STOP", 256)
        rng = random.Random(14)
        first = local_midnight(date(2027, 3, 24), BERLIN) - 3
        rows = log_rows(rng, first, 10 * 1440)
        cuts = sorted(rng.sample(range(1, len(rows)), 3))
        names = ["log.csv-20270325.gz", "log.csv-20270330", "log.csv.1", "log.csv"]
        paths = [self.file(name, csv_text(rows[lo:hi])) for name, lo, hi in
                 zip(names, [0, *cuts], [*cuts, len(rows)], strict=True)]
        self.assertEqual(log_files(paths[-1]), paths)
        checked = 0
        for offset in range(-2, 12, 2):
            day = date(2027, 3, 24) + timedelta(days=offset)
            for device, channel in ((PRO, "2"), (PLUS, "em:0:a")):
                result = self.day(reversed(paths), day, device, channel)
                args = ["--tz", "Europe/Berlin", "--since", str(day), "--until", str(day),
                        "--device", device, "--channel", channel, "--format", "json", *paths]
                status, out, err = run_main(self, *args)
                self.assertEqual((status, err), (0, ""))
                self.assertEqual("".join(run_lines(result.runs, BERLIN, "json")), out)
                status, out, err = run_main(self, *args, "--daily")
                totals = json.loads(out)
                self.assertEqual(result.energy_Wh, totals[0]["energy_Wh"] if totals else None)
                checked += len(result.runs)
        self.assertGreater(checked, 20)
        self.assertEqual(self.warnings, [])


class ShortcutTests(Folder):
    """What is not read: each test puts a bad row where no shortcut may go."""

    #: A line that is no row: read_rows refuses it wherever it is read.
    BAD = "not a row\n"

    def test_files_outside_the_day_skipped(self) -> None:
        """
        A file that ends before the day (where the next begins), or begins after it, is
        not read past its first row, even when gzip (which cannot be bisected).
        """
        before = self.file("log.csv.2.gz", csv_text([row(MIDNIGHT - 2880), self.BAD]))
        during = self.file("log.csv.1", csv_text([row(MIDNIGHT - 1440), row(MIDNIGHT + 600)]))
        after = self.file("log.csv", csv_text([row(MIDNIGHT + 2880), self.BAD]))
        self.assertEqual(self.day([before, during, after]).points[0], ((MIDNIGHT + 600) * 60,))
        for path in (before, after):
            self.assertRaises(NotShellylogError, full_day, [path], PRO, "2", DAY)

    def test_bisection_and_stop(self) -> None:
        """
        In a plain file, rows well before the day are skipped by bisection, and reading
        stops well after it; in a gzip file reading stops too.
        """
        self.patch(dayview, "BISECT_STOP", 256)
        lines = [row(m) for m in range(MIDNIGHT - 5 * 1440, MIDNIGHT + 5 * 1440)]
        lines[-1000] = self.BAD
        path = self.file("log.csv.1.gz", csv_text(lines))
        self.assertEqual(len(self.day([path]).points[0]), 1440)
        self.assertRaises(NotShellylogError, full_day, [path], PRO, "2", DAY)
        lines[1000] = self.BAD
        path = self.file("log.csv", csv_text(lines))
        self.assertEqual(len(self.day([path]).points[0]), 1440)
        self.assertRaises(NotShellylogError, full_day, [path], PRO, "2", DAY)

    def test_clock_set_back_within_the_margin(self) -> None:
        """A restart with the clock an hour behind the log's end: its rows of the day count."""
        self.patch(dayview, "BISECT_STOP", 256)
        lines = ([row(m) for m in range(MIDNIGHT - 2880, MIDNIGHT + 30)]
                 + [row(m, channel="3") for m in range(MIDNIGHT - 30, MIDNIGHT + 2880)])
        path = self.file("log.csv", csv_text(lines))
        self.assertEqual(len(self.day([path], channel="3").points[0]), 1440)
        self.assertEqual(len(self.day([path], DAY - timedelta(days=1), channel="3").points[0]),
                         30)
        self.assertEqual(len(self.day([path], DAY - timedelta(days=1)).points[0]), 1440)

    def test_clock_set_back_far(self) -> None:
        """
        A restart with the clock days behind the log (half the file is later than the
        rest): the bisection's probes see it and the file is read whole.
        """
        self.patch(dayview, "BISECT_STOP", 256)
        lines = ([row(m) for m in range(MIDNIGHT - 1440, MIDNIGHT + 2880)]
                 + [row(m) for m in range(MIDNIGHT - 10 * 1440, MIDNIGHT - 5 * 1440)])
        path = self.file("log.csv", csv_text(lines))
        self.assertEqual(len(self.day([path]).points[0]), 1440)
        self.assertEqual(view(self.day([path])), full_day([path], PRO, "2", DAY))

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**32), days=st.integers(0, 3), cut=st.floats(0, 1),
           back=st.integers(0, 180), stop=st.sampled_from([64, 256, 4096]),
           gzipped=st.booleans())
    def test_same_as_a_full_read(self, seed: int, days: int, cut: float, back: int,
                                 stop: int, gzipped: bool) -> None:
        """
        Random logs in two files (the older one plain or gzip), with a restart whose clock
        is up to the margin (three hours) behind: every day equals the report's full read
        of every line.
        """
        self.patch(dayview, "BISECT_STOP", stop)
        rng = random.Random(seed)
        first = MIDNIGHT - 1440 + rng.randrange(1440)
        # The log ends within the margin after a midnight, where it restarts with the
        # clock up to the margin behind: rows of both days come after rows of the later.
        end = MIDNIGHT + days * 1440 + rng.randrange(back + 1)
        lines = log_rows(rng, first, end - first, channels=("2", "pm1:0"))
        lines += log_rows(rng, end - back, 600, channels=("2", "pm1:0"))
        split = int(len(lines) * cut)
        older = self.file("log.csv.1.gz" if gzipped else "log.csv.1", csv_text(lines[:split]))
        newest = self.file("log.csv", csv_text(lines[split:]))
        for offset in range(-1, days + 3):
            day = DAY - timedelta(days=1) + timedelta(days=offset)
            for device, channel in ((PRO, "2"), (PLUS, "pm1:0")):
                self.assertEqual(view(self.day([newest, older], day, device, channel)),
                                 full_day([older, newest], device, channel, day),
                                 (day, device, channel))


class UtcTests(Folder):
    def test_utc_day(self) -> None:
        """In UTC a day is 1,440 minutes from 00:00Z."""
        start = local_midnight(DAY, UTC)
        path = self.file("log.csv", csv_text(row(m, zone=UTC)
                                             for m in range(start - 5, start + 1445)))
        result = channel_day([path], PRO, "2", DAY, UTC, self.warnings.append)
        self.assertEqual((len(result.points[0]), result.points[0][0]), (1440, start * 60))
