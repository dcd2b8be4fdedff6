"""
L{Session}, the rules of one device connection, driven directly: a plain L{FakeLink} for
the connection and a L{Clock} for time, without Autobahn or a socket.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.admission import Admission
from shellylog.registry import DeviceRegistry
from shellylog.session import (
    ENABLE_NOTIFY,
    GET_STATUS,
    MAX_BINARY,
    MAX_OUTSTANDING,
    NAME_TIMEOUT,
    RATE_WINDOW,
    Rules,
    Session,
)
from shellylog.status import ChannelValues
from tests.support.frames import DEVICE
from tests.support.logs import capture_log
from tests.support.wire import FakeSink

OTHER = "shellyplus1pm-112233445566"


@attrs.define(eq=False)
class FakeLink:
    """A connection as a session sees it: remembers what it sent and the closes asked."""

    peer: str | None = "tcp:192.0.2.7:40001"
    session: Session | None = None
    sent: list[Any] = attrs.field(factory=list)
    closes: list[tuple[int, str]] = attrs.field(factory=list)
    open: bool = True

    @property
    def device_id(self) -> str | None:
        return None if self.session is None else self.session.device_id

    def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close_with(self, code: int, reason: str) -> bool:
        self.closes.append((code, reason))
        was_open, self.open = self.open, False
        return was_open


class BrokenSink(FakeSink):
    def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
        raise RuntimeError("tracker broke")


def notify(params: dict[str, Any], src: str = DEVICE,
           method: str = "NotifyStatus") -> dict[str, Any]:
    return {"src": src, "dst": "ws", "method": method, "params": params}


def frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode("utf-8")


class SessionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.sink = FakeSink()
        self.registry = DeviceRegistry(sink=self.sink, clock=self.clock)

    def session(self, rules: Rules | None = None, open: bool = True,
                admitted: tuple[str, ...] | None = None) -> tuple[Session, FakeLink]:
        link = FakeLink()
        rules = rules or Rules()
        if admitted is None:
            admitted = rules.admission.admit(None) or ()
        session = Session(rules, self.registry, link, admitted)
        link.session = session
        if open:
            session.opened()
        return session, link

    def send(self, session: Session, *frames: dict[str, Any]) -> None:
        for obj in frames:
            session.received(frame(obj), False)


class OpenTests(SessionTestCase):
    def test_opened_asks_for_status(self) -> None:
        session, link = self.session()
        self.assertEqual([(m["id"], m["method"]) for m in link.sent],
                         [(1, ENABLE_NOTIFY), (2, GET_STATUS)])
        self.assertEqual(link.sent[0]["params"], {"enable": True})
        self.assertEqual(session.outstanding, {1: ENABLE_NOTIFY, 2: GET_STATUS})
        self.assertEqual(self.registry.connections_opened, 1)
        self.assertEqual(self.registry.open_connections, {link})

    def test_outstanding_bounded(self) -> None:
        session, _ = self.session()
        for _ in range(MAX_OUTSTANDING * 2):
            session.send_request(GET_STATUS)
        self.assertEqual(len(session.outstanding), MAX_OUTSTANDING)
        self.assertNotIn(1, session.outstanding)

    def test_nameless_closed(self) -> None:
        _, link = self.session()
        self.clock.advance(NAME_TIMEOUT - 0.1)
        self.assertEqual(link.closes, [])
        self.clock.advance(0.1)
        self.assertEqual(link.closes, [(1008, "no device id")])
        self.assertEqual(self.registry.rejected, {"no_device": 1})

    def test_named_in_time_not_closed(self) -> None:
        session, link = self.session()
        self.send(session, notify({}))
        self.clock.advance(NAME_TIMEOUT * 2)
        self.assertEqual(link.closes, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_timer(self) -> None:
        session, _ = self.session()
        session.stop_timer()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BindingTests(SessionTestCase):
    def test_first_frame_binds(self) -> None:
        session, link = self.session()
        self.send(session, notify({"switch:0": {"apower": 12.5, "voltage": 230.0}}))
        self.assertEqual(session.device_id, DEVICE)
        self.assertEqual(self.registry.devices, {DEVICE: link})
        record = self.registry.records[DEVICE]
        self.assertEqual((record.frames, record.last_frame_at), (1, self.clock.seconds()))
        self.assertEqual(self.sink.readings_calls,
                         [(DEVICE, {0: ChannelValues(12.5, 230.0, None, None)})])
        self.assertEqual(self.registry.received, {"notifystatus": 1})

    def test_frames_counted_on_the_record(self) -> None:
        session, _ = self.session()
        self.send(session, notify({}), notify({}), notify({}))
        self.assertEqual(self.registry.records[DEVICE].frames, 3)

    def test_other_src_rejected(self) -> None:
        session, link = self.session()
        self.send(session, notify({}), notify({"switch:0": {"apower": 1.0}}, src=OTHER))
        self.assertEqual(session.device_id, DEVICE)
        self.assertEqual(session.rejected, {"src_mismatch": 1})
        self.assertEqual(self.registry.rejected, {"src_mismatch": 1})
        self.assertEqual(self.sink.readings_calls, [])
        self.assertEqual(link.closes, [])

    def test_unsafe_src_rejected(self) -> None:
        session, _ = self.session()
        self.send(session, notify({}, src="../etc"))
        self.assertIsNone(session.device_id)
        self.assertEqual(session.rejected, {"bad_src": 1})

    def test_id_pattern(self) -> None:
        session, _ = self.session(Rules(id_pattern=re.compile("shellyplus.*")))
        self.send(session, notify({}))
        self.assertEqual(session.rejected, {"bad_src": 1})
        self.send(session, notify({}, src=OTHER))
        self.assertEqual(session.device_id, OTHER)

    def test_device_not_admitted(self) -> None:
        session, link = self.session(Rules(admission=Admission(allow=("shellyplus*",))))
        self.send(session, notify({}))
        self.assertIsNone(session.device_id)
        self.assertEqual(link.closes, [(1008, "device not allowed")])
        self.assertEqual(session.rejected, {"not_allowed": 1})
        self.assertEqual(self.registry.devices, {})

    def test_ended_ends_device(self) -> None:
        session, _ = self.session()
        self.send(session, notify({}))
        session.ended(1000)
        self.assertEqual(self.registry.devices, {})
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])
        self.assertFalse(self.registry.records[DEVICE].connected)

    def test_replaced_session(self) -> None:
        old, old_link = self.session()
        self.send(old, notify({}))
        new, new_link = self.session()
        self.send(new, notify({}))
        self.assertEqual(old_link.closes, [(1000, "replaced by a newer connection")])
        self.assertEqual(self.registry.devices, {DEVICE: new_link})
        # What still reaches the old one is stale: not a reading.
        self.send(old, notify({"switch:0": {"apower": 99.0}}))
        self.assertEqual(self.sink.readings_calls, [])
        # Its end does not end the device.
        old.ended(1000)
        self.assertEqual(self.registry.devices, {DEVICE: new_link})
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])


class StatusTests(SessionTestCase):
    def test_get_status_answer_replaces(self) -> None:
        session, _ = self.session()
        self.send(session, notify({"switch:0": {"apower": 5.0}, "switch:1": {"apower": 6.0}}))
        self.send(session, {"id": 2, "src": DEVICE, "result": {"switch:1": {"apower": 7.0}}})
        self.assertEqual(session.status.values_for(((0, "switch:0"), (1, "switch:1"))),
                         {1: ChannelValues(7.0, None, None, None)})
        self.assertEqual(self.registry.received, {"notifystatus": 1, "response": 1})
        self.assertNotIn(2, session.outstanding)

    def test_get_status_result_not_object(self) -> None:
        session, _ = self.session()
        self.send(session, {"id": 2, "src": DEVICE, "result": [1]})
        self.assertEqual(session.rejected, {"bad_result": 1})

    def test_answer_to_enable_notify_error_ignored(self) -> None:
        session, _ = self.session()
        self.send(session, {"id": 1, "src": DEVICE, "error": {"code": 404, "message": "no"}})
        self.assertEqual(session.rejected, {})
        self.assertEqual(self.registry.received, {"error": 1})

    def test_channels_kept(self) -> None:
        session, _ = self.session(Rules(channels=(1,)))
        self.send(session, notify({"switch:0": {"apower": 5.0}, "switch:1": {"apower": 6.0}}))
        self.assertEqual(self.sink.readings_calls,
                         [(DEVICE, {1: ChannelValues(6.0, None, None, None)})])

    def test_tracker_failure_contained(self) -> None:
        session, _ = self.session()
        self.registry.sink = BrokenSink()
        self.send(session, notify({"switch:0": {"apower": 5.0}}))
        self.assertEqual(session.rejected, {"internal": 1})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RateTests(SessionTestCase):
    def test_frames_a_minute(self) -> None:
        session, link = self.session(Rules(max_rate=2))
        self.send(session, *[notify({"switch:0": {"apower": float(n)}}) for n in range(4)])
        self.assertEqual(len(self.sink.readings_calls), 2)
        self.assertEqual(session.rejected, {"rate_limited": 2})
        self.assertEqual(link.closes, [])
        self.send(session, notify({}))
        self.assertEqual(link.closes, [(1008, "too many frames")])

    def test_new_window_after_a_minute(self) -> None:
        session, link = self.session(Rules(max_rate=2))
        self.send(session, notify({}), notify({}), notify({}))
        self.assertEqual(session.rejected, {"rate_limited": 1})
        self.clock.advance(RATE_WINDOW)
        self.send(session, notify({}), notify({}))
        self.assertEqual(session.rejected, {"rate_limited": 1})
        self.assertEqual(link.closes, [])

    def test_bytes_a_minute(self) -> None:
        big = notify({"switch:0": {"apower": 1.0}, "sys": {"pad": "x" * 1000}})
        session, link = self.session(Rules(max_bytes_rate=2500))
        self.send(session, big, big, big)
        self.assertEqual(session.rejected, {"byte_rate_limited": 1})
        self.assertEqual(link.closes, [])
        self.send(session, big, big)
        self.assertEqual(link.closes, [(1008, "too many bytes")])


class BadFrameTests(SessionTestCase):
    def test_binary(self) -> None:
        session, link = self.session()
        for _ in range(MAX_BINARY - 1):
            session.received(b"\x00", True)
        self.assertEqual(session.rejected, {"binary": MAX_BINARY - 1})
        self.assertEqual(link.closes, [])
        session.received(b"\x00", True)
        self.assertEqual(link.closes, [(1003, "binary frames")])

    def test_invalid_utf8(self) -> None:
        session, link = self.session()
        session.received(b"\xff\xfe", False)
        self.assertEqual(link.closes, [(1007, "invalid UTF-8")])
        self.assertEqual(self.registry.rejected, {"bad_utf8": 1})

    def test_not_json(self) -> None:
        session, link = self.session()
        session.received(b"{", False)
        session.received(b"{", False)
        self.assertEqual(session.rejected, {"not_json": 2})
        self.assertEqual(link.closes, [])

    def test_ended_summarizes(self) -> None:
        session, _ = self.session()
        session.received(b"{", False)
        events = capture_log(self)
        session.ended(1000)
        (summary,) = [e for e in events if e.get("event") == "frames_rejected_summary"]
        self.assertEqual((summary["total"], summary["reasons"]), (1, {"not_json": 1}))
