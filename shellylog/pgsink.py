"""
The PostgreSQL sink: each minute's rows go into the table in one transaction, from a
thread of the sink's own, in order, one batch at a time; while the database cannot take
them (down, slow, refusing) they wait in order, as the CSV file's do, and are retried
with back-off.

psycopg (the C{postgres} extra) is imported only when a database is configured: the
module itself loads without it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from shellylog import pgrows
from shellylog.channels import ChannelKey
from shellylog.csvlog import DEFAULT_MAX_PENDING
from shellylog.sinks import within_pending
from shellylog.tracker import Row

if TYPE_CHECKING:
    import psycopg

log = Logger(namespace="shellylog.pgsink")

#: Seconds before the first retry after a failure; each failure doubles it, up to
#: L{MAX_RETRY_DELAY} (at most a minute between tries: the tick's own pace).
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 60.0

#: Seconds a connection attempt may take (libpq's C{connect_timeout}), unless the
#: connection string says otherwise.
CONNECT_TIMEOUT = 10

#: libpq's settings for a connection that stops answering (a host gone, a cable pulled):
#: TCP notices within about a minute and the write fails, instead of waiting for ever
#: (unless the connection string sets them itself).
DEAD_CONNECTION = {
    "keepalives": "1",
    "keepalives_idle": "20",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}

#: Seconds a batch may be under way before it counts as a problem (a database that is
#: slow, or a connection that hangs): the health check says so from then on.
SLOW_AFTER = 60.0

#: Longest reason shown for a failure (a server's message can be long).
REASON_LENGTH = 300

EXTRA_HINT = "pip install 'shellylog[postgres]'"


class DatabaseOptionError(ValueError):
    """C{--db} cannot be used: psycopg is missing, or the string does not parse."""


class TableColumnsError(Exception):
    """The table exists but lacks columns the rows have: the message says how to mend it."""


def connection_settings(dsn: str) -> dict[str, str]:
    """
    The settings of the libpq connection string or URI C{dsn}, parsed by psycopg.

    @raise DatabaseOptionError: if psycopg is not installed, or C{dsn} does not parse.
    """
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise DatabaseOptionError(
            f"--db needs psycopg, which is not installed: {EXTRA_HINT}") from None
    import psycopg

    try:
        settings = conninfo_to_dict(dsn)
    except psycopg.Error as e:
        raise DatabaseOptionError(f"--db: not a connection string or URI: {e}") from None
    return {key: str(value) for key, value in settings.items() if value is not None}


def describe(dsn: str) -> str:
    """The database C{dsn} names, for people: its settings without a password."""
    settings = connection_settings(dsn)
    # Where first, then who; in one order whatever the form (a URI or key=value) given.
    first = [key for key in ("host", "hostaddr", "port", "dbname", "user") if key in settings]
    keys = first + sorted(settings.keys() - set(first))
    shown = [f"{key}={settings[key]}" for key in keys if key != "password"]
    return " ".join(shown) or "(libpq defaults)"


def reason_of(error: BaseException) -> str:
    """The first line of what went wrong, short: for C{problem} and the log."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first[:REASON_LENGTH]


class Writer(Protocol):
    """The database's side of the sink, used from its one thread only."""

    def resume(self) -> dict[tuple[str, ChannelKey], int]: ...

    def write(self, batch: list[tuple[pgrows.Value, ...]]) -> None: ...

    def close(self) -> None: ...


class Thread(Protocol):
    """Where the writer runs (L{shellylog.threads.OwnThreads})."""

    def run(self, work: Callable[[], None]) -> Any: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@define
