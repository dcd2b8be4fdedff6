"""
Row format (rule 7) and the CSV file.
"""

from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.csvlog import HEADER, CsvSink, format_number, format_rows, minute_timestamp
from shellylog.rpc import Notification, decode_frame, status_params
from shellylog.status import ChannelValues, DeviceStatus
from shellylog.tracker import ChannelTracker, Row, minute_of

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
        self.assertEqual(format_rows([row], UTC), "1970-01-01T00:00:00+00:00,dev-1,3,12.5,,,\n")

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
        text = format_rows(tracker.close_completed(), BERLIN)
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
