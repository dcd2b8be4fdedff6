"""
The CSV sink: row formatting and parsing (pure), and the append-only file the rows go to.

The file is written so that nothing is lost or written twice: a tick's rows go out in one
C{write} of whole lines (undone by truncation if it fails half-way), rows that could not be
written wait in memory in order and go out at the next tick, and at start-up the tail of
the file tells which minutes were already written.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from functools import partial
from operator import attrgetter
from typing import cast

import orjson
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from shellylog.channels import channel_name, parse_channel_name
from shellylog.rpc import is_safe_id
from shellylog.sinks import within_pending
from shellylog.status import ChannelValues, Number
from shellylog.tracker import MINUTE, Row

log = Logger(namespace="shellylog.csvlog")

HEADER = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh"
HEADER_LINE = (HEADER + "\n").encode("ascii")

#: The columns C{--columns} may append to the seed's seven (rule 9), in their order.
EXTRA_COLUMNS = ("ret_energy_total_Wh",)

#: The number columns of the seed's seven (rule 7), and the attribute of a row's
#: L{ChannelValues} each holds; then those of L{EXTRA_COLUMNS} (rule 9).
NUMBER_COLUMNS = ("apower_W", "voltage_V", "current_A", "energy_total_Wh")
VALUE_ATTRIBUTES = {
    "apower_W": "apower",
    "voltage_V": "voltage",
    "current_A": "current",
    "energy_total_Wh": "energy_total",
    "ret_energy_total_Wh": "ret_energy_total",
}


def number_columns(columns: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The number columns of a row, in order, with C{columns} of L{EXTRA_COLUMNS}."""
    return (*NUMBER_COLUMNS, *(c for c in EXTRA_COLUMNS if c in columns))


def values_getter(
    columns: tuple[str, ...] = (),
) -> Callable[[ChannelValues], tuple[Number | None, ...]]:
    """
    The numbers of a row's values in the order of L{number_columns}: what every sink
    writes of a row (the CSV's cells, the database's columns), from one definition.
    """
    get = attrgetter(*(VALUE_ATTRIBUTES[c] for c in number_columns(columns)))
    return cast("Callable[[ChannelValues], tuple[Number | None, ...]]", get)


def header(columns: tuple[str, ...] = ()) -> str:
    """The header of a file with the seed's seven columns and C{columns} of L{EXTRA_COLUMNS}."""
    return ",".join((HEADER, *columns))

#: How much of the file's end is read at start-up to learn the minutes already written.
RESUME_WINDOW = 8 * 1024 * 1024

#: (device id, channel key): whose newest written minute the file's end tells.
DeviceChannel = tuple[str, int]

#: Runs a function off the reactor thread and fires with its result on the reactor thread,
#: as C{partial(twisted.internet.threads.deferToThreadPool, reactor, reactor.getThreadPool())}.
InThread = Callable[[Callable[[], "OSError | None"]], "Deferred[OSError | None]"]

_carried = attrgetter("carried")
_values = values_getter()
_values_with_ret = values_getter(("ret_energy_total_Wh",))


class CsvFileError(Exception):
    """The CSV file is not one shellylog may append to; it is left untouched."""


def format_number(value: Number | None) -> str:
    """A number as Python writes it (C{repr}, never rounded); missing is an empty cell."""
    return "" if value is None else repr(value)


def minute_timestamp(minute: int, zone: tzinfo) -> str:
    """The start of C{minute} in C{zone}, ISO 8601 with seconds and UTC offset."""
    return datetime.fromtimestamp(minute * MINUTE, zone).isoformat()


def format_rows(rows: Iterable[Row], zone: tzinfo, ret: bool = False) -> list[str]:
    """
    The CSV lines of C{rows}, each C{\\n}-terminated; with C{ret}, with the
    C{ret_energy_total_Wh} column (rule 9).

    Device ids are safe ids (no comma, quote or line break), so no field needs quoting.
    """
    # Rows come in minute order: the timestamp is made once per minute, not per row.
    minute: int | None = None
    prefix = ""
    # A reading carried over several minutes is one object: format its cells once.
    cells: dict[int, str] = {}
    lines: list[str] = []
    append = lines.append
    for row in rows:
        if row.minute != minute:
            minute = row.minute
            prefix = minute_timestamp(minute, zone) + ","
        v = row.values
        text = cells.get(id(v))
        if text is None:
            a, u, i, e = v.apower, v.voltage, v.current, v.energy_total
            if a is None or u is None or i is None or e is None:
                text = (
                    f"{format_number(a)},{format_number(u)},"
                    f"{format_number(i)},{format_number(e)}\n"
                )
            else:
                text = f"{a!r},{u!r},{i!r},{e!r}\n"  # the usual case, without calls
            if ret:
                text = f"{text[:-1]},{format_number(v.ret_energy_total)}\n"
            cells[id(v)] = text
        append(f"{prefix}{row.device_id},{channel_name(row.channel)},{text}")
    return lines


