"""
The report's pure parts: rows read and checked, runs and daily totals at the edges of
their definitions (README, "What did my pump do?"), and the three output formats.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

from twisted.trial.unittest import SynchronousTestCase

from shellylog.csvlog import HEADER
from shellylog.report.output import day_lines, run_lines
from shellylog.report.rows import (
    EVERY_ROW,
    NotShellylogError,
    RowFilter,
    parse_when,
    read_rows,
)
from shellylog.report.runs import DailyBuilder, DayTotal, Run, RunBuilder
from tests.support.reports import BERLIN, PLUS, PRO, UTC, csv_text, minute_at, row

#: 2027-01-15T09:00+01:00.
M = minute_at("2027-01-15T09:00:00+01:00")


def lines(text: str) -> list[str]:
    """A file's text as a file gives its lines."""
    return text.splitlines(keepends=True)


def runs_of(text: str, gap: int = 0, keep: RowFilter = EVERY_ROW) -> list[Run]:
    warnings: list[str] = []
    return list(RunBuilder(gap).runs(read_rows(lines(text), "log.csv", warnings.append, keep)))


def days_of(text: str, gap: int = 0) -> list[DayTotal]:
    return list(DailyBuilder(BERLIN, gap).totals(read_rows(lines(text), "log.csv", print)))


def spans(runs: Iterable[Run]) -> list[tuple[int, int, int]]:
    """(start, end, minutes) of each run, relative to M."""
    return [(r.start - M, r.end - M, r.minutes) for r in runs]


class RowTests(SynchronousTestCase):
    """What C{read_rows} reads, and what it refuses."""

    def read(self, text: str, keep: RowFilter = EVERY_ROW) -> tuple[list[object], list[str]]:
        warnings: list[str] = []
        return list(read_rows(lines(text), "log.csv", warnings.append, keep)), warnings

    def test_row(self) -> None:
        text = csv_text([row(M, apower=450.5, energy=100.25), row(M, PLUS, "0", 3.5)])
        self.assertEqual(self.read(text), (
            [(M, PRO, "2", 450.5, 100.25), (M, PLUS, "0", 3.5, None)], []))

    def test_eight_columns(self) -> None:
        """A file of C{--columns ret_energy_total_Wh}: the eighth column is read past."""
        text = csv_text([row(M, channel="em:0:c", apower=-250.3, energy=80.84, extra="41.71")],
                        header=HEADER + ",ret_energy_total_Wh")
        self.assertEqual(self.read(text), ([(M, PRO, "em:0:c", -250.3, 80.84)], []))

    def test_seven_columns_in_an_eight_column_file(self) -> None:
        text = csv_text([row(M)], header=HEADER + ",ret_energy_total_Wh")
        with self.assertRaises(NotShellylogError) as caught:
            self.read(text)
        self.assertIn("log.csv: line 2 is not a shellylog row (7 columns, expected 8)",
                      str(caught.exception))

    def test_torn_last_line(self) -> None:
        text = csv_text([row(M), row(M + 1)])[:-9]
        readings, warnings = self.read(text)
        self.assertEqual(readings, [(M, PRO, "2", 450.0, None)])
        self.assertEqual(warnings, [
            "log.csv: line 3 is torn (no line end); ignored: "
            "'2027-01-15T09:01:00+01:00,shellypro4pm-aabbccddeeff,2,450,23'"])

    def test_empty_and_torn_header(self) -> None:
        self.assertEqual(self.read(""), ([], []))
        self.assertEqual(self.read(HEADER[:20]),
                         ([], ["log.csv: the header is torn (no line end); no rows"]))

    def test_not_shellylog(self) -> None:
        for text, why in [
            ("date,power\n2027-01-15,450\n",
             "log.csv: not a shellylog CSV file: its first line is 'date,power\\n', expected "
             f"'{HEADER}' (or with ',ret_energy_total_Wh')"),
            (csv_text(["2027-01-15 09:00,shellypro4pm-aabbccddeeff,2,450,230,1.9,\n"]),
             "log.csv: line 2 is not a shellylog row (a timestamp without its UTC offset)"),
            (csv_text([row(M, device="=cmd()")]),
             "log.csv: line 2 is not a shellylog row ('=cmd()' is not a device id)"),
            (csv_text([row(M, channel="switch:2")]),
             "log.csv: line 2 is not a shellylog row ('switch:2' is not a channel)"),
            (csv_text([row(M, apower="lots")]),
             "log.csv: line 2 is not a shellylog row (could not convert string to float: "
             "'lots')"),
            (csv_text([row(M, energy="nan")]),
             "log.csv: line 2 is not a shellylog row (a number that is not finite)"),
        ]:
            with self.assertRaises(NotShellylogError) as caught:
                self.read(text)
            self.assertTrue(str(caught.exception).startswith(why), str(caught.exception))

    def test_filters(self) -> None:
        text = csv_text([row(M + n, device, channel) for n in range(3)
                         for device in (PRO, PLUS) for channel in ("0", "2")])

        def kept(keep: RowFilter) -> list[tuple[int, str, str]]:
            return [(r[0] - M, r[1], r[2]) for r in self.read(text, keep)[0]]  # type: ignore[index]

        self.assertEqual(kept(RowFilter(device="shellyplus*", channels=frozenset({"2"}))),
                         [(0, PLUS, "2"), (1, PLUS, "2"), (2, PLUS, "2")])
        self.assertEqual(kept(RowFilter(device=PRO, channels=frozenset({"0"}), since=M + 1,
                                        until=M + 2)), [(1, PRO, "0")])

    def test_when(self) -> None:
        """Dates are local midnights (C{--until}: the day included); times, moments."""
        self.assertEqual(parse_when("2026-03-29", BERLIN),
                         minute_at("2026-03-29T00:00:00+01:00"))
        self.assertEqual(parse_when("2026-03-29", BERLIN, until=True),
                         minute_at("2026-03-30T00:00:00+02:00"))
        self.assertEqual(parse_when("2026-03-29T03:30", BERLIN),
                         minute_at("2026-03-29T03:30:00+02:00"))
        self.assertEqual(parse_when("2026-03-29T03:30:59+00:00", BERLIN),
                         minute_at("2026-03-29T03:30:00+00:00"))
        with self.assertRaises(ValueError):
            parse_when("yesterday", UTC)


