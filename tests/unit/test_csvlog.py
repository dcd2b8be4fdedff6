"""
Row format (rule 7) and the CSV file.
"""

from __future__ import annotations

import errno
import math
import os
import random
import struct
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from shellylog import csvlog
from shellylog.channels import parse_channel_name
from shellylog.csvlog import (
    HEADER,
    CsvFileError,
    CsvSink,
    check_header,
    format_csv,
    format_number,
    format_rows,
    minute_timestamp,
    parse_row_key,
)
from shellylog.rpc import Notification, decode_frame, status_params
from shellylog.status import ChannelValues, DeviceStatus
from shellylog.tracker import ChannelTracker, Row, minute_of
from tests.support.logs import capture_log

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


class FormatTests(SynchronousTestCase):
    def test_header(self) -> None:
        self.assertEqual(
            HEADER, "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh"
        )

    def test_numbers_as_python_writes_them(self) -> None:
        """Numbers come out as repr of the parsed JSON number, never rounded."""
        frame = decode_frame(
            b'{"src":"d","method":"NotifyStatus","params":{"switch:0":'
            b'{"apower":450,"voltage":12.30,"current":1e2,"aenergy":{"total":0.1234567891234}}}}'
        )
        assert isinstance(frame, Notification)
        status = DeviceStatus()
        status.merge(status_params(frame.params))
        v = status.channel_values([0])[0]
        cells = [format_number(x) for x in (v.apower, v.voltage, v.current, v.energy_total)]
        self.assertEqual(cells, ["450", "12.3", "100.0", "0.1234567891234"])

    def test_missing_is_empty_never_zero(self) -> None:
        self.assertEqual(format_number(None), "")
        self.assertEqual(format_number(0), "0")
        row = Row(0, "dev-1", 3, ChannelValues(apower=12.5, voltage=None, current=None,
                                               energy_total=None))
        self.assertEqual(format_rows([row], UTC), ["1970-01-01T00:00:00+00:00,dev-1,3,12.5,,,\n"])

    def test_utc_timestamp(self) -> None:
        m = minute_of(1764403215.4)
        self.assertEqual(minute_timestamp(m, UTC), "2025-11-29T08:00:00+00:00")

    def test_spring_forward_in_berlin(self) -> None:
        """Across the March change the offset moves from +01:00 to +02:00."""
        m = minute_of(1774745940)  # 2026-03-29T00:59:00Z
        self.assertEqual(minute_timestamp(m, BERLIN), "2026-03-29T01:59:00+01:00")
        self.assertEqual(minute_timestamp(m + 1, BERLIN), "2026-03-29T03:00:00+02:00")

    def test_fall_back_in_berlin(self) -> None:
        """The repeated local hour in October keeps distinct, ordered timestamps."""
        m = minute_of(1792889940)  # 2026-10-25T00:59:00Z
        self.assertEqual(minute_timestamp(m, BERLIN), "2026-10-25T02:59:00+02:00")
        self.assertEqual(minute_timestamp(m + 1, BERLIN), "2026-10-25T02:00:00+01:00")

    def test_tracker_across_dst_writes_every_minute(self) -> None:
        """Minutes are UTC minutes: the missing local hour leaves no gap in the log."""
        clock = Clock()
        clock.advance(1774745940 - 30)  # 2026-03-29T00:58:30Z
        tracker = ChannelTracker(clock=clock, threshold=5, max_carry=10)
        tracker.readings("pump-1", {2: ChannelValues(450, 230.1, 1.9, 100.0)})
        clock.advance(150)
        text = "".join(format_rows(tracker.close_completed(), BERLIN))
        self.assertEqual(
            text,
            "2026-03-29T01:58:00+01:00,pump-1,2,450,230.1,1.9,100.0\n"
            "2026-03-29T01:59:00+01:00,pump-1,2,450,230.1,1.9,100.0\n"
            "2026-03-29T03:00:00+02:00,pump-1,2,450,230.1,1.9,100.0\n",
        )


