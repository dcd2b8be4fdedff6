"""
The PostgreSQL sink's queue, back-off and stop (L{shellylog.pgsink.PgSink}) on a
L{Clock}, with a fake writer at the thread boundary: what the database does is tested
against a real server in C{tests/system/test_postgres.py}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog import pgrows
from shellylog.channels import ChannelKey
from shellylog.pgsink import MAX_RETRY_DELAY, DatabaseOptionError, PgSink, describe, reason_of
from shellylog.sinks import FanOut
from shellylog.status import ChannelValues
from shellylog.tracker import Row
from tests.support.logs import capture_log

TARGET = "host=db.example port=5432"


class FakeWriter:
    """Records each batch it is given; fails while C{error} is set."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[pgrows.Value, ...]]] = []
        self.error: Exception | None = None
        self.points: dict[tuple[str, ChannelKey], int] = {}
        self.closed = False

    def resume(self) -> dict[tuple[str, ChannelKey], int]:
        if self.error is not None:
            raise self.error
        return self.points

    def write(self, batch: list[tuple[pgrows.Value, ...]]) -> None:
        if self.error is not None:
            raise self.error
        self.batches.append(batch)

    def close(self) -> None:
        self.closed = True


class FakeThread:
    """Work waits until the test runs it (L{step}); L{stop} runs what is left, as a join."""

    def __init__(self) -> None:
        self.work: list[tuple[Callable[[], None], Deferred[None]]] = []
        self.started = self.stopped = False

    def run(self, work: Callable[[], None]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.work.append((work, d))
        return d

    def step(self) -> None:
        work, d = self.work.pop(0)
        maybeDeferred(work).chainDeferred(d)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        # A join: the work runs, but its result reaches the reactor only later.
        while self.work:
            work, _ = self.work.pop(0)
            try:
                work()
            except Exception:
                pass
        self.stopped = True


def rows(minute: int, count: int = 2, carried: bool = False) -> list[Row]:
    return [Row(minute, f"dev-{n}", 0, ChannelValues(100.0 + n, 230, None, 1, None),
                carried=carried) for n in range(count)]


def minutes_of(batch: list[tuple[Any, ...]]) -> set[int]:
    return {int(values[0].timestamp()) // 60 for values in batch}


class Fixture:
    def __init__(self, max_pending: int = 100) -> None:
        self.clock = Clock()
        self.writer = FakeWriter()
        self.thread = FakeThread()
        self.sink = PgSink(TARGET, self.writer, self.thread, self.clock,
                           max_pending=max_pending)


class QueueTests(SynchronousTestCase):
    def test_one_batch_at_a_time_in_order(self) -> None:
        """A minute's rows are one batch; the next goes only once the first committed."""
        f = Fixture()
        f.sink.open()
        f.sink.write(rows(1))
        f.sink.write(rows(2, 3))
        self.assertEqual(len(f.thread.work), 1)
        self.assertEqual(f.sink.pending, 5)
        f.thread.step()
        self.assertEqual(f.sink.rows_written, 2)
        self.assertEqual(len(f.thread.work), 1)
        f.thread.step()
        self.assertEqual([minutes_of(b) for b in f.writer.batches], [{1}, {2}])
        self.assertEqual((f.sink.pending, f.sink.rows_written), (0, 5))
        self.assertTrue(f.sink.up)

    def test_no_rows_no_batch(self) -> None:
        f = Fixture()
        f.sink.write([])
        self.assertEqual(f.thread.work, [])

    def test_tuples_made_in_the_thread(self) -> None:
        """The reactor only queues the rows: they become tuples in the writer's thread."""
        f = Fixture()
        made: list[list[Row]] = []

        def row_tuples(rows: list[Row], columns: tuple[str, ...] = ()) -> list[Any]:
            made.append(rows)
            return []

        self.patch(pgrows, "row_tuples", row_tuples)
        f.sink.write(rows(1))
        self.assertEqual(made, [])
        f.thread.step()
        self.assertEqual(len(made), 1)

    def test_carried_counted(self) -> None:
        f = Fixture()
        f.sink.write(rows(1, 3, carried=True))
        f.thread.step()
        self.assertEqual(f.sink.rows_written_carried, 3)

    def test_max_pending(self) -> None:
        """Beyond C{--max-pending} waiting rows, new rows are dropped and counted (as the CSV)."""
        f = Fixture(max_pending=5)
        f.writer.error = OSError("down")
        events = capture_log(self)
        f.sink.write(rows(1, 3))
        f.sink.write(rows(2, 3))
        f.sink.write(rows(3, 3))
        self.assertEqual((f.sink.pending, f.sink.rows_dropped), (5, 4))
        self.assertIn("db_rows_dropped", [e.get("event") for e in events])


class OutageTests(SynchronousTestCase):
    def test_rows_wait_and_go_in_order(self) -> None:
        """
        A failure keeps the batch first in line; the problem names the database and the
        reason; tries follow with a delay that doubles up to a minute; once it answers,
        every batch goes, in order, and the problem is gone.
        """
        f = Fixture()
        f.writer.error = OSError("connection refused")
        f.sink.write(rows(1))
        f.thread.step()
        self.assertEqual(f.sink.problem, f"database {TARGET}: connection refused")
        self.assertFalse(f.sink.up)
        delays = []
        for minute in range(2, 12):
            f.sink.write(rows(minute))  # the tick does not try again before the delay
            self.assertEqual(f.thread.work, [])
            (retry,) = f.clock.getDelayedCalls()
            delays.append(retry.getTime() - f.clock.seconds())
            f.clock.advance(delays[-1])
            f.thread.step()
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60])
        self.assertLessEqual(max(delays), MAX_RETRY_DELAY)
        self.assertEqual(f.sink.pending, 22)
        f.writer.error = None
        f.clock.advance(60)
        while f.thread.work:
            f.thread.step()
        self.assertEqual([min(minutes_of(b)) for b in f.writer.batches], list(range(1, 12)))
        self.assertEqual((f.sink.pending, f.sink.rows_written, f.sink.problem), (0, 22, None))
        self.assertEqual(f.sink.write_errors, 11)
        # The delay starts again from the first after a success.
        f.writer.error = OSError("again")
        f.sink.write(rows(12))
        f.thread.step()
        (retry,) = f.clock.getDelayedCalls()
        self.assertEqual(retry.getTime() - f.clock.seconds(), 1)

    def test_slow(self) -> None:
        """
        A batch under way for a minute or more is a problem, seen at the next tick's
        write; its success ends it.
        """
        f = Fixture()
        events = capture_log(self)
        f.sink.write(rows(1))
        f.clock.advance(59)
        f.sink.write(rows(2))
        self.assertIsNone(f.sink.problem)
        f.clock.advance(1)
        f.sink.write(rows(3))
        self.assertEqual(f.sink.problem, f"database {TARGET}: no answer for 60 s "
                                         "(a write is under way)")
        self.assertEqual([e["event"] for e in events if e.get("event") == "db_slow"],
                         ["db_slow"])
        f.sink.write(rows(4))  # said once
        self.assertEqual(len([e for e in events if e.get("event") == "db_slow"]), 1)
        f.thread.step()
        self.assertIsNone(f.sink.problem)
        self.assertEqual(f.sink.pending, 6)

    def test_open_while_down(self) -> None:
        """The service starts anyway: nothing to resume from, the problem shown."""
        f = Fixture()
        f.writer.error = OSError("no route to host")
        self.assertEqual(f.sink.open(), {})
        self.assertTrue(f.thread.started)
        self.assertEqual(f.sink.problem, f"database {TARGET}: no route to host")

    def test_open_resumes(self) -> None:
        f = Fixture()
        f.writer.points = {("dev-1", 0): 42}
        self.assertEqual(f.sink.open(), {("dev-1", 0): 42})
        self.assertTrue(f.sink.up)