class RunTests(SynchronousTestCase):
    """Runs at the edges of their definition."""

    def test_one_minute_run(self) -> None:
        (run,) = runs_of(csv_text([row(M, apower=600, energy=10.5)]))
        self.assertEqual(run, Run(device=PRO, channel="2", start=M, end=M + 1, minutes=1,
                                  peak_W=600.0, mean_W=600.0, energy_Wh=10.0,
                                  counter_Wh=0.0))

    def test_gap(self) -> None:
        """Exactly N minutes without a row between two runs: joined by C{--gap N}, not by
        C{--gap N - 1}."""
        text = csv_text([row(M), row(M + 1), row(M + 4), row(M + 9)])
        self.assertEqual(spans(runs_of(text)), [(0, 2, 2), (4, 5, 1), (9, 10, 1)])
        # 2 minutes missing between M+1 and M+4, 4 between M+4 and M+9.
        self.assertEqual(spans(runs_of(text, gap=1)), [(0, 2, 2), (4, 5, 1), (9, 10, 1)])
        self.assertEqual(spans(runs_of(text, gap=2)), [(0, 5, 3), (9, 10, 1)])
        self.assertEqual(spans(runs_of(text, gap=3)), [(0, 5, 3), (9, 10, 1)])
        self.assertEqual(spans(runs_of(text, gap=4)), [(0, 10, 4)])

    def test_sums(self) -> None:
        """Peak keeps its sign (the largest magnitude), mean and energy over the rows."""
        text = csv_text([row(M + n, channel="em:0:c", apower=a)
                         for n, a in enumerate([-250.5, 100, -300.25, 30])])
        (run,) = runs_of(text)
        self.assertEqual((run.peak_W, run.mean_W, run.energy_Wh),
                         (-300.25, -105.1875, -420.75 / 60))

    def test_counter(self) -> None:
        """The rise over the run's counter cells, exactly as written; a reset starts anew."""
        text = csv_text([row(M, energy=100.0), row(M + 1, energy=""),
                         row(M + 2, energy=100.4), row(M + 3, energy=100.7)])
        self.assertEqual(runs_of(text)[0].counter_Wh, 0.7)
        reset = csv_text([row(M, energy=5000.2), row(M + 1, energy=5001.0),
                          row(M + 2, energy=0.3), row(M + 3, energy=1.0)])
        self.assertEqual(runs_of(reset)[0].counter_Wh, 0.8 + 0.7)

    def test_counter_missing(self) -> None:
        """No counter cell in the run: no C{counter_Wh} (not 0)."""
        (run,) = runs_of(csv_text([row(M, energy=""), row(M + 1, energy="")]))
        self.assertIsNone(run.counter_Wh)
        self.assertEqual(run.energy_Wh, 15.0)

    def test_power_missing(self) -> None:
        (run,) = runs_of(csv_text([row(M, apower="", energy=1.0)]))
        self.assertEqual((run.minutes, run.peak_W, run.mean_W, run.energy_Wh, run.counter_Wh),
                         (1, None, None, None, 0.0))

    def test_dst(self) -> None:
        """
        Minutes are UTC minutes: a run across a DST change lasts what it lasted, 3
        minutes from 01:59 CET to 03:01 CEST, or across 02:59 CEST to 02:00 CET.
        """
        spring = minute_at("2026-03-29T01:59:00+01:00")
        autumn = minute_at("2026-10-25T02:59:00+02:00")
        text = csv_text([row(spring + n) for n in range(2)] + [row(autumn + n) for n in range(3)])
        runs = runs_of(text)
        self.assertEqual([(r.start, r.end, r.minutes) for r in runs],
                         [(spring, spring + 2, 2), (autumn, autumn + 3, 3)])

    def test_interleaved_devices(self) -> None:
        """Devices and channels interleave in a file; each has its own runs."""
        text = csv_text([row(M + n, device, channel) for n in range(3)
                         for device in (PLUS, PRO) for channel in ("0", "10", "2")
                         if not (device == PRO and n == 1 and channel == "10")])
        runs = runs_of(text)
        self.assertEqual([(r.device, r.channel, r.start - M, r.end - M) for r in runs], [
            (PRO, "10", 0, 1),
            (PLUS, "0", 0, 3), (PLUS, "2", 0, 3), (PLUS, "10", 0, 3),
            (PRO, "0", 0, 3), (PRO, "2", 0, 3), (PRO, "10", 2, 3),
        ])

    def test_repeated_rows_skipped(self) -> None:
        text = csv_text([row(M), row(M + 1)])
        builder = RunBuilder()
        doubled = lines(text) + lines(text)[1:]
        runs = list(builder.runs(read_rows(doubled, "log.csv", print)))
        self.assertEqual(spans(runs), [(0, 2, 2)])
        self.assertEqual(builder.skipped, 2)