class FormatCsvTests(SynchronousTestCase):
    """format_csv (numbers by orjson) writes the very bytes of format_rows."""

    def assert_same(self, rows: list[Row], ret: bool = False) -> None:
        self.assertEqual(format_csv(rows, BERLIN, ret),
                         "".join(format_rows(rows, BERLIN, ret)).encode("utf-8"))

    def test_random_rows(self) -> None:
        rng = random.Random(5)

        def number() -> float | int | None:
            kind = rng.random()
            if kind < 0.1:
                return None
            if kind < 0.2:
                return rng.randint(-10**6, 10**6)
            if kind < 0.6:
                return round(rng.uniform(0, 5000), rng.randint(0, 3))
            value = struct.unpack("d", rng.randbytes(8))[0]
            return value if math.isfinite(value) else 0.0

        shared = ChannelValues(1.5, 2.5, 3.5, 4.5)  # one reading carried into several rows
        rows = []
        for n in range(3000):
            values = shared if n % 7 == 0 else ChannelValues(number(), number(), number(),
                                                             number())
            rows.append(Row(29_000_000 + n // 500, f"null-{n % 37}", n % 4, values))
        # Chunks: most hold no number under 1e-4, some do (and take format_rows).
        for start in range(0, len(rows), 150):
            self.assert_same(rows[start : start + 150])
        self.assert_same(rows)

    def test_numbers_orjson_writes_otherwise(self) -> None:
        for value in [1e-05, 9.9e-05, 4.6e-07, -0.0, 0.0001, 1e16, 2e20, 10**20, -(10**30),
                      0, 12.30, 1e2]:
            self.assert_same([Row(29_000_000, "dev-1", 0, ChannelValues(value, 1, 2, 3))])

    def test_no_rows(self) -> None:
        self.assertEqual(format_csv([], UTC), b"")

    def test_named_channels_and_returned_energy(self) -> None:
        """Rule 8's channel names and rule 9's column, by both ways of writing rows."""
        rng = random.Random(9)
        keys = [key for name in ("0", "12", "pm1:0", "em:0", "em:0:c", "em1:2", "rgbw:1")
                if (key := parse_channel_name(name)) is not None]
        self.assertEqual(len(keys), 7)
        rows = []
        for n in range(600):
            ret = rng.choice([None, 0, 12.25, 1e-05, -3.5])
            key = keys[n % len(keys)]
            rows.append(Row(29_000_000 + n // 100, f"dev-{n % 5}", key,
                            ChannelValues(rng.choice([-640.0, 5.5, 1e-05]), 230.1, None, 1.5,
                                          ret)))
        for start in range(0, len(rows), 50):
            self.assert_same(rows[start : start + 50], ret=True)
            self.assert_same(rows[start : start + 50], ret=False)
        self.assertEqual(
            format_rows([Row(0, "dev-1", keys[4], ChannelValues(-1, 2, 3, 4, 5))], UTC, True),
            ["1970-01-01T00:00:00+00:00,dev-1,em:0:c,-1,2,3,4,5\n"])


class SinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        nine = datetime.fromisoformat("2025-11-29T09:00:00+00:00").timestamp()
        self.row = Row(minute_of(nine), "dev-1", 0, ChannelValues(450, 230.1, 1.9, 100.0))

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_header_on_new_file(self) -> None:
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.write([self.row])
        sink.close()
        self.assertEqual(
            self.read(),
            (HEADER + "\n2025-11-29T09:00:00+00:00,dev-1,0,450,230.1,1.9,100.0\n").encode(),
        )
        self.assertEqual(sink.rows_written, 1)

    def test_header_on_empty_file(self) -> None:
        open(self.path, "w").close()
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.close()
        self.assertEqual(self.read(), (HEADER + "\n").encode())

    def test_append_keeps_existing_rows(self) -> None:
        with open(self.path, "w") as f:
            f.write(HEADER + "\nold,row\n")
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.write([self.row])
        sink.close()
        self.assertEqual(
            self.read().decode().splitlines(),
            [HEADER, "old,row", "2025-11-29T09:00:00+00:00,dev-1,0,450,230.1,1.9,100.0"],
        )

    def test_write_is_flushed(self) -> None:
        """Each write reaches the file before close: a crash after it loses nothing."""
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.write([self.row])
        self.assertEqual(self.read().count(b"\n"), 2)
        sink.close()

    def test_unix_line_ends(self) -> None:
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.write([self.row, self.row])
        sink.close()
        self.assertNotIn(b"\r", self.read())
        self.assertTrue(os.path.getsize(self.path) > 0)


ROW_LINE = "2025-11-29T09:00:00+00:00,dev-1,0,450,230.1,1.9,100.0\n"


class StartupTests(SynchronousTestCase):
    """Start-up checks: a foreign header refuses, a torn line is cut, resume reads the end."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    def put(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_foreign_header_is_refused_and_untouched(self) -> None:
        data = b"time,power\n2025-11-29,5\n"
        self.put(data)
        with self.assertRaises(CsvFileError) as cm:
            check_header(self.path)
        self.assertIn("b'time,power'", str(cm.exception))
        self.assertIn(self.path, str(cm.exception))
        with self.assertRaises(CsvFileError):
            CsvSink(self.path, UTC).open()
        self.assertEqual(self.read(), data)

    def test_torn_last_line_is_cut(self) -> None:
        self.put((HEADER + "\n" + ROW_LINE).encode() + b"2025-11-29T09:01:00+00:00,dev-1,0,45")
        events = capture_log(self)
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.close()
        self.assertEqual(self.read(), (HEADER + "\n" + ROW_LINE).encode())
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("2025-11-29T09:01:00+00:00,dev-1,0,45", warnings[0])
        self.assertIn("36 bytes", warnings[0])

    def test_torn_header_is_completed(self) -> None:
        self.put(HEADER[:20].encode())
        sink = CsvSink(self.path, UTC)
        sink.open()
        sink.close()
        self.assertEqual(self.read(), (HEADER + "\n").encode())

    def test_resume_reads_last_minute_per_channel(self) -> None:
        lines = [
            "2025-11-29T09:58:00+01:00,dev-1,0,450,,,\n",
            "2025-11-29T08:59:00+00:00,dev-1,10,450,,,\n",
            "2025-11-29T09:00:00+00:00,dev-1,0,450,,,\n",
            "2025-11-29T09:00:00+00:00,dev-2,0,450,,,\n",
        ]
        self.put((HEADER + "\n" + "".join(lines)).encode())
        base = parse_row_key(lines[2])
        assert base is not None
        m = base[0]
        self.assertEqual(
            CsvSink(self.path, UTC).open(),
            {("dev-1", 0): m, ("dev-1", 10): m - 1, ("dev-2", 0): m},
        )

    def test_resume_window_starts_inside_a_line(self) -> None:
        self.patch(csvlog, "RESUME_WINDOW", len(ROW_LINE) + 10)
        older = "2025-11-29T08:00:00+00:00,dev-9,0,450,230.1,1.9,100.0\n"
        self.put((HEADER + "\n" + older + ROW_LINE).encode())
        opened = CsvSink(self.path, UTC).open()
        self.assertEqual(list(opened), [("dev-1", 0)])

    def test_parse_row_key(self) -> None:
        self.assertIsNone(parse_row_key(HEADER))
        self.assertIsNone(parse_row_key("2025-11-29T09:00:00,dev-1,0,1,,,"))  # no offset
        self.assertIsNone(parse_row_key("x,dev-1,0,1,,,"))
        self.assertIsNone(parse_row_key("2025-11-29T09:00:00+00:00,dev 1,0,1,,,"))

    def test_parse_row_key_named_channels(self) -> None:
        """Rule 8's names, and rows of as many columns as the header has (rule 9)."""
        line = "2025-11-29T09:00:00+00:00,dev-1,em:0:b,1,,,"
        parsed = parse_row_key(line)
        assert parsed is not None
        self.assertEqual(parsed[1:], ("dev-1", parse_channel_name("em:0:b")))
        self.assertIsNone(parse_row_key(line + ",2.5"))
        self.assertEqual(parse_row_key(line + ",2.5", 8), parsed)
        self.assertIsNone(parse_row_key(line, 8))
        for cell in ("em:0:d", "emdata:0", "switch:0", "pm1:x", ""):
            self.assertIsNone(parse_row_key(f"2025-11-29T09:00:00+00:00,dev-1,{cell},1,,,"))


class WriteFailureTests(SynchronousTestCase):
    """A failed write keeps every row, in order, undoes torn bytes, and retries."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.sink = CsvSink(self.path, UTC, fsync=False)
        self.sink.open()
        self.addCleanup(self.sink.close)
        self.real_write = os.write
        self.disk_full = False

    def row(self, minute: int, device: str = "dev-1") -> Row:
        return Row(minute, device, 0, ChannelValues(450, 230.1, 1.9, 100.0))

    def failing_write(self, fd: int, data: bytes | memoryview) -> int:
        if self.disk_full:
            # Half a line gets out, then the disk is full.
            self.real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real_write(fd, data)

    def lines(self) -> list[str]:
        with open(self.path) as f:
            return f.read().splitlines()

    def test_rows_wait_and_are_written_in_order(self) -> None:
        self.patch(os, "write", self.failing_write)
        self.sink.write([self.row(1)])
        self.disk_full = True
        self.sink.write([self.row(2)])
        self.sink.write([self.row(3)])
        self.assertEqual(self.sink.pending, 2)
        self.assertEqual(self.sink.problem,
                         f"cannot write {self.path}: No space left on device")
        self.assertEqual(len(self.lines()), 2)  # header and minute 1; the torn bytes undone
        self.disk_full = False
        self.sink.write([self.row(4)])
        self.assertEqual(self.sink.pending, 0)
        self.assertIsNone(self.sink.problem)
        self.assertEqual([parse_row_key(x)[0] for x in self.lines()[1:]],  # type: ignore[index]
                         [1, 2, 3, 4])
        self.assertEqual(self.sink.rows_written, 4)
        self.flushLoggedErrors()

    def test_written_rows_counted_by_kind(self) -> None:
        carried = Row(2, "dev-1", 0, ChannelValues(450, 230.1, 1.9, 100.0), carried=True)
        self.sink.write([self.row(1), carried])
        self.assertEqual((self.sink.rows_written, self.sink.rows_written_carried), (2, 1))

    def test_max_pending_drops_and_counts(self) -> None:
        self.patch(os, "write", self.failing_write)
        self.sink.max_pending = 3
        self.disk_full = True
        self.sink.write([self.row(1), self.row(2)])
        self.sink.write([self.row(3), self.row(4), self.row(5)])
        self.assertEqual((self.sink.pending, self.sink.rows_dropped), (3, 2))
        self.disk_full = False
        self.sink.write([])
        self.assertEqual([parse_row_key(x)[0] for x in self.lines()[1:]],  # type: ignore[index]
                         [1, 2, 3])

    def test_rotated_file_gets_a_new_file_with_header(self) -> None:
        self.sink.write([self.row(1)])
        os.rename(self.path, self.path + ".1")
        self.sink.write([self.row(2)])
        self.assertEqual(self.lines(), [HEADER, ROW_LINE.strip().replace(
            "2025-11-29T09:00:00+00:00", minute_timestamp(2, UTC))])

    def test_deleted_file_gets_a_new_file(self) -> None:
        self.sink.write([self.row(1)])
        os.unlink(self.path)
        self.sink.write([self.row(2)])
        self.assertEqual(len(self.lines()), 2)
        self.assertEqual(self.lines()[0], HEADER)

    def test_truncated_file_starts_over_with_header(self) -> None:
        """logrotate's copytruncate empties the file in place: no zeros, a new header."""
        self.sink.write([self.row(1)])
        os.truncate(self.path, 0)
        self.sink.write([self.row(2)])
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertNotIn(b"\0", data)
        self.assertEqual(self.lines(), [HEADER, ROW_LINE.strip().replace(
            "2025-11-29T09:00:00+00:00", minute_timestamp(2, UTC))])

    def test_fsync_after_each_write(self) -> None:
        synced: list[int] = []
        self.patch(os, "fsync", synced.append)
        self.sink.fsync = True
        self.sink.write([self.row(1)])
        self.sink.write([])
        self.sink.write([self.row(2)])
        self.assertEqual(len(synced), 2)


class FakeThread:
    """An C{in_thread} whose jobs run when the test says, on the test's thread."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], OSError | None], Deferred[OSError | None]]] = []

    def __call__(self, f: Callable[[], OSError | None]) -> Deferred[OSError | None]:
        d: Deferred[OSError | None] = Deferred()
        self.jobs.append((f, d))
        return d

    def run(self) -> None:
        f, d = self.jobs.pop(0)
        d.callback(f())


class ThreadedFsyncTests(SynchronousTestCase):
    """
    With C{in_thread}, the fsync after a write runs there, not in L{CsvSink.write}; it
    still follows every write, reports its errors, and L{CsvSink.close} syncs in place.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.thread = FakeThread()
        self.sink = CsvSink(self.path, UTC, in_thread=self.thread)
        self.sink.open()
        self.addCleanup(self.sink.close)
        # The inode each fsync was for: which file it synced, whatever the descriptor.
        self.synced: list[int] = []
        self.fsync_error: OSError | None = None
        self.patch(os, "fsync", self.fake_fsync)

    def fake_fsync(self, fd: int) -> None:
        self.synced.append(os.fstat(fd).st_ino)
        if self.fsync_error is not None:
            raise self.fsync_error

    def row(self, minute: int) -> Row:
        return Row(minute, "dev-1", 0, ChannelValues(450, 230.1, 1.9, 100.0))

    def inode(self) -> int:
        return os.stat(self.path).st_ino

    def lines(self) -> list[str]:
        with open(self.path) as f:
            return f.read().splitlines()

    def test_write_leaves_fsync_to_the_thread(self) -> None:
        self.sink.write([self.row(1)])
        self.assertEqual(len(self.lines()), 2)  # written at once
        self.assertEqual(self.synced, [])
        self.assertEqual(len(self.thread.jobs), 1)
        self.thread.run()
        self.assertEqual(self.synced, [self.inode()])
        self.assertEqual((self.sink.rows_written, self.sink.write_errors), (1, 0))

    def test_writes_during_an_fsync_get_one_more(self) -> None:
        """At most one fsync runs; rows written meanwhile are synced after it."""
        self.sink.write([self.row(1)])
        self.sink.write([self.row(2)])
        self.sink.write([self.row(3)])
        self.assertEqual(len(self.thread.jobs), 1)
        self.thread.run()
        self.assertEqual(len(self.thread.jobs), 1)
        self.thread.run()
        self.assertEqual(self.thread.jobs, [])
        self.assertEqual(self.synced, [self.inode()] * 2)
        self.assertEqual(len(self.lines()), 4)

    def test_moved_file_is_synced_in_itself(self) -> None:
        """Rows written to a file that was then moved away are synced in that file."""
        self.sink.write([self.row(1)])
        self.sink.write([self.row(2)])
        old = self.inode()
        os.rename(self.path, self.path + ".1")
        self.sink.write([self.row(3)])
        self.thread.run()
        self.thread.run()
        self.assertEqual(self.synced, [old, old, self.inode()])
        self.assertNotEqual(old, self.inode())

    def test_fsync_error_is_logged_and_counted(self) -> None:
        events = capture_log(self)
        self.fsync_error = OSError(errno.EIO, "Input/output error")
        self.sink.write([self.row(1)])
        self.assertEqual(self.sink.write_errors, 0)
        self.thread.run()
        self.assertEqual(self.sink.write_errors, 1)
        [event] = [e for e in events if e.get("event") == "fsync_failed"]
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("Input/output error", formatEvent(event))
        # The rows are in the file: they are not kept to be written again.
        self.assertEqual((self.sink.rows_written, self.sink.pending), (1, 0))
        self.fsync_error = None
        self.sink.write([self.row(2)])
        self.thread.run()
        self.assertEqual(self.sink.write_errors, 1)

    def test_pool_failure_is_counted(self) -> None:
        events = capture_log(self)
        self.sink.write([self.row(1)])
        _, d = self.thread.jobs.pop()
        d.errback(RuntimeError("no thread"))
        self.assertEqual(self.sink.write_errors, 1)
        self.assertEqual([e.get("event") for e in events if "log_failure" in e],
                         ["fsync_failed"])
        self.flushLoggedErrors(RuntimeError)
        self.sink.write([self.row(2)])
        self.assertEqual(len(self.thread.jobs), 1)  # the next write is synced again

    def test_close_syncs_in_place(self) -> None:
        """A stop cannot wait for the thread: close fsyncs the file on this thread."""
        self.sink.write([self.row(1)])
        self.sink.write([self.row(2)])  # waits for the running fsync
        self.sink.close()
        self.assertEqual(self.synced, [self.inode()])
        self.thread.run()  # the one that was running ends after the close
        self.assertEqual(self.synced, [self.inode()] * 2)

    def test_close_syncs_a_moved_file_too(self) -> None:
        self.sink.write([self.row(1)])
        self.sink.write([self.row(2)])
        old = self.inode()
        os.rename(self.path, self.path + ".1")
        self.sink.write([self.row(3)])
        self.sink.close()
        self.assertEqual(self.synced, [old, self.inode()])

    def test_close_reports_an_fsync_error(self) -> None:
        self.sink.write([self.row(1)])
        self.fsync_error = OSError(errno.EIO, "Input/output error")
        self.sink.close()
        self.assertEqual(self.sink.write_errors, 1)

    def test_failed_write_is_not_synced(self) -> None:
        def full(fd: int, data: bytes | memoryview) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "write", full)
        self.sink.write([self.row(1)])
        self.assertEqual((self.sink.pending, self.thread.jobs), (1, []))
        self.flushLoggedErrors()

    def test_without_fsync_nothing_goes_to_the_thread(self) -> None:
        self.sink.fsync = False
        self.sink.write([self.row(1)])
        self.sink.close()
        self.assertEqual((self.thread.jobs, self.synced), ([], []))
