"""
The report's command line on files as they are in real life: rotated (and gzipped)
files given together, a torn last line, files that are not shellylog's.
"""

from __future__ import annotations

import gzip
import os

from twisted.trial.unittest import SynchronousTestCase

from shellylog.csvlog import HEADER
from tests.support.reports import PLUS, PRO, csv_text, minute_at, row, run_main

M = minute_at("2027-01-15T09:00:00+01:00")


class CommandLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def file(self, name: str, text: str | bytes) -> str:
        path = os.path.join(self.folder, name)
        data = text.encode() if isinstance(text, str) else text
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    def test_rotated_files(self) -> None:
        """
        Three files of one log, rotated at 09:02 and 09:04 (the oldest gzipped), given
        newest first: read in time order, the run across both rotations is one.
        """
        oldest = self.file("log.csv.2.gz", csv_text([row(M + n, energy=10 + n) for n in (0, 1)]
                                                    + [row(M + 1, PLUS, "0")]))
        older = self.file("log.csv.1", csv_text([row(M + n, energy=10 + n) for n in (2, 3)]))
        newest = self.file("log.csv", csv_text([row(M + n, energy=10 + n) for n in (4, 5)]))
        status, out, err = run_main(self, newest, older, oldest, "--tz", "Europe/Berlin",
                                    "--format", "csv")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, (
            "device,channel,start,end,minutes,peak_W,mean_W,energy_Wh,counter_Wh\n"
            f"{PLUS},0,2027-01-15T09:01:00+01:00,2027-01-15T09:02:00+01:00,1,450.0,450.0,7.5,\n"
            f"{PRO},2,2027-01-15T09:00:00+01:00,2027-01-15T09:06:00+01:00,6,450.0,450.0,45.0,"
            "5.0\n"
        ))

    def test_torn_last_line(self) -> None:
        """A torn last line is left out, with a warning on stderr; the rest is reported."""
        path = self.file("log.csv", csv_text([row(M), row(M + 1)])[:-30])
        status, out, err = run_main(self, path, "--format", "csv")
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines()[1:], [
            f"{PRO},2,2027-01-15T08:00:00+00:00,2027-01-15T08:01:00+00:00,1,450.0,450.0,7.5,"])
        self.assertEqual(err, (
            f"shellylog-report: warning: {path}: line 3 is torn (no line end); ignored: "
            "'2027-01-15T09:01:00+01:00,shellypro4pm-'\n"))

    def test_not_shellylog(self) -> None:
        """Exit status 2, the file and what is wrong on stderr, nothing on stdout."""
        good = self.file("log.csv", csv_text([row(M)]))
        cases: list[tuple[str, str | bytes, str]] = [
            ("prices.csv", "date,price\n2027-01-15,0.31\n",
             "not a shellylog CSV file: its first line is 'date,price\\n', expected "
             f"'{HEADER}' (or with ',ret_energy_total_Wh')"),
            ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
             "not a shellylog CSV file: 'utf-8' codec can't decode byte 0xff in position 0: "
             "invalid start byte"),
            ("cut.csv.gz", gzip.compress(csv_text([row(M)]).encode())[:-12],
             "not a shellylog CSV file: Compressed file ended before the end-of-stream "
             "marker was reached"),
            ("edited.csv", csv_text([row(M), "2027-01-15T09:01:00+01:00;x;2;450\n"]),
             "line 3 is not a shellylog row (1 columns, expected 7): "
             "'2027-01-15T09:01:00+01:00;x;2;450\\n'"),
        ]
        for name, data, why in cases:
            path = os.path.join(self.folder, name)
            with open(path, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            status, out, err = run_main(self, good, path)
            self.assertEqual((status, err), (2, f"shellylog-report: error: {path}: {why}\n"),
                             name)
            if name != "edited.csv":  # a header is checked before any output
                self.assertEqual(out, "", name)
        missing = os.path.join(self.folder, "nowhere.csv")
        self.assertEqual(run_main(self, missing), (
            2, "", f"shellylog-report: error: {missing}: cannot be read: "
            "No such file or directory\n"))

    def test_eight_columns_and_seven(self) -> None:
        """A file of C{--columns ret_energy_total_Wh} and an older one of seven, together."""
        old = self.file("log.csv.1", csv_text([row(M)]))
        new = self.file("log.csv", csv_text([row(M + 1, extra="0.5")],
                                            header=HEADER + ",ret_energy_total_Wh"))
        status, out, _ = run_main(self, new, old, "--format", "csv")
        self.assertEqual((status, out.splitlines()[1].split(",")[2:5]),
                         (0, ["2027-01-15T08:00:00+00:00", "2027-01-15T08:02:00+00:00", "2"]))

    def test_daily_and_filters(self) -> None:
        path = self.file("log.csv", csv_text(
            [row(M + n, device, channel, 600) for n in range(3)
             for device in (PRO, PLUS) for channel in ("0", "2")]
            + [row(M + 1440, PRO, "2", 600)]))
        status, out, err = run_main(self, path, "--daily", "--device", "shellypro4pm-*",
                                    "--channel", "2", "--since", "2027-01-15T09:01",
                                    "--until", "2027-01-16", "--tz", "Europe/Berlin",
                                    "--format", "csv")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, (
            "device,channel,day,runs,minutes,energy_Wh,peak_W\n"
            f"{PRO},2,2027-01-15,1,2,20.0,600.0\n"
            f"{PRO},2,2027-01-16,1,1,10.0,600.0\n"
        ))

    def test_given_twice(self) -> None:
        path = self.file("log.csv", csv_text([row(M), row(M + 1)]))
        status, out, err = run_main(self, path, path, "--format", "csv")
        self.assertEqual((status, len(out.splitlines())), (0, 2))
        self.assertEqual(err, (
            "shellylog-report: warning: 2 rows skipped: not later than the row before them "
            "of their device and channel (a file given twice, or files out of order)\n"))

    def test_usage_errors(self) -> None:
        path = self.file("log.csv", csv_text([row(M)]))
        for args, why in [
            (["--tz", "Mars/Olympus"], "--tz: unknown time zone 'Mars/Olympus'"),
            (["--gap", "-1"], "--gap must be 0 or more"),
            (["--since", "yesterday"], "--since/--until take a date"),
            (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
            (["--channel", "switch:2"],
             "--channel: 'switch:2' is not a channel as the CSV names it (2, pm1:0, em:0:a)"),
        ]:
            status, out, err = run_main(self, path, *args)
            self.assertEqual((status, out), (2, ""), args)
            self.assertIn(f"shellylog-report: error: {why}", err)