class DailyTests(SynchronousTestCase):
    """Daily totals: runs split at local midnight, days of 23, 24 and 25 hours."""

    def test_midnight_splits_a_run(self) -> None:
        start = minute_at("2027-01-15T23:58:00+01:00")
        text = csv_text([row(start + n, apower=600) for n in range(5)])
        self.assertEqual(len(runs_of(text)), 1)
        self.assertEqual(days_of(text), [
            DayTotal(PRO, "2", date(2027, 1, 15), runs=1, minutes=2, energy_Wh=20.0,
                     peak_W=600.0),
            DayTotal(PRO, "2", date(2027, 1, 16), runs=1, minutes=3, energy_Wh=30.0,
                     peak_W=600.0),
        ])

    def test_dst_days(self) -> None:
        """Running day and night from the 28th to the 30th: 23 hours on the 29th of March,
        25 on the 25th of October."""
        for first, hours in [(date(2026, 3, 28), 23), (date(2026, 10, 24), 25)]:
            begin = minute_at(f"{first.isoformat()}T00:00:00+0{1 if first.month == 3 else 2}:00")
            end = minute_at(f"{date.fromordinal(first.toordinal() + 3).isoformat()}T00:00:00"
                            f"+0{2 if first.month == 3 else 1}:00")
            text = csv_text([row(m, apower=60) for m in range(begin, end)])
            totals = days_of(text)
            self.assertEqual([(t.day.day - first.day, t.runs, t.minutes) for t in totals],
                             [(0, 1, 1440), (1, 1, hours * 60), (2, 1, 1440)])
            self.assertEqual(totals[1].energy_Wh, hours * 60.0)

    def test_runs_per_day(self) -> None:
        """Runs of the day (joined by C{--gap} as runs are), the piece after midnight one."""
        late = minute_at("2027-01-15T23:50:00+01:00")
        text = csv_text([row(late + n) for n in (0, 1, 3, 9, 10, 12, 13)])
        self.assertEqual([(t.day.day, t.runs, t.minutes) for t in days_of(text)],
                         [(15, 3, 4), (16, 2, 3)])
        self.assertEqual([(t.day.day, t.runs, t.minutes) for t in days_of(text, gap=1)],
                         [(15, 2, 4), (16, 1, 3)])


#: A morning of two devices: the pump on switch:2 runs twice (the second time a minute),
#: a 1PM without an energy counter once.
SAMPLE = csv_text([
    row(M, PRO, "2", 450, 100.0), row(M, PLUS, "0", 60.5, ""),
    row(M + 1, PRO, "2", 460, 107.5), row(M + 1, PLUS, "0", 61.5, ""),
    row(M + 2, PRO, "2", 455.5, 115.2),
    row(M + 5, PRO, "2", 300, 122.8),
])


