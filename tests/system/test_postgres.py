"""
Rows into a real PostgreSQL (a private cluster, L{tests.support.postgres}): the writer's
table and statements, the sink through an outage on the real reactor, and C{twistd
shellylog --db} with the simulator's fleet under libfaketime, its rows compared with the
CSV file written beside them. No mock of the database anywhere here.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections import Counter
from datetime import datetime
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, readBody

from shellylog.pgrows import row_tuples
from shellylog.pgsink import PgSink, PgWriter, TableColumnsError, describe
from shellylog.status import ChannelValues
from shellylog.threads import OneThread
from shellylog.tracker import Row
from tests.support.fleet import spawn_simulator
from tests.support.postgres import Cluster, cluster
from tests.support.processes import (
    RealReactorTestCase,
    csv_lines,
    spawn_twistd,
    start_service,
    wait_for,
)
from tests.support.tools import faketime_library

RET = ("ret_energy_total_Wh",)
FLEET = ["pro4pm", "pmmini", "pro3em", "proem50", "dualcover", "rgbwpm"]
SPEED = 10


def rows(minute: int, devices: int = 3, values: ChannelValues | None = None) -> list[Row]:
    values = values or ChannelValues(450, 230.1, None, 1e2, None)
    return [Row(minute, f"dev-{d}", channel, values) for d in range(devices)
            for channel in (0, 1)]


def table_rows(db: Cluster, table: str = "shellylog_minutes") -> list[tuple[Any, ...]]:
    """The table's rows in the CSV's order; none while there is no table yet."""
    if db.sql("SELECT to_regclass(%s)", table) == [(None,)]:
        # Made at the server's start, or (a first connection that timed out: libpq's
        # timeout runs ten times faster under faketime too) with its first rows.
        return []
    return db.sql(f"SELECT * FROM {table} ORDER BY minute, device_id, channel")


class WriterTests(SynchronousTestCase):
    """L{PgWriter} against a real server."""

    def setUp(self) -> None:
        self.db = cluster(self)

    def writer(self, columns: tuple[str, ...] = RET, table: str = "shellylog_minutes",
               dsn: str | None = None) -> PgWriter:
        writer = PgWriter(dsn or self.db.dsn, table=table, columns=columns)
        self.addCleanup(writer.close)
        return writer

    def test_table_made_with_the_columns(self) -> None:
        """The table is made when missing, with the C{--columns} set and its primary key."""
        self.assertEqual(self.writer().resume(), {})
        found = self.db.sql(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'shellylog_minutes' ORDER BY ordinal_position")
        self.assertEqual(found, [
            ("minute", "timestamp with time zone", "NO"),
            ("device_id", "text", "NO"),
            ("channel", "text", "NO"),
            ("apower_w", "double precision", "YES"),
            ("voltage_v", "double precision", "YES"),
            ("current_a", "double precision", "YES"),
            ("energy_total_wh", "double precision", "YES"),
            ("ret_energy_total_wh", "double precision", "YES"),
        ])
        (key,) = self.db.sql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'shellylog_minutes'::regclass AND contype = 'p'")
        self.assertEqual(key, ("PRIMARY KEY (device_id, channel, minute)",))

    def test_seven_columns(self) -> None:
        self.writer(columns=(), table="plain").resume()
        (count,) = self.db.sql("SELECT count(*) FROM information_schema.columns "
                               "WHERE table_name = 'plain'")
        self.assertEqual(count, (7,))

    def test_table_of_other_columns(self) -> None:
        """
        A table made for fewer columns: the writer says which are missing and how to add
        them (its rows wait); once added, they go in.
        """
        self.writer(columns=()).resume()
        writer = self.writer()
        with self.assertRaises(TableColumnsError) as caught:
            writer.write(row_tuples(rows(1), RET))
        self.assertIn("has no column ret_energy_total_wh (--columns)", str(caught.exception))
        self.db.sql("ALTER TABLE shellylog_minutes ADD COLUMN ret_energy_total_wh "
                    "double precision")
        writer.write(row_tuples(rows(1), RET))
        self.assertEqual(len(table_rows(self.db)), 6)

    def test_values_and_nulls(self) -> None:
        """The CSV's values; an empty cell is NULL, never 0."""
        writer = self.writer()
        writer.write(row_tuples(rows(29_000_000, 1), RET))
        first = table_rows(self.db)[0]
        self.assertEqual(first[0], datetime.fromisoformat("2025-02-19T21:20:00+00:00"))
        self.assertEqual(first[1:], ("dev-0", "0", 450.0, 230.1, None, 100.0, None))

    def test_never_twice(self) -> None:
        """A (device, channel, minute) already there keeps its row (ON CONFLICT DO NOTHING)."""
        writer = self.writer()
        writer.write(row_tuples(rows(29_000_000), RET))
        other = ChannelValues(1, 2, 3, 4, 5)
        writer.write(row_tuples(rows(29_000_000, values=other) + rows(29_000_001), RET))
        found = table_rows(self.db)
        self.assertEqual(len(found), 12)
        self.assertEqual({r[3] for r in found}, {450.0})

    def test_resume(self) -> None:
        """The newest minute of each (device, channel), read back by a new writer."""
        writer = self.writer()
        writer.write(row_tuples(rows(29_000_005), RET))
        writer.write(row_tuples(rows(29_000_001, 4), RET))
        points = self.writer().resume()
        self.assertEqual(len(points), 8)
        self.assertEqual(points[("dev-0", 1)], 29_000_005)
        self.assertEqual(points[("dev-3", 0)], 29_000_001)

    def test_table_dropped_meanwhile(self) -> None:
        """A table dropped under a running writer fails one write, then is made again."""
        writer = self.writer()
        writer.write(row_tuples(rows(1), RET))
        self.db.sql("DROP TABLE shellylog_minutes")
        with self.assertRaises(Exception) as caught:
            writer.write(row_tuples(rows(2), RET))
        self.assertIn("does not exist", str(caught.exception))
        writer.write(row_tuples(rows(2), RET))
        self.assertEqual(len(table_rows(self.db)), 6)

    def test_refused(self) -> None:
        """A database that refuses (no right to insert) raises, and takes rows once allowed."""
        self.writer().resume()
        self.db.sql("CREATE ROLE meter LOGIN")
        self.db.sql("GRANT SELECT ON shellylog_minutes TO meter")
        writer = self.writer(dsn=self.db.dsn.replace("user=shellylog", "user=meter"))
        with self.assertRaises(Exception) as caught:
            writer.write(row_tuples(rows(1), RET))
        self.assertIn("permission denied", str(caught.exception))
        self.db.sql("GRANT INSERT ON shellylog_minutes TO meter")
        writer.write(row_tuples(rows(1), RET))
        self.assertEqual(len(table_rows(self.db)), 6)

    def test_resume_uses_the_index(self) -> None:
        """The resume query is a walk over the primary key, not a scan of the table."""
        writer = self.writer()
        for minute in range(50):
            writer.write(row_tuples(rows(29_000_000 + minute, 20), RET))
        self.db.sql("ANALYZE shellylog_minutes")
        from shellylog.pgrows import newest_minutes

        plan = "\n".join(str(r[0]) for r in self.db.sql("EXPLAIN " +
                                                       newest_minutes("shellylog_minutes")))
        self.assertIn("Recursive Union", plan)
        self.assertNotIn("Seq Scan", plan)


