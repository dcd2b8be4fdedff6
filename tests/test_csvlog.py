"""
Row format (rule 7) and the CSV file.
"""

from __future__ import annotations

import errno
import os
from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from shellylog import csvlog
from shellylog.csvlog import (
    HEADER,
    CsvFileError,
    CsvSink,
    check_header,
    format_number,
    format_rows,
    minute_timestamp,
    parse_row_key,
)
from shellylog.rpc import Notification, decode_frame, status_params
from shellylog.status import ChannelValues, DeviceStatus
from shellylog.tracker import ChannelTracker, Row, minute_of
from tests.helpers import capture_log

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


class WriteFailureTests(SynchronousTestCase):
    """A failed write keeps every row, in order, undoes torn bytes, and retries."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.sink = CsvSink(self.path, UTC, fsync=False)
        self.sink.open()
        self.addCleanup(self.sink.close)
        self.real_write = os.write
        self.fail = False

    def row(self, minute: int, device: str = "dev-1") -> Row:
        return Row(minute, device, 0, ChannelValues(450, 230.1, 1.9, 100.0))

    def failing_write(self, fd: int, data: bytes | memoryview) -> int:
        if self.fail:
            # Half a line gets out, then the disk is full.
            self.real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real_write(fd, data)

    def lines(self) -> list[str]:
        with open(self.path) as f:
            return f.read().splitlines()

    def test_rows_wait_and_are_written_in_order(self) -> None:
        self.patch(csvlog.os, "write", self.failing_write)
        self.sink.write([self.row(1)])
        self.fail = True
        self.sink.write([self.row(2)])
        self.sink.write([self.row(3)])
        self.assertEqual(self.sink.pending, 2)
        self.assertEqual(self.sink.problem,
                         f"cannot write {self.path}: No space left on device")
        self.assertEqual(len(self.lines()), 2)  # header and minute 1; the torn bytes undone
        self.fail = False
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
        self.patch(csvlog.os, "write", self.failing_write)
        self.sink.max_pending = 3
        self.fail = True
        self.sink.write([self.row(1), self.row(2)])
        self.sink.write([self.row(3), self.row(4), self.row(5)])
        self.assertEqual((self.sink.pending, self.sink.rows_dropped), (3, 2))
        self.fail = False
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
        self.patch(csvlog.os, "fsync", synced.append)
        self.sink.fsync = True
        self.sink.write([self.row(1)])
        self.sink.write([])
        self.sink.write([self.row(2)])
        self.assertEqual(len(synced), 2)