class OutputTests(SynchronousTestCase):
    """Each format, exactly."""

    def test_runs_text(self) -> None:
        self.assertEqual("".join(run_lines(runs_of(SAMPLE), BERLIN)), (
            "device                         channel  start                   end                "
            "     minutes     peak_W     mean_W   energy_Wh  counter_Wh\n"
            "shellyplus1pm-112233445566     0        2027-01-15 09:00+01:00  2027-01-15 09:02+01:00"
            "        2       61.5       61.0        2.03           -\n"
            "shellypro4pm-aabbccddeeff      2        2027-01-15 09:00+01:00  2027-01-15 09:03+01:00"
            "        3      460.0      455.2       22.76       15.20\n"
            "shellypro4pm-aabbccddeeff      2        2027-01-15 09:05+01:00  2027-01-15 09:06+01:00"
            "        1      300.0      300.0        5.00        0.00\n"
        ))

    def test_runs_csv(self) -> None:
        self.assertEqual("".join(run_lines(runs_of(SAMPLE), UTC, "csv")), (
            "device,channel,start,end,minutes,peak_W,mean_W,energy_Wh,counter_Wh\n"
            "shellyplus1pm-112233445566,0,2027-01-15T08:00:00+00:00,2027-01-15T08:02:00+00:00,"
            "2,61.5,61.0,2.033,\n"
            "shellypro4pm-aabbccddeeff,2,2027-01-15T08:00:00+00:00,2027-01-15T08:03:00+00:00,"
            "3,460.0,455.167,22.758,15.2\n"
            "shellypro4pm-aabbccddeeff,2,2027-01-15T08:05:00+00:00,2027-01-15T08:06:00+00:00,"
            "1,300.0,300.0,5.0,0.0\n"
        ))

    def test_runs_json(self) -> None:
        text = "".join(run_lines(runs_of(SAMPLE), BERLIN, "json"))
        self.assertEqual(text, (
            '[{"device": "shellyplus1pm-112233445566", "channel": "0", '
            '"start": "2027-01-15T09:00:00+01:00", "end": "2027-01-15T09:02:00+01:00", '
            '"minutes": 2, "peak_W": 61.5, "mean_W": 61.0, "energy_Wh": 2.033333333333333, '
            '"counter_Wh": null},\n'
            '{"device": "shellypro4pm-aabbccddeeff", "channel": "2", '
            '"start": "2027-01-15T09:00:00+01:00", "end": "2027-01-15T09:03:00+01:00", '
            '"minutes": 3, "peak_W": 460.0, "mean_W": 455.1666666666667, '
            '"energy_Wh": 22.758333333333333, "counter_Wh": 15.2},\n'
            '{"device": "shellypro4pm-aabbccddeeff", "channel": "2", '
            '"start": "2027-01-15T09:05:00+01:00", "end": "2027-01-15T09:06:00+01:00", '
            '"minutes": 1, "peak_W": 300.0, "mean_W": 300.0, "energy_Wh": 5.0, '
            '"counter_Wh": 0.0}\n'
            ']\n'
        ))
        self.assertEqual(json.loads(text)[1]["energy_Wh"], (450 + 460 + 455.5) / 60)
        self.assertEqual("".join(run_lines([], BERLIN, "json")), "[]\n")

    def test_daily_formats(self) -> None:
        totals = days_of(SAMPLE)
        self.assertEqual("".join(day_lines(totals)), (
            "device                         channel  day          runs  minutes   energy_Wh"
            "     peak_W\n"
            "shellyplus1pm-112233445566     0        2027-01-15      1        2        2.03"
            "       61.5\n"
            "shellypro4pm-aabbccddeeff      2        2027-01-15      2        4       27.76"
            "      460.0\n"
        ))
        self.assertEqual("".join(day_lines(totals, "csv")), (
            "device,channel,day,runs,minutes,energy_Wh,peak_W\n"
            "shellyplus1pm-112233445566,0,2027-01-15,1,2,2.033,61.5\n"
            "shellypro4pm-aabbccddeeff,2,2027-01-15,2,4,27.758,460.0\n"
        ))
        self.assertEqual("".join(day_lines(totals, "json")), (
            '[{"device": "shellyplus1pm-112233445566", "channel": "0", "day": "2027-01-15", '
            '"runs": 1, "minutes": 2, "energy_Wh": 2.033333333333333, "peak_W": 61.5},\n'
            '{"device": "shellypro4pm-aabbccddeeff", "channel": "2", "day": "2027-01-15", '
            '"runs": 2, "minutes": 4, "energy_Wh": 27.758333333333333, "peak_W": 460.0}\n'
            ']\n'
        ))