def format_csv(rows: list[Row], zone: tzinfo, ret: bool = False) -> bytes:
    """
    The CSV text of C{rows}, encoded: the same bytes as the lines of L{format_rows}
    (with C{ret}, with the C{ret_energy_total_Wh} column).

    The numbers are written by orjson, in one call for all rows: a float's C{repr} in
    Python costs more than everything else a row needs. orjson writes every number as
    C{repr} does except those under 1e-4 (C{0.00001} or C{1e-7} for C{1e-05} and C{1e-07})
    and integers beyond 64 bits (which it refuses); rows with such numbers, which devices
    do not send, take L{format_rows}.
    """
    if not rows:
        return b""
    values = map(_values_with_ret if ret else _values, [row.values for row in rows])
    try:
        numbers = orjson.dumps(list(values))
    except orjson.JSONEncodeError:
        numbers = b"e-"
    if b"e-" in numbers or b"0.0000" in numbers:
        return "".join(format_rows(rows, zone, ret)).encode("utf-8")
    # [[a,u,i,e],[a,u,i,e]] -> one "a,u,i,e" per row; a missing number (null) is empty.
    cells = numbers[2:-2].replace(b"null", b"").split(b"],[")
    minute: int | None = None
    prefix = b""
    out: list[bytes] = []
    append = out.append
    # The channel cell of each key, encoded once per write (rule 8's names).
    names: dict[int, bytes] = {}
    for row, text in zip(rows, cells, strict=True):
        if row.minute != minute:
            minute = row.minute
            prefix = (minute_timestamp(minute, zone) + ",").encode("ascii")
        channel = row.channel
        name = names.get(channel)
        if name is None:
            name = names[channel] = channel_name(channel).encode("ascii")
        append(b"%s%s,%s,%s\n" % (prefix, row.device_id.encode("ascii"), name, text))
    return b"".join(out)


def parse_row_key(line: str, fields: int = 7) -> tuple[int, str, int] | None:
    """
    C{(minute, device_id, channel key)} of one of our CSV lines of C{fields} columns, or
    C{None} if it is not one.
    """
    parts = line.split(",")
    # The safety check alone: the file may hold ids that another --id-pattern admitted.
    if len(parts) != fields or not is_safe_id(parts[1], None):
        return None
    channel = parse_channel_name(parts[2])
    if channel is None:
        return None
    try:
        stamp = datetime.fromisoformat(parts[0])
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return int(stamp.timestamp()) // MINUTE, parts[1], channel


#: Bytes of a refused file's first line shown beyond the length of the expected header.
FIRST_LINE_SHOWN = 200


def check_header(path: str, columns: tuple[str, ...] = ()) -> None:
    """
    Refuse a file whose first line is not the header of the configured columns (or a
    torn start of it): rule 9.

    @raise CsvFileError: naming the file, its first line and the configured header.
    """
    expected = header(columns)
    expected_line = (expected + "\n").encode("ascii")
    try:
        with open(path, "rb") as f:
            # Enough to show a longer header whole (another --columns) when refusing.
            head = f.read(len(expected_line) + FIRST_LINE_SHOWN)
    except FileNotFoundError:
        return
    except OSError as e:
        raise CsvFileError(f"cannot read {path}: {e.strerror}") from None
    if not head or head.startswith(expected_line):
        return
    if b"\n" not in head and expected_line.startswith(head):
        return  # a header torn by a crash; open() completes it
    first = head.split(b"\n", 1)[0][: len(expected_line) + FIRST_LINE_SHOWN]
    raise CsvFileError(
        f"{path} does not start with the header of the configured columns: its first line "
        f"is {first!r}, expected {expected!r} (--columns). Refusing to append to it; "
        "choose another --csv file or the columns it has."
    )


