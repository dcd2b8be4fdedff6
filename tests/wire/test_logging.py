"""
The log: C{twisted.logger} events with a stable C{event} name and fields, so that JSON log
output (C{twist --log-format json}) can be filtered; nothing at info level per frame, and a
flood of bad frames is one warning per reason and a summary at the close.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from typing import Any
from zoneinfo import ZoneInfo

from twisted.logger import (
    LogEvent,
    Logger,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
)
from twisted.trial.unittest import SynchronousTestCase

from shellylog.admission import ANY_DEVICE, Admission, TokenRule
from shellylog.config import Limits
from shellylog.csvlog import HEADER, CsvSink
from shellylog.logs import json_observer
from shellylog.status import ChannelValues
from shellylog.tracker import Row
from tests.support.frames import DEVICE, notify, switch
from tests.support.logs import capture_log
from tests.support.stack import T0, Stack
from tests.support.wire import Harness, RecordingClient, device_connection

OTHER = "shellyplus1pm-112233445566"
SECRET = "s3cret"
UTC = ZoneInfo("UTC")

INFO_OR_WORSE = (LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


def ours(events: list[LogEvent]) -> list[LogEvent]:
    """The events of shellylog's own loggers."""
    return [e for e in events if str(e.get("log_namespace", "")).startswith("shellylog")]


def loud(events: list[LogEvent]) -> list[LogEvent]:
    """Our events at info level or above."""
    return [e for e in ours(events) if e.get("log_level") in INFO_OR_WORSE]


def names(events: list[LogEvent]) -> list[str | None]:
    return [e.get("event") for e in loud(events)]


class LogCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = capture_log(self)

    def named(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == name]

    def only(self, name: str, level: LogLevel, **fields: Any) -> LogEvent:
        """The one event called C{name}: at C{level}, with C{fields} as given."""
        found = self.named(name)
        self.assertEqual(len(found), 1, [formatEvent(e) for e in found])
        event = found[0]
        self.assertIs(event["log_level"], level, name)
        self.assertTrue(str(event["log_namespace"]).startswith("shellylog."), event)
        self.assertEqual({key: event.get(key) for key in fields}, fields)
        # It reads well, and it survives the JSON a log file holds.
        self.assertNotIn("Unable to format event", formatEvent(event))
        self.assertEqual(eventFromJSON(eventAsJSON(event))["event"], name)
        return event


class DeviceEventTests(LogCase):
    def setUp(self) -> None:
        super().setUp()
        self.stack = Stack(self, "--channels", "0")

    def device(self) -> tuple[RecordingClient, str]:
        client, connection = self.stack.connect()
        self.stack.send(client, notify({"switch:0": switch(450)}))
        peer = connection.server.peer
        assert peer is not None
        return client, peer

    def test_connected_and_disconnected(self) -> None:
        client, peer = self.device()
        self.only("device_connected", LogLevel.info, device=DEVICE, peer=peer)
        self.assertEqual(self.named("device_disconnected"), [])
        client.sendClose(code=1000)
        self.stack.advance(2)
        self.only("device_disconnected", LogLevel.info, device=DEVICE, peer=peer, code=1000)

    def test_replaced(self) -> None:
        self.device()
        _, newer = self.device()
        self.stack.advance(2)
        self.only("device_replaced", LogLevel.info, device=DEVICE)
        self.assertEqual([e["peer"] for e in self.named("device_connected")][-1], newer)
        # The older connection went quietly: it no longer spoke for the device.
        self.assertEqual(self.named("device_disconnected"), [])

    def test_no_info_per_frame(self) -> None:
        """100 valid updates: nothing at info level or above but the connect."""
        client, _ = self.device()
        for i in range(100):
            client.send_json(notify({"switch:0": {"apower": 100.0 + i}}))
        self.stack.harness.flush()
        self.assertEqual(self.stack.registry.received["notifystatus"], 101)
        self.assertEqual(names(self.events), ["device_connected"])

    def test_no_info_per_poll(self) -> None:
        """Polls answered for ten minutes: nothing at info level per answer."""
        stack = Stack(self, "--channels", "0", "--poll", "10")
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(1)}))
        answered = 0
        for _ in range(60):
            stack.advance(10)
            for message in client.json_messages()[answered:]:
                client.send_json({"id": message["id"], "src": DEVICE, "dst": "shellylog",
                                  "result": {"switch:0": switch(2)}})
            answered = len(client.json_messages())
        stack.harness.flush()
        self.assertGreaterEqual(stack.registry.received["response"], 59)
        self.assertEqual(names(self.events), ["device_connected"])


