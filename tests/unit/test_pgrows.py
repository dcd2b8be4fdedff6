"""
The database's table, statements and row tuples (L{shellylog.pgrows}): pure, no database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from shellylog import pgrows
from shellylog.channels import parse_channel_name
from shellylog.csvlog import format_rows
from shellylog.status import ChannelValues
from shellylog.tracker import Row

RET = ("ret_energy_total_Wh",)
_em_a = parse_channel_name("em:0:a")
assert _em_a is not None
EM_A: int = _em_a


class TableNameTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        for name in ("shellylog_minutes", "power", "_t1", "metering.minutes"):
            with self.subTest(name=name):
                self.assertEqual(pgrows.check_table_name(name), name)

    def test_refused(self) -> None:
        """Nothing that would need quoting rules, nor another case, nor a third part."""
        for name in ("", "1table", "Power", 'a"b', "a;drop table x", "a.b.c", "a b",
                     "x" * 64, "a.", ".a", "ü"):
            with self.subTest(name=name):
                self.assertRaises(ValueError, pgrows.check_table_name, name)

    def test_quoted(self) -> None:
        self.assertEqual(pgrows.quoted("metering.minutes"), '"metering"."minutes"')
        self.assertRaises(ValueError, pgrows.quoted, 'x"; drop')


class TableTests(SynchronousTestCase):
    def test_columns(self) -> None:
        """The CSV's columns after device and channel, in lower case (rule 7)."""
        self.assertEqual(pgrows.column_names(), (
            "minute", "device_id", "channel", "apower_w", "voltage_v", "current_a",
            "energy_total_wh"))

    def test_columns_with_returned_energy(self) -> None:
        """C{--columns ret_energy_total_Wh} adds its column at the end (rule 9)."""
        self.assertEqual(pgrows.column_names(RET)[-2:], ("energy_total_wh",
                                                         "ret_energy_total_wh"))

    def test_create_table(self) -> None:
        """The schema the README gives, exactly."""
        self.assertEqual(pgrows.create_table("shellylog_minutes", RET), (
            'CREATE TABLE IF NOT EXISTS "shellylog_minutes" (\n'
            "    minute timestamptz NOT NULL,\n"
            "    device_id text NOT NULL,\n"
            "    channel text NOT NULL,\n"
            "    apower_w double precision,\n"
            "    voltage_v double precision,\n"
            "    current_a double precision,\n"
            "    energy_total_wh double precision,\n"
            "    ret_energy_total_wh double precision,\n"
            "    PRIMARY KEY (device_id, channel, minute)\n"
            ")"))

    def test_writes_never_replace(self) -> None:
        """Both ways of inserting leave a row already there as it is (rule 4)."""
        self.assertTrue(pgrows.insert_from_staging("t").endswith("ON CONFLICT DO NOTHING"))
        self.assertTrue(pgrows.insert_rows("t").endswith("ON CONFLICT DO NOTHING"))
        self.assertEqual(pgrows.insert_rows("t").count("%s"), 7)
        self.assertEqual(pgrows.insert_rows("t", RET).count("%s"), 8)

    def test_copy_names_every_column(self) -> None:
        self.assertEqual(
            pgrows.copy_to_staging(RET),
            "COPY shellylog_incoming (minute, device_id, channel, apower_w, voltage_v, "
            "current_a, energy_total_wh, ret_energy_total_wh) FROM STDIN")

    def test_missing_columns(self) -> None:
        """A table made for other --columns: what it lacks, and the statement that mends it."""
        seven = pgrows.column_names()
        self.assertIsNone(pgrows.missing_columns("t", (), seven))
        self.assertIsNone(pgrows.missing_columns("t", (), (*seven, "ret_energy_total_wh")))
        self.assertEqual(
            pgrows.missing_columns("t", RET, seven),
            'table t has no column ret_energy_total_wh (--columns): ALTER TABLE "t" '
            "ADD COLUMN ret_energy_total_wh double precision; or choose another --db-table")

    def test_hypertable(self) -> None:
        self.assertIn("create_hypertable('\"t\"', 'minute'", pgrows.make_hypertable("t"))


class RowTupleTests(SynchronousTestCase):
    def test_values_as_the_csv(self) -> None:
        """
        The same values as the CSV's cells: the minute's start (an instant: the CSV writes
        it in its zone), the channel's cell, the numbers; an empty cell is None (NULL).
        """
        values = ChannelValues(apower=450, voltage=230.1, current=None, energy_total=1e2,
                               ret_energy_total=3.5)
        rows = [Row(29_000_000, "pump-1", 2, values),
                Row(29_000_000, "meter-1", EM_A, values)]
        (first, second) = pgrows.row_tuples(rows, RET)
        start = datetime(2025, 2, 19, 21, 20, tzinfo=timezone.utc)
        self.assertEqual(first, (start, "pump-1", "2", 450, 230.1, None, 100.0, 3.5))
        self.assertEqual(second[1:3], ("meter-1", "em:0:a"))
        # What the CSV file holds for the same rows, cell for cell.
        (line, _) = format_rows(rows, ZoneInfo("Europe/Berlin"), ret=True)
        cells = line.rstrip("\n").split(",")
        self.assertEqual(datetime.fromisoformat(cells[0]), start)
        self.assertEqual(cells[1:3], ["pump-1", "2"])
        self.assertEqual([float(c) if c else None for c in cells[3:]], list(first[3:]))

    def test_without_extra_column(self) -> None:
        values = ChannelValues(1, 2, 3, 4, 5)
        (only,) = pgrows.row_tuples([Row(1, "d", 0, values)])
        self.assertEqual(only[3:], (1, 2, 3, 4))


class ResumeTests(SynchronousTestCase):
    def test_newest_minutes_by_key(self) -> None:
        stamp = datetime(2025, 2, 19, 21, 20, 0, tzinfo=timezone.utc)
        found = [("pump-1", "2", stamp), ("meter-1", "em:0:a", stamp),
                 ("odd-1", "nonsense:7", stamp)]
        self.assertEqual(pgrows.resume_points(found), {
            ("pump-1", 2): 29_000_000, ("meter-1", EM_A): 29_000_000})

    def test_query_is_a_skip_scan(self) -> None:
        """The query walks the primary key from one (device, channel) to the next."""
        sql = pgrows.newest_minutes("t")
        self.assertIn("WITH RECURSIVE", sql)
        self.assertIn("(device_id, channel) > (keys.device_id, keys.channel)", sql)
        self.assertIn("ORDER BY minute DESC LIMIT 1", sql)