class PgWriter:
    """
    The connection and what it runs: connects when needed (and again after any failure),
    creates the table when it is missing (a hypertable where TimescaleDB is installed),
    and writes a batch in one transaction: COPY into the session's staging table, then
    INSERT … ON CONFLICT DO NOTHING from it.
    """

    dsn: str
    table: str = pgrows.DEFAULT_TABLE
    columns: tuple[str, ...] = ()
    password: str | None = None
    _connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._connection is not None and not self._connection.closed:
            return self._connection
        given = connection_settings(self.dsn)
        settings: dict[str, Any] = {
            key: value for key, value in DEAD_CONNECTION.items() if key not in given}
        if "connect_timeout" not in given:
            settings["connect_timeout"] = CONNECT_TIMEOUT
        if self.password is not None:
            settings["password"] = self.password
        connection = psycopg.connect(self.dsn, application_name="shellylog", **settings)
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _prepare(self, connection: psycopg.Connection[Any]) -> None:
        with connection.transaction():
            # One instance at a time, until this transaction ends (see pgrows.SETUP_LOCK).
            connection.execute(pgrows.SETUP_LOCK, (pgrows.setup_lock_key(self.table),))
            (exists,) = connection.execute(pgrows.TABLE_EXISTS, (self.table,)).fetchone() or (
                False,)
            if not exists:
                # Checked first: creating needs a right that writing does not.
                connection.execute(pgrows.create_table(self.table, self.columns))
                (timescale,) = connection.execute(pgrows.HAS_TIMESCALEDB).fetchone() or (False,)
                if timescale:
                    connection.execute(pgrows.make_hypertable(self.table))
                log.info("created the table {table}{kind}", event="db_table_created",
                         table=self.table, kind=" (a hypertable)" if timescale else "")
            else:
                found = connection.execute(pgrows.TABLE_COLUMNS, (self.table,)).fetchall()
                wrong = pgrows.missing_columns(self.table, self.columns,
                                               (name for (name,) in found))
                if wrong is not None:
                    raise TableColumnsError(wrong)
            connection.execute(pgrows.create_staging(self.table))

    def _failed(self) -> None:
        # Whatever failed, the next try starts from a fresh connection (and checks the
        # table again: it may have been dropped).
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None

    def resume(self) -> dict[tuple[str, ChannelKey], int]:
        """The newest minute per (device, channel) in the table."""
        try:
            connection = self._connect()
            with connection.transaction():
                found = connection.execute(pgrows.newest_minutes(self.table)).fetchall()
        except BaseException:
            self._failed()
            raise
        return pgrows.resume_points(found)

    def write(self, batch: list[tuple[pgrows.Value, ...]]) -> None:
        """C{batch} into the table, in one transaction; raises if it was not committed."""
        try:
            connection = self._connect()
            with connection.transaction():
                with connection.cursor() as cursor:
                    with cursor.copy(pgrows.copy_to_staging(self.columns)) as copy:
                        for values in batch:
                            copy.write_row(values)
                    cursor.execute(pgrows.insert_from_staging(self.table, self.columns))
        except BaseException:
            self._failed()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@define(eq=False)
class Batch:
    """
    One minute tick's rows; C{written} once its transaction committed. They are made
    into the statement's tuples (C{values}) in the writer's thread, not on the reactor.
    """

    rows: list[Row]
    carried: int
    values: list[tuple[pgrows.Value, ...]] | None = None
    written: bool = False