class RejectionEventTests(LogCase):
    def setUp(self) -> None:
        super().setUp()
        self.stack = Stack(self, "--channels", "0")

    def test_flood_is_one_warning_per_reason_and_a_summary(self) -> None:
        stack = self.stack
        client, connection = stack.connect()
        stack.send(client, notify({"switch:0": switch(450)}))
        peer = connection.server.peer
        stack.send(client, *["{not json"] * 50)
        self.only("frame_rejected", LogLevel.warn, reason="not_json", device=DEVICE, peer=peer)
        self.assertEqual(names(self.events), ["device_connected", "frame_rejected"])
        stack.send(client, *["[1]"] * 2)
        self.assertEqual([e["reason"] for e in self.named("frame_rejected")],
                         ["not_json", "not_object"])
        self.assertEqual(self.named("frames_rejected_summary"), [])
        client.sendClose(code=1000)
        stack.advance(2)
        self.only("frames_rejected_summary", LogLevel.warn, total=52, device=DEVICE, peer=peer,
                  reasons={"not_json": 50, "not_object": 2})
        self.assertEqual(
            names(self.events),
            ["device_connected", "frame_rejected", "frame_rejected", "frames_rejected_summary",
             "device_disconnected"],
        )

    def test_once_per_connection(self) -> None:
        """The next connection's first bad frame is logged again."""
        stack = self.stack
        for _ in range(2):
            client, _ = stack.connect()
            stack.send(client, *["{not json"] * 5)
            client.sendClose(code=1000)
            stack.advance(2)
        self.assertEqual([e["reason"] for e in self.named("frame_rejected")],
                         ["not_json", "not_json"])
        self.assertEqual([e["total"] for e in self.named("frames_rejected_summary")], [5, 5])

    def test_clean_connection_has_no_summary(self) -> None:
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"switch:0": switch(450)}))
        client.sendClose(code=1000)
        self.stack.advance(2)
        self.assertEqual(self.named("frames_rejected_summary"), [])


class ClosedAndRefusedTests(LogCase):
    def test_connection_closed_for_rate(self) -> None:
        harness = Harness(self, limits=Limits(max_rate=5))
        client, connection = harness.connect_ws("/ws")
        for i in range(50):
            client.send_json(notify({"switch:0": {"apower": float(i)}}))
        harness.flush()
        assert client.closed is not None
        self.assertEqual(client.closed[1], 1008)
        self.only("connection_closed", LogLevel.warn, code=1008, device=DEVICE,
                  peer=connection.server.peer)
        self.only("frame_rejected", LogLevel.warn, reason="rate_limited")
        self.only("frames_rejected_summary", LogLevel.warn)

    def test_connection_refused_bad_token(self) -> None:
        harness = Harness(self, admission=Admission(tokens=(TokenRule(SECRET, ANY_DEVICE),)))
        client, _ = harness.connect_ws("/ws?token=n0t-the-t0ken")
        self.assertFalse(client.opened)
        self.only("connection_refused", LogLevel.warn, peer="tcp4:192.0.2.7:40001")
        client, _ = harness.connect_ws(f"/ws?token={SECRET}")
        self.assertTrue(client.opened)
        # Neither token is anywhere in the log.
        for event in self.events:
            text = formatEvent(event) + repr(event)
            self.assertNotIn("n0t-the-t0ken", text)
            self.assertNotIn(SECRET, text)

    def test_connection_refused_too_many(self) -> None:
        harness = Harness(self, limits=Limits(max_connections=1))
        first, _ = harness.connect_ws("/ws")
        second, _ = harness.connect_ws("/ws")
        self.assertTrue(first.opened)
        self.assertFalse(second.opened)
        self.only("connection_refused", LogLevel.warn, limit=1)