class PasswordTests(RealReactorTestCase):
    """A server that asks for a password gets the one of C{--db-password-file}."""

    def test_password_file(self) -> Deferred[None]:
        return ensureDeferred(self._password_file())

    async def _password_file(self) -> None:
        db = cluster(self, password="pa55 word")
        writer = PgWriter(db.dsn)
        self.addCleanup(writer.close)
        with self.assertRaises(Exception) as caught:
            writer.resume()
        self.assertIn("password", str(caught.exception))
        path = os.path.join(self.folder, "db-password")
        with open(path, "w", encoding="utf-8") as f:
            f.write("pa55 word\n")
        await start_service(self, ["--csv", self.csv, "--db", db.dsn,
                                   "--db-password-file", path])
        # The service's start made the table: it connected with the file's password.
        self.assertEqual(db.sql("SELECT to_regclass('shellylog_minutes')::text"),
                         [("shellylog_minutes",)])


class SinkOutageTests(RealReactorTestCase):
    """L{PgSink} in its own thread on the real reactor, while the server stops and starts."""

    timeout = 120

    def test_outage(self) -> Deferred[None]:
        return ensureDeferred(self._outage())

    async def _outage(self) -> None:
        db = cluster(self)
        sink = PgSink(describe(db.dsn), PgWriter(db.dsn, columns=RET),
                      OneThread(reactor, "test-db"), reactor, columns=RET)
        self.addCleanup(sink.close)
        self.assertEqual(sink.open(), {})
        sink.write(rows(1))
        await wait_for(lambda: sink.rows_written == 6, 20, "the first minute")
        db.stop()
        for minute in (2, 3, 4):
            sink.write(rows(minute))
        await wait_for(lambda: sink.problem is not None, 20, "the outage noticed")
        assert sink.problem is not None
        self.assertIn(f"database host=127.0.0.1 port={db.port}", sink.problem)
        self.assertEqual(sink.pending, 18)
        self.assertFalse(sink.up)
        db.start()
        await wait_for(lambda: sink.pending == 0, 30, "the rows written")
        self.assertIsNone(sink.problem)
        self.assertEqual(sink.rows_written, 24)
        found = db.sql("SELECT minute, xmin::text::bigint FROM shellylog_minutes")
        self.assertEqual(len(found), 24)
        # One transaction per minute, in the minutes' order.
        order = sorted({(m, x) for m, x in found}, key=lambda p: p[1])
        self.assertEqual([m for m, _ in order], sorted(m for m, _ in order))
        self.assertEqual(len(order), 4)