class CloseTests(SynchronousTestCase):
    def test_close_writes_what_waits(self) -> None:
        """A clean stop writes the batch in flight and those behind it, then closes."""
        f = Fixture()
        f.sink.write(rows(1))
        f.sink.write(rows(2))
        f.sink.close()
        self.assertEqual([minutes_of(b) for b in f.writer.batches], [{1}, {2}])
        self.assertTrue(f.thread.stopped)
        self.assertTrue(f.writer.closed)
        self.assertEqual((f.sink.pending, f.sink.rows_written), (0, 4))

    def test_close_while_waiting_for_a_retry(self) -> None:
        f = Fixture()
        f.writer.error = OSError("down")
        f.sink.write(rows(1))
        f.thread.step()
        f.writer.error = None
        f.sink.close()
        self.assertEqual(f.clock.getDelayedCalls(), [])
        self.assertEqual((f.sink.pending, f.sink.rows_written), (0, 2))

    def test_close_while_still_down(self) -> None:
        """What the database does not take stays pending (the tick reports it lost)."""
        f = Fixture()
        f.writer.error = OSError("down")
        f.sink.write(rows(1))
        f.sink.close()
        self.assertEqual(f.sink.pending, 2)
        self.assertTrue(f.writer.closed)


class FanOutTests(SynchronousTestCase):
    def test_resume_from_the_newest(self) -> None:
        """Where either sink has a minute, it is not made again (rule 4)."""
        a, b = Fixture(), Fixture()
        a.writer.points = {("d", 0): 5, ("d", 1): 9}
        b.writer.points = {("d", 0): 7, ("e", 0): 1}
        fan = FanOut([a.sink, b.sink])
        self.assertEqual(fan.open(), {("d", 0): 7, ("d", 1): 9, ("e", 0): 1})

    def test_problem_of_either(self) -> None:
        """A batch under way is no problem; a failure of either sink is."""
        a, b = Fixture(), Fixture()
        fan = FanOut([a.sink, b.sink])
        fan.write(rows(1))
        self.assertEqual((fan.pending, fan.problem), (4, None))
        b.writer.error = OSError("down")
        capture_log(self)
        b.thread.step()
        self.assertEqual(fan.problem, f"database {TARGET}: down")

    def test_rows_to_each(self) -> None:
        a, b = Fixture(), Fixture()
        b.writer.error = OSError("down")
        fan = FanOut([a.sink, b.sink])
        fan.write(rows(1))
        a.thread.step()
        b.thread.step()
        self.assertEqual((a.sink.rows_written, b.sink.pending, fan.pending), (2, 2, 2))
        fan.close()
        self.assertTrue(a.thread.stopped and b.thread.stopped)


class TargetTests(SynchronousTestCase):
    def test_password_never_described(self) -> None:
        for dsn in ("postgresql://logger:s3cret@db.example:5433/power",
                    "host=db.example user=logger password=s3cret dbname=power"):
            with self.subTest(dsn=dsn):
                shown = describe(dsn)
                self.assertNotIn("s3cret", shown)
                self.assertIn("host=db.example", shown)
                self.assertIn("dbname=power", shown)

    def test_not_a_connection_string(self) -> None:
        self.assertRaises(DatabaseOptionError, describe, "host=x password")

    def test_reason_first_line(self) -> None:
        self.assertEqual(reason_of(Exception("refused\nDETAIL: more")), "refused")
        self.assertEqual(reason_of(Exception("")), "Exception")