class RowEventTests(LogCase):
    def setUp(self) -> None:
        super().setUp()
        self.stack = Stack(self, "--channels", "0")
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"switch:0": switch(450, 230.1, 1.9, 100.0)}))

    def test_rows_written(self) -> None:
        stack = self.stack
        stack.advance_to(T0 + 59)
        self.assertEqual(self.named("rows_written"), [])
        stack.advance(1)
        self.only("rows_written", LogLevel.info, count=1)

    def test_idle_tick_logs_nothing(self) -> None:
        device_connection(self.stack.registry, DEVICE).sendClose(code=1000)
        self.stack.advance_to(T0 + 60)  # the row of minute T0
        self.stack.advance(300)
        self.assertEqual(len(self.named("rows_written")), 1)

    def test_write_failed_and_recovered(self) -> None:
        stack = self.stack
        stack.fail_writes()
        stack.advance_to(T0 + 60)
        reason = f"cannot write {stack.csv}: No space left on device"
        self.only("write_failed", LogLevel.error, reason=reason, count=1)
        # Nothing was written, so nothing says so.
        self.assertEqual(self.named("rows_written"), [])
        stack.advance(60)
        # One error for the outage, not one a minute.
        self.assertEqual(len(self.named("write_failed")), 1)
        self.assertEqual(self.named("write_recovered"), [])
        stack.disk_full = False
        stack.advance(60)
        self.only("write_recovered", LogLevel.info, count=3)
        self.assertEqual(len(self.named("write_failed")), 1)

    def test_torn_line(self) -> None:
        path = self.mktemp()
        torn = b"2027-01-15T08:00:00+00:00,dev-1,0,45"
        with open(path, "wb") as f:
            f.write((HEADER + "\n").encode() + torn)
        sink = CsvSink(path, UTC, fsync=False)
        sink.open()
        self.addCleanup(sink.close)
        self.only("csv_torn_line", LogLevel.warn, path=path, count=len(torn), dropped=torn)


class WriteFailureTests(LogCase):
    """The sink on its own: a failing write logs C{write_failed}, the next one recovers."""

    def test_failed_then_recovered(self) -> None:
        path = self.mktemp()
        sink = CsvSink(path, UTC, fsync=False)
        sink.open()
        self.addCleanup(sink.close)
        real = os.write
        full = [True]

        def write(fd: int, data: bytes | memoryview) -> int:
            if full[0]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        self.patch(os, "write", write)
        row = Row(T0 // 60, DEVICE, 0, ChannelValues(450, 230.1, 1.9, 100.0))
        sink.write([row])
        self.only("write_failed", LogLevel.error, count=1)
        full[0] = False
        sink.write([])
        self.only("write_recovered", LogLevel.info, count=1)


class NamedEventsTests(LogCase):
    """Every event of ours at info level or above has a name, whatever happens."""

    def test_all_named(self) -> None:
        stack = Stack(self, "--channels", "0", "--max-rate", "20")
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450)}))
        stack.send(client, "{not json", notify({}, src=OTHER))
        stack.send(client, {"id": 1, "src": DEVICE, "error": {"code": -1, "message": "x"}})
        stack.send(client, {"id": 2, "src": DEVICE, "error": {"code": -1, "message": "x"}})
        # An error of our own on a frame.
        class Broken:
            def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
                raise RuntimeError("tracker broke")

        stack.registry.sink = Broken()  # type: ignore[assignment]
        stack.send(client, notify({"switch:0": switch(451)}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        stack.registry.sink = stack.tracker
        self.assertEqual(stack.registry.rejected["internal"], 1)
        # A replacement, a flood that closes the connection, a full disk, a stop.
        stack.connect()
        replacement, _ = stack.connect()
        stack.send(replacement, notify({"switch:0": switch(450)}))
        stack.send(replacement, *[notify({"switch:0": switch(450)})] * 50)
        stack.fail_writes()
        stack.advance_to(T0 + 60)
        stack.disk_full = False
        stack.advance(60)
        late, _ = stack.connect()
        stack.send(late, notify({"switch:0": switch(450)}, src=OTHER))
        stack.advance(60)
        stack.stop()
        unnamed = [formatEvent(e) for e in loud(self.events) if not e.get("event")]
        self.assertEqual(unnamed, [])
        self.assertTrue({
            "device_connected", "device_replaced", "device_disconnected", "frame_rejected",
            "frames_rejected_summary", "device_error", "frame_failed", "connection_closed",
            "write_failed",
            "write_recovered", "rows_written", "server_stopped",
        } <= set(names(self.events)), names(self.events))
        for event in ours(self.events):
            self.assertEqual(eventFromJSON(eventAsJSON(event)).get("event"), event.get("event"))


class JsonObserverTests(SynchronousTestCase):
    """C{twistd --logger shellylog.logs.json_observer}: one JSON object a line, fields kept."""

    def test_one_json_line_per_event(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = json_observer()
        logger = Logger(namespace="shellylog.protocol", observer=observer)
        logger.info("device {device} connected", event="device_connected", device="d-1")
        logger.warn("dropped", event="frame_rejected", reason="not_json")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first, second = (json.loads(line) for line in lines)
        self.assertEqual((first["event"], first["device"]), ("device_connected", "d-1"))
        self.assertEqual((second["event"], second["reason"]), ("frame_rejected", "not_json"))
