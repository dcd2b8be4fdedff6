"""
Several instances starting at once on one table, in a private PostgreSQL cluster: the
table's check and creation are done one instance at a time (an advisory lock), since
C{CREATE TABLE IF NOT EXISTS} run by two sessions at once can fail on PostgreSQL's own
catalog (C{pg_type_typname_nsp_index}): the error the HAProxy tests first met.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from shellylog import pgrows
from shellylog.pgsink import PgWriter
from tests.support.postgres import cluster

#: Instances that start at once, and how many times.
STARTS = 8
ROUNDS = 5


class SetupLockKeyTests(SynchronousTestCase):
    """L{pgrows.setup_lock_key}: pure."""

    def test_key(self) -> None:
        """One key per table: the same in every process, another for another table."""
        key = pgrows.setup_lock_key("shellylog_minutes")
        self.assertEqual(key, pgrows.setup_lock_key("shellylog_minutes"))
        self.assertNotEqual(key, pgrows.setup_lock_key("other.shellylog_minutes"))
        # Fixed (not Python's per-process hash), and a bigint as pg_advisory_xact_lock takes.
        self.assertEqual(key, 3934539432352771194)
        self.assertTrue(-(2**63) <= key < 2**63)


class SetupLockTests(TestCase):
    """L{PgWriter}'s first connection takes the table's setup lock."""

    timeout = 120

    def setUp(self) -> None:
        self.cluster = cluster(self)

    def test_waits_for_the_lock(self) -> Deferred[None]:
        """While another session holds the table's lock, the writer neither checks nor makes it."""
        return ensureDeferred(self._waits())

    async def _waits(self) -> None:
        import psycopg

        table = "waiting_minutes"
        holder = psycopg.connect(self.cluster.dsn)
        self.addCleanup(holder.close)
        holder.execute(pgrows.SETUP_LOCK, (pgrows.setup_lock_key(table),))
        writer = PgWriter(self.cluster.dsn, table=table)
        self.addCleanup(writer.close)
        resumed: Deferred[Any] = deferToThread(writer.resume)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertFalse(resumed.called)
        self.assertEqual(self.cluster.sql("SELECT to_regclass(%s) IS NULL", table), [(True,)])
        holder.commit()  # the lock goes with the transaction
        self.assertEqual(await resumed, {})
        self.assertEqual(self.cluster.sql("SELECT to_regclass(%s) IS NULL", table), [(False,)])

    def test_starting_at_once(self) -> Deferred[None]:
        """
        L{STARTS} writers reach a table that does not exist yet at the same moment, over
        L{ROUNDS} tables: every one resumes (from nothing), none fails.
        """
        return ensureDeferred(self._at_once())

    async def _at_once(self) -> None:
        for round in range(ROUNDS):
            table = f"fleet_{round}"
            writers = [PgWriter(self.cluster.dsn, table=table) for _ in range(STARTS)]
            for writer in writers:
                self.addCleanup(writer.close)
            errors = await deferToThread(start_at_once, writers)
            self.assertEqual([str(e) for e in errors], [], table)


def start_at_once(writers: list[PgWriter]) -> list[BaseException]:
    """Each writer's first C{resume}, all in threads of their own let go at once: the errors."""
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def start(writer: PgWriter) -> None:
        barrier.wait()
        try:
            writer.resume()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