@define
class PgSink:
    """
    A L{shellylog.minutes.RowSink} writing to PostgreSQL.

    L{write} never waits for the database: the rows become a batch behind those still
    waiting (at most C{max_pending} rows wait; beyond that new rows are dropped and
    counted, as the CSV sink does), and the oldest batch goes to the writer's thread; one
    at a time, in order. A failure keeps the batch first in line; it is tried again after
    a delay that doubles up to a minute. C{problem} names the database and why rows wait.

    L{open} and L{close} wait (on the calling thread) for the database: at the start for
    where to resume, at a clean stop for the last rows (rule 6).
    """

    target: str
    writer: Writer
    thread: Thread
    clock: IReactorTime
    columns: tuple[str, ...] = ()
    max_pending: int = DEFAULT_MAX_PENDING
    rows_written: int = 0
    rows_written_carried: int = 0
    rows_dropped: int = 0
    write_errors: int = 0
    problem: str | None = None
    #: Whether the last contact with the database went well.
    up: bool = False
    _batches: collections.deque[Batch] = field(factory=collections.deque)
    _pending_rows: int = 0
    _in_flight: bool = False
    _retry: IDelayedCall | None = None
    # When the batch under way was handed to the thread, on the clock.
    _sent_at: float = 0.0
    _delay: float = FIRST_RETRY_DELAY
    _closed: bool = False

    @property
    def pending(self) -> int:
        """Rows waiting for the database (the batch being written among them)."""
        return self._pending_rows

    def open(self) -> dict[tuple[str, ChannelKey], int]:
        """
        Start the writer's thread and return the newest minute per (device, channel) in
        the table. A database that does not answer now is no reason not to start: the
        rows wait for it, and its primary key keeps any of them from being stored twice.
        """
        self.thread.start()
        try:
            points = self.writer.resume()
        except Exception as e:
            self._failed(e)
            return {}
        self.up = True
        log.info("database {target}: resuming {count} channels", event="db_opened",
                 target=self.target, count=len(points))
        return points

    def write(self, rows: list[Row]) -> None:
        """Queue C{rows} as one batch after those waiting, and send the oldest one."""
        if rows:
            rows, dropped = within_pending(rows, self._pending_rows, self.max_pending)
            if dropped:
                self.rows_dropped += dropped
                log.error(
                    "{count} rows lost: {pending} already wait for the database "
                    "(--max-pending)",
                    event="db_rows_dropped", count=dropped, pending=self._pending_rows,
                )
        if rows:
            carried = sum(1 for row in rows if row.carried)
            self._batches.append(Batch(rows, carried))
            self._pending_rows += len(rows)
        self._check_slow()
        self._send()

    def _check_slow(self) -> None:
        """A batch under way for L{SLOW_AFTER} seconds or more is a problem."""
        if not self._in_flight or self.problem is not None:
            return
        waited = self.clock.seconds() - self._sent_at
        if waited >= SLOW_AFTER:
            self.problem = (f"database {self.target}: no answer for {waited:.0f} s "
                            "(a write is under way)")
            log.error("{reason}; {count} rows wait", event="db_slow", reason=self.problem,
                      count=self._pending_rows)

    def _send(self) -> None:
        if self._closed or self._in_flight or self._retry is not None or not self._batches:
            return
        batch = self._batches[0]
        self._in_flight = True
        self._sent_at = self.clock.seconds()
        self.thread.run(partial(self._write_in_thread, batch)).addBoth(self._sent, batch)

    def _write_in_thread(self, batch: Batch) -> None:
        if batch.values is None:
            batch.values = pgrows.row_tuples(batch.rows, self.columns)
        self.writer.write(batch.values)
        batch.written = True

    def _sent(self, result: object, batch: Batch) -> None:
        self._in_flight = False
        if self._closed:
            return  # close() counted what was written
        if batch.written:
            self._count_written()
            if self.problem is not None:
                log.info("database {target} took the waiting rows", event="db_recovered",
                         target=self.target)
            self.problem = None
            self.up = True
            self._delay = FIRST_RETRY_DELAY
            self._send()
            return
        self._failed(result.value if isinstance(result, Failure) else result)
        self._retry = self.clock.callLater(self._delay, self._retry_now)
        self._delay = min(self._delay * 2, MAX_RETRY_DELAY)

    def _retry_now(self) -> None:
        self._retry = None
        self._send()

    def _count_written(self) -> None:
        while self._batches and self._batches[0].written:
            batch = self._batches.popleft()
            self._pending_rows -= len(batch.rows)
            self.rows_written += len(batch.rows)
            self.rows_written_carried += batch.carried

    def _failed(self, error: object) -> None:
        self.up = False
        self.write_errors += 1
        reason = f"database {self.target}: " + (
            reason_of(error) if isinstance(error, BaseException) else repr(error))
        if reason != self.problem:
            log.error("{reason}; {count} rows wait and are retried", event="db_failed",
                      reason=reason, count=self._pending_rows)
        self.problem = reason

    def close(self) -> None:
        """
        Write what still waits, on the writer's thread, and wait for it and for the
        thread's end (a clean stop writes its last minute: rule 6); then close the
        connection. Rows the database did not take stay counted in L{pending}.
        """
        if self._closed:
            return
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        errors: list[BaseException] = []
        self.thread.run(partial(self._drain, list(self._batches), errors))
        self.thread.stop()
        self._closed = True
        self._count_written()
        if errors:
            self._failed(errors[0])

    def _drain(self, batches: list[Batch], errors: list[BaseException]) -> None:
        try:
            for batch in batches:
                if not batch.written:
                    self._write_in_thread(batch)
        except Exception as e:
            errors.append(e)
        finally:
            self.writer.close()