def csv_rows(path: str) -> list[tuple[Any, ...]]:
    """The CSV file's rows as the database's: an instant, ids, numbers (None for empty)."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = list(csv.reader(io.StringIO(f.read())))[1:]
    return sorted((datetime.fromisoformat(r[0]), r[1], r[2],
                   *(float(c) if c else None for c in r[3:])) for r in lines)


class FleetTests(RealReactorTestCase):
    """
    C{twistd shellylog --db} with the simulator's fleet, both ten times faster under
    libfaketime, and the private cluster stopped and started under them.
    """

    timeout = 300

    def setUp(self) -> None:
        faketime_library()
        super().setUp()
        self.db = cluster(self)
        # libpq's timeout runs ten times faster under faketime too: 60 s are 6 s here.
        self.dsn = self.db.dsn + " connect_timeout=60"

    def server(self, start: str, csv_path: str, *args: str) -> Any:
        return spawn_twistd(
            self, self.folder,
            ["--csv", csv_path, "--db", self.dsn, "--channels", "*",
             "--columns", "ret_energy_total_Wh", "--fsync", "off", *args],
            faketime=f"@{start} x{SPEED}",
        )

    def db_rows(self) -> list[tuple[Any, ...]]:
        return table_rows(self.db)

    def minutes_in_db(self) -> int:
        return len({r[0] for r in self.db_rows()})

    async def health(self, port: int, path: str = "/") -> tuple[int, str]:
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{port}{path}".encode())
        return response.code, (await readBody(response)).decode()

    async def check_pages(self, port: int, down: bool) -> None:
        """/status and /metrics show the database's state."""
        _, text = await self.health(port, "/status")
        database = json.loads(text)["server"]["database"]
        self.assertEqual(database["target"], describe(self.dsn))
        self.assertEqual(database["up"], not down)
        self.assertEqual(database["problem"] is not None, down, database)
        if down:
            self.assertGreater(database["rows_pending"], 0, database)
        _, text = await self.health(port, "/metrics")
        metrics = dict(line.rsplit(" ", 1) for line in text.splitlines()
                       if line.startswith("shellylog_db_"))
        self.assertEqual(float(metrics["shellylog_db_up"]), 0.0 if down else 1.0)
        if down:
            self.assertGreater(float(metrics["shellylog_db_rows_pending"]), 0)
        self.assertGreater(float(metrics["shellylog_db_rows_written_total"]), 0)

    def test_outage_and_clean_stop(self) -> Deferred[None]:
        return ensureDeferred(self._outage_and_clean_stop())

    async def _outage_and_clean_stop(self) -> None:
        """
        (a) PostgreSQL stops for three minutes and starts again: every row arrives once,
        in order, and equals the CSV file's; GET / says 503 meanwhile, naming the database.
        (c) A clean stop: every measured minute is in the table, as in the CSV file.
        """
        start = "2026-06-01 11:57:00"
        server = self.server(start, self.csv)
        port = await server.listening
        simulator = spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws", FLEET, 3,
                                    f"@{start} x{SPEED}")
        await wait_for(lambda: self.minutes_in_db() >= 2, 60, "two minutes in the table")
        self.db.stop()
        await wait_for(lambda: "rows wait and are retried" in server.text(), 60,
                       "the outage noticed")
        # Three minutes of the server's clock without the database.
        stopped_at = len(csv_lines(self.csv))
        await wait_for(lambda: len({line[:16] for line in csv_lines(self.csv)[stopped_at:]})
                       >= 3, 60, "three minutes written to the CSV alone")
        code, body = await self.health(port)
        self.assertEqual(code, 503, body)
        self.assertIn(f"error: database host=127.0.0.1 port={self.db.port}", body)
        await self.check_pages(port, down=True)
        self.db.start()
        await wait_for(lambda: len(self.db_rows()) >= len(csv_lines(self.csv)) - 1, 90,
                       "the waiting rows written")
        code, body = await self.health(port)
        self.assertEqual(code, 200, body)
        await self.check_pages(port, down=False)
        await simulator.stop()
        await server.terminate()
        found = self.db_rows()
        self.assertEqual(found, csv_rows(self.csv))
        self.assertGreaterEqual(len({r[0] for r in found}), 6)
        keys = Counter(r[:3] for r in found)
        self.assertEqual([k for k, n in keys.items() if n > 1], [])
        # In order: per channel, a later minute never committed before an earlier one.
        order = self.db.sql("SELECT device_id, channel, minute, xmin::text::bigint "
                            "FROM shellylog_minutes ORDER BY device_id, channel, minute")
        for (d1, c1, _, x1), (d2, c2, _, x2) in itertools.pairwise(order):
            if (d1, c1) == (d2, c2):
                self.assertLessEqual(x1, x2)
        self.assertIn("took the waiting rows", server.text())

    def test_database_only(self) -> Deferred[None]:
        return ensureDeferred(self._database_only())

    async def _database_only(self) -> None:
        """C{--csv none}: the rows go to the table, and no file is written anywhere."""
        start = "2026-06-01 11:57:00"
        server = spawn_twistd(self, self.folder, ["--csv", "none", "--db", self.dsn],
                              faketime=f"@{start} x{SPEED}")
        port = await server.listening
        simulator = spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws",
                                    ["pro4pm", "pmmini"], 3, f"@{start} x{SPEED}")
        await wait_for(lambda: self.minutes_in_db() >= 2, 60, "two minutes in the table")
        _, text = await self.health(port, "/status")
        server_part = json.loads(text)["server"]
        self.assertIsNone(server_part["options"]["csv"])
        self.assertEqual(server_part["rows_written"], server_part["database"]["rows_written"])
        code, _ = await self.health(port, "/api/day?device=x&channel=0&date=2026-06-01")
        self.assertEqual(code, 404)
        await simulator.stop()
        await server.terminate()
        self.assertEqual(os.listdir(self.folder), [])
        self.assertEqual({r[3] is not None for r in self.db_rows()}, {True})

    def test_restart_after_the_clock_stepped_back(self) -> Deferred[None]:
        return ensureDeferred(self._stepped_back())

    async def _stepped_back(self) -> None:
        """
        A clean stop puts every measured minute in the table (the one in progress too,
        rule 6); a restart with the clock two minutes back, with a new CSV file (nothing
        to resume from but the database), writes no minute the table already has.
        """
        first_csv = self.csv
        server = self.server("2026-06-01 11:57:00", first_csv)
        port = await server.listening
        url = f"ws://127.0.0.1:{port}/ws"
        simulator = spawn_simulator(self, self.folder, url, FLEET, 3,
                                    f"@2026-06-01 11:57:00 x{SPEED}")
        await wait_for(lambda: self.minutes_in_db() >= 3, 60, "three minutes in the table")
        await simulator.stop()
        await server.terminate()
        before = self.db_rows()
        self.assertEqual(before, csv_rows(first_csv))
        newest: dict[tuple[str, str], datetime] = {}
        for r in before:
            newest[r[1:3]] = max(newest.get(r[1:3], r[0]), r[0])

        second_csv = self.folder + "/second.csv"
        server = self.server("2026-06-01 11:58:00", second_csv)
        port = await server.listening
        simulator = spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws", FLEET, 3,
                                    "@2026-06-01 11:58:00 x10")
        await wait_for(lambda: len(csv_lines(second_csv)) > 1 and len(
            {line[:16] for line in csv_lines(second_csv)[1:]}) >= 3, 90,
            "three minutes after the restart")
        await simulator.stop()
        await server.terminate()
        again = csv_rows(second_csv)
        self.assertTrue(again)
        for r in again:
            if r[1:3] in newest:
                self.assertGreater(r[0], newest[r[1:3]], r)
        after = self.db_rows()
        self.assertEqual(after, sorted(before + again))
        self.assertIn("resuming", server.text())