def _last_minutes(tail: bytes, fields: int = 7) -> dict[DeviceChannel, int]:
    last: dict[DeviceChannel, int] = {}
    for raw in tail.split(b"\n"):
        key = parse_row_key(raw.decode("utf-8", "replace"), fields)
        if key is None:
            continue
        minute, device_id, channel = key
        if last.get((device_id, channel), -1) < minute:
            last[(device_id, channel)] = minute
    return last


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_all(fds: list[int]) -> OSError | None:
    """
    fsync and close each of C{fds} (duplicates owned by the caller); the first error.

    Runs in a thread: it touches nothing but its own descriptors.
    """
    error = None
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as e:
            error = error or e
        finally:
            os.close(fd)
    return error


#: Whether each write is fsynced, and how many rows are kept while the file cannot be
#: written, unless told otherwise (C{--fsync}, C{--max-pending}).
DEFAULT_FSYNC = True
DEFAULT_MAX_PENDING = 1_000_000


@define
class CsvSink:
    """
    The append-only CSV file.

    L{write} never raises for a file system error: the rows stay queued in order (at most
    C{max_pending}; beyond that new rows are dropped and counted) and every later
    L{write} tries again. C{problem} says why rows are waiting, for the health check.

    With C{fsync}, each write is followed by an fsync: on the calling thread when
    C{in_thread} is C{None}, else through C{in_thread}, so that the reactor does not wait
    for the disk (at most one fsync runs at a time; rows written meanwhile get the next
    one). L{close} fsyncs on the calling thread, so a clean stop loses nothing.
    """

    path: str
    zone: tzinfo
    #: The columns appended to the seed's seven (C{--columns}, rule 9).
    columns: tuple[str, ...] = ()
    fsync: bool = DEFAULT_FSYNC
    max_pending: int = DEFAULT_MAX_PENDING
    #: Where fsync runs; C{None} is on the calling thread.
    in_thread: InThread | None = None
    rows_written: int = 0
    #: Of C{rows_written}, those whose values were carried into their minute.
    rows_written_carried: int = 0
    rows_dropped: int = 0
    write_errors: int = 0
    problem: str | None = None
    # Encoded lines waiting for the file, one chunk per write, in order.
    _pending: list[bytes] = field(factory=list)
    _pending_rows: int = 0
    _pending_carried: int = 0
    _fd: int | None = None
    # Bytes of whole lines in the file; anything past it is a torn write to undo.
    _size: int = 0
    # Which opening of the file _fd is: a moved file's rows must be synced in that file.
    _opening: int = 0
    # Per opening, a duplicate of its descriptor, for files written since their last
    # fsync began. A duplicate stays valid when _fd is closed or reused meanwhile.
    _unsynced: dict[int, int] = field(factory=dict)
    _syncing: bool = False

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return self._pending_rows

    @property
    def _header_line(self) -> bytes:
        return (header(self.columns) + "\n").encode("ascii")

    def open(self) -> dict[DeviceChannel, int]:
        """
        Check and repair the file, open it for appending, and return the newest minute
        already written per (device, channel) as read from the file's end.

        @raise CsvFileError: if the file has another header; it is left untouched.
        """
        check_header(self.path, self.columns)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            start = max(0, size - RESUME_WINDOW)
            tail = os.pread(fd, size - start, start)
            cut = tail.rfind(b"\n") + 1
            if start + cut < size:
                # Power was lost mid-write: drop the torn last line.
                log.warn(
                    "{path} ended in a torn line; cut back to the last complete line, "
                    "dropping {count} bytes: {dropped!r}",
                    event="csv_torn_line",
                    path=self.path,
                    count=size - start - cut,
                    dropped=tail[cut : cut + 200],
                )
                os.ftruncate(fd, start + cut)
                size = start + cut
            if size == 0:
                _write_all(fd, self._header_line)
                size = len(self._header_line)
                if self.fsync:
                    os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, size
        self._opening += 1
        if start > 0:
            tail = tail[tail.find(b"\n") + 1 :]  # the window began inside a line
            cut = tail.rfind(b"\n") + 1
        return _last_minutes(tail[:cut], 7 + len(self.columns))

    def write(self, rows: list[Row]) -> None:
        """Queue C{rows} after any still waiting, then try to write them all."""
        if rows:
            rows, dropped = within_pending(rows, self._pending_rows, self.max_pending)
            if dropped:
                self.rows_dropped += dropped
                log.error(
                    "{count} rows lost: {pending} already wait for the disk (--max-pending)",
                    event="rows_dropped",
                    count=dropped,
                    pending=self._pending_rows,
                )
        if rows:
            # All rows of the tick as one piece of text, for one write.
            self._pending.append(
                format_csv(rows, self.zone, "ret_energy_total_Wh" in self.columns)
            )
            self._pending_rows += len(rows)
            self._pending_carried += sum(map(_carried, rows))
        if self._pending:
            self._flush()

    def _reopen_if_moved(self) -> None:
        # A file renamed or deleted under us (logrotate, a user) gets a fresh successor.
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            moved = True
        else:
            own = os.fstat(self._fd) if self._fd is not None else None
            moved = own is None or (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)
        if not moved:
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            log.info("{path} was moved away; starting a new file", event="csv_reopened",
                     path=self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._fd, self._size = fd, os.fstat(fd).st_size
        self._opening += 1

    def _flush(self) -> None:
        fd = None
        try:
            self._reopen_if_moved()
            fd = self._fd
            assert fd is not None
            size = os.fstat(fd).st_size
            if size > self._size:
                os.ftruncate(fd, self._size)  # undo a torn earlier attempt
            elif size < self._size:
                self._size = size  # truncated under us (logrotate's copytruncate)
            data = b"".join(self._pending)
            if self._size == 0:
                data = self._header_line + data
            try:
                _write_all(fd, data)
            except OSError:
                try:
                    os.ftruncate(fd, self._size)
                except OSError:
                    pass  # retried before the next write
                raise
        except OSError as e:
            self.write_errors += 1
            reason = f"cannot write {self.path}: {e.strerror or errno.errorcode.get(e.errno or 0)}"
            if self.problem != reason:
                log.error(
                    "{reason}; {count} rows wait and are retried every minute",
                    event="write_failed",
                    reason=reason,
                    count=self._pending_rows,
                )
            self.problem = reason
            return
        self._size += len(data)
        count = self._pending_rows
        self._pending = []
        self._pending_rows = 0
        self.rows_written += count
        self.rows_written_carried += self._pending_carried
        self._pending_carried = 0
        if self.problem is not None:
            log.info("the file took the {count} waiting rows", event="write_recovered",
                     count=count)
        self.problem = None
        if self.fsync:
            self._sync(fd)

    def _sync(self, fd: int) -> None:
        """fsync C{fd}, just written: now, or in a thread after the one that runs."""
        if self.in_thread is not None and self._opening not in self._unsynced:
            try:
                self._unsynced[self._opening] = os.dup(fd)
            except OSError:
                pass  # no descriptor to spare: fsync here instead
        if self._opening in self._unsynced:
            self._start_sync()
            return
        try:
            os.fsync(fd)
        except OSError as e:
            self._sync_failed(e)

    def _start_sync(self) -> None:
        if self._syncing or not self._unsynced or self.in_thread is None:
            return
        # Older files first: the dict keeps the order the files were written in.
        fds = list(self._unsynced.values())
        self._unsynced.clear()
        self._syncing = True
        self.in_thread(partial(_fsync_all, fds)).addBoth(self._synced)

    def _synced(self, result: OSError | Failure | None) -> None:
        self._syncing = False
        if isinstance(result, Failure):
            # Not an fsync error (those are returned): the thread pool itself failed.
            log.failure("fsync of {path} did not run", result, event="fsync_failed",
                        path=self.path)
            self.write_errors += 1
        elif result is not None:
            self._sync_failed(result)
        self._start_sync()  # the files written while this one ran

    def _sync_failed(self, e: OSError) -> None:
        # The rows are in the file already: retrying would write them twice.
        self.write_errors += 1
        log.error("fsync of {path} failed: {error}", event="fsync_failed",
                  path=self.path, error=e.strerror)

    def close(self) -> None:
        """
        Close the file (rows still waiting stay in memory). With C{fsync}, the files
        written since their last fsync began are synced first, on this thread: a stop
        cannot wait for a thread's fsync.
        """
        if (
            self._fd is not None
            and self.fsync
            and self.in_thread is not None
            and self._opening not in self._unsynced
        ):
            # Also when its fsync is under way: that one reports to a stopping reactor.
            try:
                self._unsynced[self._opening] = os.dup(self._fd)
            except OSError as e:
                self._sync_failed(e)
        fds = list(self._unsynced.values())
        self._unsynced.clear()
        if fds:
            error = _fsync_all(fds)
            if error is not None:
                self._sync_failed(error)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
