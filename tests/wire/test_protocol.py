"""
Tests for L{shellylog.protocol}: a real Autobahn client plays the device against the real
site, over an in-memory transport, with every timer on one L{Clock}.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from shellylog.protocol import CloseOnStop, ShellyServerProtocol
from shellylog.status import ChannelValues
from tests.support.frames import DEVICE, fixture_device_id, fixture_status, notify
from tests.support.logs import capture_log, warnings_from
from tests.support.wire import Connection, Harness, RecordingClient

PRO4PM = "pro4pm-fw1.0.3.json"
PLUS1PM = "plus1pm-fw1.1.0.json"
PRO3 = "pro3-unmetered-fw1.1.0.json"

#: The values of the Pro 4PM fixture's four channels.
PRO4PM_VALUES = {
    0: ChannelValues(apower=0.0, voltage=121.7, current=0.0, energy_total=0.0),
    1: ChannelValues(apower=0.0, voltage=121.8, current=0.0, energy_total=0.0),
    2: ChannelValues(apower=0.0, voltage=121.8, current=0.0, energy_total=0.0),
    3: ChannelValues(apower=0.0, voltage=121.8, current=0.0, energy_total=0.0),
}


def full_status(name: str = PRO4PM, ts: float = 5.01) -> dict[str, Any]:
    return notify({"ts": ts, **fixture_status(name)}, method="NotifyFullStatus")


def pollers(clock: Clock) -> list[DelayedCall]:
    """The pending calls of a L{LoopingCall} (the poller) on C{clock}."""
    return [
        c
        for c in clock.getDelayedCalls()
        if isinstance(c, DelayedCall) and c.active() and isinstance(c.func, LoopingCall)
    ]


def requests_by_method(client: RecordingClient, method: str) -> list[dict[str, Any]]:
    return [m for m in client.json_messages() if m.get("method") == method]


class DeviceCase(SynchronousTestCase):
    """A harness and one connected device client, ready for frames."""

    poll_interval = 60.0
    channels: tuple[int, ...] = (0, 1, 2, 3)

    def setUp(self) -> None:
        self.fresh_device()

    def fresh_device(self) -> Harness:
        """
        A new harness with one device client connected, which this case's C{harness},
        C{client} and the rest are from then on: each case of a C{subTest} loop starts
        from its own.
        """
        self.harness = Harness(self, poll_interval=self.poll_interval, channels=self.channels)
        self.sink = self.harness.sink
        self.factory = self.harness.factory
        self.client, self.connection = self.harness.connect_ws("/ws", protocols=["json-rpc"])
        self.assertTrue(self.client.opened)
        return self.harness

    def send(self, obj: object, client: RecordingClient | None = None) -> None:
        client = client or self.client
        client.send_json(obj)
        self.flush_all()

    def send_text(self, text: str | bytes) -> None:
        self.client.send_text(text)
        self.flush_all()

    def flush_all(self) -> None:
        self.connection.flush()

    def request_id(self, method: str, index: int = 0) -> int:
        request_id = requests_by_method(self.client, method)[index]["id"]
        assert isinstance(request_id, int)
        return request_id

    def last_readings(self) -> dict[int, ChannelValues]:
        calls = self.sink.readings_calls
        self.assertTrue(calls, "no readings at all")
        device_id, values = calls[-1]
        self.assertEqual(device_id, DEVICE)
        return values

    def name_device(self) -> None:
        """The device's first frame, which names it (a nameless connection is closed)."""
        self.send({"src": DEVICE, "dst": "ws", "method": "NotifyEvent", "params": {}})

    def assert_still_open(self, connection: Connection | None = None) -> None:
        connection = connection or self.connection
        self.assertIsNone(connection.client.closed)
        self.assertEqual(connection.server.state, WebSocketProtocol.STATE_OPEN)


class BootstrapTests(DeviceCase):
    """What the server says first, and its polling."""

    def test_bootstrap_requests(self) -> None:
        messages = self.client.json_messages()
        self.assertEqual(len(messages), 2)
        first, second = messages
        n = first["id"]
        m = second["id"]
        self.assertIsInstance(n, int)
        self.assertIsInstance(m, int)
        self.assertNotEqual(n, m)
        self.assertEqual(
            first,
            {
                "jsonrpc": "2.0",
                "id": n,
                "src": "shellylog",
                "method": "NotifyStatus",
                "params": {"enable": True},
            },
        )
        self.assertEqual(
            second, {"jsonrpc": "2.0", "id": m, "src": "shellylog", "method": "Shelly.GetStatus"}
        )
        # Text frames, as a device expects.
        self.assertEqual([binary for _, binary in self.client.messages], [False, False])

    def test_nothing_to_the_sink_before_a_frame(self) -> None:
        self.assertEqual(self.sink.calls, [])
        self.assertEqual(self.factory.registry.devices, {})

    def test_polls_every_interval(self) -> None:
        self.name_device()
        self.connection.advance(59)
        self.assertEqual(len(requests_by_method(self.client, "Shelly.GetStatus")), 1)
        self.connection.advance(1)
        polls = requests_by_method(self.client, "Shelly.GetStatus")
        self.assertEqual(len(polls), 2)
        self.connection.advance(60 * 4)
        polls = requests_by_method(self.client, "Shelly.GetStatus")
        self.assertEqual(len(polls), 6)
        ids = [p["id"] for p in polls]
        self.assertEqual(len(set(ids)), 6)
        self.assertEqual(ids, sorted(ids))
        for poll in polls:
            self.assertEqual(
                poll,
                {"jsonrpc": "2.0", "id": poll["id"], "src": "shellylog",
                 "method": "Shelly.GetStatus"},
            )
        # Nothing else was sent, and the pings kept the connection alive.
        self.assertEqual(len(self.client.json_messages()), 7)
        self.assert_still_open()

    def test_poll_answer_replaces_status(self) -> None:
        self.send(full_status())
        self.connection.advance(60)
        poll_id = self.request_id("Shelly.GetStatus", 1)
        self.send({"id": poll_id, "src": DEVICE, "dst": "shellylog",
                   "result": {"switch:2": {"id": 2, "apower": 17.5, "voltage": 230.1}}})
        self.assertEqual(
            self.last_readings(),
            {2: ChannelValues(apower=17.5, voltage=230.1, current=None, energy_total=None)},
        )

    def test_polling_stops_after_close(self) -> None:
        server = self.connection.server
        self.client.sendClose(code=1000)
        self.flush_all()
        self.assertEqual(self.client.closed, (True, 1000, None))
        self.assertEqual(server.state, WebSocketProtocol.STATE_CLOSED)
        self.assertEqual(pollers(self.harness.clock), [])
        self.connection.advance(300, step=30)
        self.assertEqual(len(requests_by_method(self.client, "Shelly.GetStatus")), 1)

    def test_polling_stops_after_server_side_close(self) -> None:
        """The same when the connection is dropped from the server's side."""
        self.connection.server.sendClose(code=3000, reason="bye")
        self.flush_all()
        self.assertEqual(self.client.closed, (True, 3000, "bye"))
        self.assertEqual(self.connection.server.state, WebSocketProtocol.STATE_CLOSED)
        self.assertEqual(pollers(self.harness.clock), [])


class NoPollingTests(DeviceCase):
    poll_interval = 0.0

    def test_no_polling(self) -> None:
        self.name_device()
        self.connection.advance(600, step=5)
        self.assertEqual(
            [m["method"] for m in self.client.json_messages()],
            ["NotifyStatus", "Shelly.GetStatus"],
        )
        self.assertEqual(pollers(self.harness.clock), [])
        self.assert_still_open()


class StatusTests(DeviceCase):
    """Frames in, readings out."""

    def test_full_status(self) -> None:
        self.send(full_status())
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])
        self.assertEqual(self.connection.server.device_id, DEVICE)
        # The values of the switch components are kept; nothing else (not ts, not sys) is.
        switches = self.connection.server.status.switches
        self.assertEqual(switches, {f"switch:{n}": PRO4PM_VALUES[n] for n in range(4)})

    def test_full_status_plus1pm(self) -> None:
        device = fixture_device_id(PLUS1PM)
        self.send(notify({"ts": 7.5, **fixture_status(PLUS1PM)}, method="NotifyFullStatus",
                         src=device))
        self.assertEqual(
            self.sink.calls,
            [("readings", device,
              {0: ChannelValues(apower=0.0, voltage=232.8, current=0.0, energy_total=110.046)})],
        )

    def test_partial_merges(self) -> None:
        self.send(full_status())
        self.send(notify({"ts": 1764403215.4,
                                          "switch:0": {"id": 0, "apower": 433.1}}))
        self.assertEqual(len(self.sink.readings_calls), 2)
        expected = dict(PRO4PM_VALUES)
        expected[0] = ChannelValues(apower=433.1, voltage=121.7, current=0.0, energy_total=0.0)
        self.assertEqual(self.last_readings(), expected)
        # Nested objects merge too: a new total keeps nothing else from changing.
        self.send(notify({"switch:0": {"id": 0, "aenergy": {
            "by_minute": [120.4, 7198.3, 6879.1], "minute_ts": 1764403260, "total": 10439.316}}}))
        expected[0] = ChannelValues(apower=433.1, voltage=121.7, current=0.0,
                                    energy_total=10439.316)
        self.assertEqual(self.last_readings(), expected)
        self.send(notify({"switch:3": {"current": 1.91}}))
        expected[3] = ChannelValues(apower=0.0, voltage=121.8, current=1.91, energy_total=0.0)
        self.assertEqual(self.last_readings(), expected)

    def test_partial_before_full(self) -> None:
        """A partial first is all that is known."""
        self.send(notify({"switch:1": {"id": 1, "apower": 12.0}}))
        self.assertEqual(
            self.sink.calls,
            [("readings", DEVICE,
              {1: ChannelValues(apower=12.0, voltage=None, current=None, energy_total=None)})],
        )

    def test_method_case_insensitive(self) -> None:
        self.send(notify({"switch:0": {"apower": 3.0}}, method="notifystatus"))
        self.assertEqual(
            self.last_readings(),
            {0: ChannelValues(apower=3.0, voltage=None, current=None, energy_total=None)},
        )

    def test_null_deletes(self) -> None:
        self.send(full_status())
        self.send(notify({"switch:0": {"id": 0, "voltage": None}}))
        readings = self.last_readings()
        self.assertEqual(
            readings[0], ChannelValues(apower=0.0, voltage=None, current=0.0, energy_total=0.0)
        )
        self.assertEqual(readings[1], PRO4PM_VALUES[1])
        # A whole component set to null is gone.
        self.send(notify({"switch:1": None}))
        self.assertEqual(sorted(self.last_readings()), [0, 2, 3])

    def test_device_status_unwrapped(self) -> None:
        self.send(notify({"ts": 1.0, "device_status": {"ts": 2.0, **fixture_status(PRO4PM)}},
                         method="NotifyFullStatus"))
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])
        self.send(notify({"device_status": {"switch:2": {"apower": 99.5}}}))
        expected = dict(PRO4PM_VALUES)
        expected[2] = ChannelValues(apower=99.5, voltage=121.8, current=0.0, energy_total=0.0)
        self.assertEqual(self.last_readings(), expected)

    def test_get_status_result_replaces(self) -> None:
        self.send(full_status())
        get_status_id = self.request_id("Shelly.GetStatus")
        self.send({"id": get_status_id, "src": DEVICE, "dst": "shellylog", "result": {
            "switch:0": {"id": 0, "apower": 250.0, "aenergy": {"total": 5.5}},
            "sys": {"uptime": 10},
        }})
        # switch:1..3 and switch:0's voltage and current are gone.
        self.assertEqual(
            self.last_readings(),
            {0: ChannelValues(apower=250.0, voltage=None, current=None, energy_total=5.5)},
        )
        self.assertEqual(
            self.connection.server.status.switches,
            {"switch:0": ChannelValues(250.0, None, None, 5.5)},
        )

    def test_get_status_answered_once(self) -> None:
        """A second answer to the same id is no longer a status."""
        get_status_id = self.request_id("Shelly.GetStatus")
        answer = {"id": get_status_id, "src": DEVICE, "result": {"switch:0": {"apower": 1.0}}}
        self.send(answer)
        self.assertEqual(len(self.sink.readings_calls), 1)
        answer["result"] = {"switch:0": {"apower": 2.0}}
        self.send(answer)
        self.assertEqual(len(self.sink.readings_calls), 1)
        self.assertEqual(self.last_readings()[0].apower, 1.0)

    def test_result_to_other_request_is_not_status(self) -> None:
        self.send(full_status())
        notify_id = self.request_id("NotifyStatus")
        self.send({"id": notify_id, "src": DEVICE, "result": {"switch:0": {"apower": 500.0}}})
        self.send({"id": 4711, "src": DEVICE, "result": {"switch:0": {"apower": 600.0}}})
        self.send({"id": "x", "src": DEVICE, "result": None})
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])
        self.assertEqual(self.factory.registry.rejected, {})

    def test_get_status_result_not_object(self) -> None:
        get_status_id = self.request_id("Shelly.GetStatus")
        self.send({"id": get_status_id, "src": DEVICE, "result": None})
        self.assertEqual(self.sink.readings_calls, [])
        self.assertEqual(self.factory.registry.rejected, {"bad_result": 1})
        self.assert_still_open()

    def test_notify_status_error_is_expected(self) -> None:
        """Every device refuses NotifyStatus: counted, not logged (twistd logs debug too)."""
        events = capture_log(self)
        notify_id = self.request_id("NotifyStatus")
        self.send({"id": notify_id, "src": DEVICE, "dst": "shellylog",
                   "error": {"code": -114, "message": "Method NotifyStatus failed: not found"}})
        self.assertEqual([e["event"] for e in events
                          if e.get("log_namespace") == "shellylog.protocol"],
                         ["device_connected"])
        self.assertEqual(self.factory.registry.received["error"], 1)
        self.assertEqual(self.sink.readings_calls, [])
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_still_open()

    def test_get_status_error_is_warning(self) -> None:
        events = capture_log(self)
        get_status_id = self.request_id("Shelly.GetStatus")
        self.send({"id": get_status_id, "src": DEVICE, "dst": "shellylog",
                   "error": {"code": -103, "message": "Resource unavailable"}})
        warnings = warnings_from(events)
        self.assertEqual(len(warnings), 1)
        self.assertIn("Shelly.GetStatus", warnings[0])
        self.assertIn(DEVICE, warnings[0])
        self.assertIn("-103", warnings[0])
        self.assertIn("Resource unavailable", warnings[0])
        self.assertNotIn("NotifyStatus", warnings[0])
        self.assert_still_open()

    def test_notify_event_no_readings(self) -> None:
        self.send(notify({"ts": 1764403300.2, "events": [
            {"component": "sys", "event": "scheduled_restart", "time_ms": 996,
             "ts": 1764403300.2}]}, method="NotifyEvent"))
        self.assertEqual(self.sink.calls, [])
        # It does identify the device.
        self.assertEqual(list(self.factory.registry.devices), [DEVICE])
        self.send(full_status())
        self.send(notify({"events": [{"component": "input:0", "event": "single_push"}]},
                         method="NotifyEvent"))
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])

    def test_unmetered(self) -> None:
        device = fixture_device_id(PRO3)
        self.send(notify({"ts": 3.0, **fixture_status(PRO3)}, method="NotifyFullStatus",
                         src=device))
        nothing = ChannelValues(apower=None, voltage=None, current=None, energy_total=None)
        self.assertEqual(self.sink.calls,
                         [("readings", device, {0: nothing, 1: nothing, 2: nothing})])

    def test_no_switches(self) -> None:
        """The Pro 3EM has no switch: nothing to log."""
        device = fixture_device_id("pro3em-fw1.1.0.json")
        self.send(notify(fixture_status("pro3em-fw1.1.0.json"), method="NotifyFullStatus",
                         src=device))
        self.assertEqual(self.sink.calls, [])
        self.assertEqual(list(self.factory.registry.devices), [device])


class ChannelSelectionTests(DeviceCase):
    channels = (1, 2)

    def test_only_configured_channels(self) -> None:
        self.send(full_status())
        self.assertEqual(
            self.sink.calls, [("readings", DEVICE, {1: PRO4PM_VALUES[1], 2: PRO4PM_VALUES[2]})]
        )

    def test_other_channels_give_nothing(self) -> None:
        device = fixture_device_id(PLUS1PM)
        self.send(notify(fixture_status(PLUS1PM), method="NotifyFullStatus", src=device))
        self.send(notify({"switch:0": {"apower": 40.0}}, src=device))
        self.send(notify({"switch:3": {"apower": 40.0}}, src=device))
        self.assertEqual(self.sink.calls, [])


#: Unusable frames, each with the reason it is counted under.
GARBAGE: list[tuple[str, str | bytes, bool]] = [
    ("not_json", "this is not json {", False),
    ("not_object", json.dumps([notify({"switch:0": {"apower": 1}})]), False),
    ("bad_params", json.dumps(notify("switch:0")), False),
    ("bad_component", json.dumps(notify({"switch:0": [1, 2]})), False),
    ("bad_component", json.dumps(notify({"switch:0": "on"}, method="NotifyFullStatus")), False),
    ("binary", json.dumps(notify({"switch:0": {"apower": 1}})).encode(), True),
    ("bad_src", json.dumps(notify({"switch:0": {"apower": 1}}, src="../etc")), False),
    ("bad_src", json.dumps(notify({"switch:0": {"apower": 1}}, src="a b")), False),
    ("bad_src", json.dumps({"method": "NotifyStatus", "params": {}}), False),
    ("bad_method", json.dumps({"src": DEVICE, "method": 7}), False),
    ("unknown_shape", json.dumps({"src": DEVICE, "id": 1}), False),
    ("too_deep", '{"src":"x","method":"M","params":' + "[" * 1990 + "]" * 1990 + "}", False),
    ("too_many_values", '{"src":"x","method":"M","params":' + "[" * 100000 + "]" * 100000 + "}",
     False),
]


class GarbageTests(DeviceCase):
    """Unusable frames are dropped and counted; the connection carries on."""

    def send_raw(self, payload: str | bytes, binary: bool) -> None:
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        self.client.sendMessage(data, isBinary=binary)
        self.flush_all()

    def assert_dropped_keeps_status(self, reason: str, payload: str | bytes, binary: bool,
                                    bound: bool) -> None:
        """
        One C{payload} is dropped and counted once under C{reason}: the device's status is
        what it was, and its connection carries on.
        """
        if bound:
            self.send(full_status())
        before = len(self.sink.calls)
        status_before = dict(self.connection.server.status.switches)
        self.send_raw(payload, binary)
        self.assertEqual(len(self.sink.calls), before)
        self.assertEqual(self.factory.registry.rejected, {reason: 1})
        self.assertEqual(self.connection.server.rejected, {reason: 1})
        self.assertEqual(self.connection.server.status.switches, status_before)
        self.assert_still_open()
        # The same connection still works.
        self.send(notify({"switch:0": {"apower": 321.0}}))
        self.assertEqual(self.sink.readings_calls[-1][0], DEVICE)
        self.assertEqual(self.sink.readings_calls[-1][1][0].apower, 321.0)
        self.assertEqual(list(self.factory.registry.devices), [DEVICE])

    def test_each_before_binding(self) -> None:
        for reason, payload, binary in GARBAGE:
            with self.subTest(reason=reason, payload=payload[:60]):
                self.fresh_device()
                self.assert_dropped_keeps_status(reason, payload, binary, bound=False)

    def test_each_after_binding(self) -> None:
        for reason, payload, binary in GARBAGE:
            with self.subTest(reason=reason, payload=payload[:60]):
                self.fresh_device()
                self.assert_dropped_keeps_status(reason, payload, binary, bound=True)

    def test_src_mismatch(self) -> None:
        self.send(full_status())
        self.send(notify({"switch:0": {"apower": 777.0}}, src="shellypro4pm-001122334455"))
        self.assertEqual(self.factory.registry.rejected, {"src_mismatch": 1})
        self.assertEqual(self.connection.server.rejected, {"src_mismatch": 1})
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])
        self.assertEqual(list(self.factory.registry.devices), [DEVICE])
        self.assertEqual(self.connection.server.device_id, DEVICE)
        self.assert_still_open()
        self.send(notify({"switch:0": {"apower": 5.0}}))
        self.assertEqual(self.last_readings()[0].apower, 5.0)

    def test_bad_src_does_not_bind(self) -> None:
        self.send(notify({"switch:0": {"apower": 1.0}}, src="evil\nid"))
        self.assertIsNone(self.connection.server.device_id)
        self.assertEqual(self.factory.registry.devices, {})
        self.send(notify({"switch:0": {"apower": 2.0}}))
        self.assertEqual(self.connection.server.device_id, DEVICE)
        self.assertEqual(self.last_readings()[0].apower, 2.0)

    def test_bad_component_changes_nothing(self) -> None:
        """A frame with one bad switch leaves the good ones of it unapplied too."""
        self.send(full_status())
        self.send(notify({"switch:0": {"apower": 50.0}, "switch:1": 3}))
        self.assertEqual(self.sink.calls, [("readings", DEVICE, PRO4PM_VALUES)])
        self.assertEqual(self.factory.registry.rejected, {"bad_component": 1})

    def test_flood_logs_once(self) -> None:
        events = capture_log(self)
        for i in range(100):
            self.client.send_text(f"garbage {i}")
        self.flush_all()
        self.assertEqual(self.factory.registry.rejected, {"not_json": 100})
        self.assertEqual(self.connection.server.rejected, {"not_json": 100})
        dropped = [w for w in warnings_from(events) if "dropped a frame" in w]
        self.assertEqual(len(dropped), 1)
        # Another reason gets its own single warning.
        for _ in range(10):
            self.client.send_json([])
        self.flush_all()
        dropped = [w for w in warnings_from(events) if "dropped a frame" in w]
        self.assertEqual(len(dropped), 2)
        self.assertEqual(self.factory.registry.rejected, {"not_json": 100, "not_object": 10})
        self.assert_still_open()
        self.send(notify({"switch:0": {"apower": 8.0}}))
        self.assertEqual(self.last_readings()[0].apower, 8.0)
        # On close, one summary.
        self.client.sendClose(code=1000)
        self.flush_all()
        summaries = [w for w in warnings_from(events) if "were rejected" in w]
        self.assertEqual(len(summaries), 1)
        self.assertIn("110 frames", summaries[0])

    def test_counted_over_connections(self) -> None:
        self.send_text("nope")
        other, other_connection = self.harness.connect_ws("/ws")
        other.send_text("nope either")
        other_connection.flush()
        self.assertEqual(self.factory.registry.rejected, {"not_json": 2})
        self.assertEqual(self.connection.server.rejected, {"not_json": 1})
        self.assertEqual(other_connection.server.rejected, {"not_json": 1})

    def test_unsafe_src_not_logged_raw(self) -> None:
        events = capture_log(self)
        self.send(notify({}, src="x\n" + "y" * 500))
        warnings = warnings_from(events)
        self.assertEqual(len(warnings), 1)
        self.assertNotIn("\n", warnings[0])
        self.assertNotIn("y" * 100, warnings[0])


class BindingTests(DeviceCase):
    """Which connection speaks for which device."""

    def test_bound_on_first_frame(self) -> None:
        self.assertEqual(self.factory.registry.devices, {})
        self.send(notify({}, method="NotifyEvent"))
        self.assertEqual(self.factory.registry.devices, {DEVICE: self.connection.server})
        self.assertEqual(self.connection.server.device_id, DEVICE)

    def test_close_unbinds(self) -> None:
        self.send(full_status())
        self.client.sendClose(code=1000)
        self.flush_all()
        self.assertEqual(self.sink.calls[-1:], [("disconnected", DEVICE, None)])
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])
        self.assertEqual(self.factory.registry.devices, {})

    def test_dropped_connection_unbinds(self) -> None:
        """A socket lost without a close handshake counts as a disconnect too."""
        self.send(full_status())
        self.connection.client_transport.loseConnection()
        self.flush_all()
        self.assertIsNotNone(self.client.closed)
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])
        self.assertEqual(self.factory.registry.devices, {})

    def test_unbound_close_no_disconnect(self) -> None:
        self.client.sendClose(code=1000)
        self.flush_all()
        self.assertEqual(self.sink.calls, [])

    def test_two_devices(self) -> None:
        self.send(full_status())
        other_id = fixture_device_id(PLUS1PM)
        other, other_connection = self.harness.connect_ws("/ws/")
        other.send_json(notify(fixture_status(PLUS1PM), method="NotifyFullStatus", src=other_id))
        other_connection.flush()
        self.assertEqual(
            self.factory.registry.devices,
            {DEVICE: self.connection.server, other_id: other_connection.server},
        )
        self.assertEqual(self.sink.disconnected_calls, [])
        other.sendClose(code=1000)
        other_connection.flush()
        self.assertEqual(self.sink.disconnected_calls, [other_id])
        self.assertEqual(self.factory.registry.devices, {DEVICE: self.connection.server})
        self.assert_still_open()

    def test_reconnect_replaces(self) -> None:
        old_server = self.connection.server
        self.send(full_status())
        new, new_connection = self.harness.connect_ws("/ws")
        new.send_json(notify({"switch:0": {"apower": 10.0}}))
        new_connection.flush()
        new_server = new_connection.server
        self.assertIsNot(new_server, old_server)
        # The old connection is asked to close (its client sees code 1000) ...
        self.flush_all()
        assert self.client.closed is not None
        was_clean, code, _reason = self.client.closed
        self.assertEqual(code, 1000)
        self.assertTrue(was_clean)
        self.assertEqual(old_server.state, WebSocketProtocol.STATE_CLOSED)
        # ... the device's earlier readings were ended exactly once ...
        self.assertEqual(
            self.sink.calls,
            [
                ("readings", DEVICE, PRO4PM_VALUES),
                ("disconnected", DEVICE, None),
                ("readings", DEVICE,
                 {0: ChannelValues(apower=10.0, voltage=None, current=None,
                                   energy_total=None)}),
            ],
        )
        # ... and the old connection's close left the new binding alone.
        self.assertEqual(self.factory.registry.devices, {DEVICE: new_server})
        self.assertEqual(new.closed, None)
        self.assertEqual(new_server.state, WebSocketProtocol.STATE_OPEN)
        # The new connection's own close ends the device.
        new.sendClose(code=1000)
        new_connection.flush()
        self.assertEqual(self.sink.disconnected_calls, [DEVICE, DEVICE])
        self.assertEqual(self.factory.registry.devices, {})

    def test_old_connection_lost_late(self) -> None:
        """The old socket dies (no close handshake) after the new one took over."""
        self.send(full_status())
        new, new_connection = self.harness.connect_ws("/ws")
        new.send_json(notify({}, method="NotifyEvent"))
        new_connection.flush()
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])
        # The old device side vanishes before answering the close.
        self.connection.client_transport.loseConnection()
        self.flush_all()
        self.assertEqual(self.connection.server.state, WebSocketProtocol.STATE_CLOSED)
        self.assertEqual(self.sink.disconnected_calls, [DEVICE])
        self.assertEqual(self.factory.registry.devices, {DEVICE: new_connection.server})

    def test_stale_frames_from_replaced_connection(self) -> None:
        """
        What the old connection still delivers while it closes does not reach the sink:
        the device's readings now come from the new connection only.
        """
        self.send(full_status())
        new, new_connection = self.harness.connect_ws("/ws")
        new.send_json(notify({"switch:0": {"apower": 10.0}}))
        # The old device side sends before it has seen the server's close frame.
        self.client.send_json(notify({"switch:0": {"apower": 99.0}}))
        new_connection.pump.pump()  # the new connection binds; the old one is closing
        self.assertIsInstance(self.connection.server, ShellyServerProtocol)
        self.assertEqual(self.connection.server.state, WebSocketProtocol.STATE_CLOSING)
        self.flush_all()
        new_connection.flush()
        self.assertEqual(
            self.sink.calls,
            [
                ("readings", DEVICE, PRO4PM_VALUES),
                ("disconnected", DEVICE, None),
                ("readings", DEVICE,
                 {0: ChannelValues(apower=10.0, voltage=None, current=None,
                                   energy_total=None)}),
            ],
        )
        self.assertEqual(self.factory.registry.devices, {DEVICE: new_connection.server})

    def test_same_connection_rebind_is_noop(self) -> None:
        self.send(full_status())
        self.send(notify({"switch:0": {"apower": 1.5}}))
        self.assertEqual(self.sink.disconnected_calls, [])
        self.assertEqual(self.factory.registry.devices, {DEVICE: self.connection.server})
        self.assert_still_open()


class CloseOnStopTests(SynchronousTestCase):
    """A stopping server closes every device connection with 1001, and waits for them."""

    def setUp(self) -> None:
        self.harness = Harness(self)
        self.factory = self.harness.factory
        self.bound, self.bound_connection = self.harness.connect_ws("/ws")
        self.bound.send_json(notify({"switch:0": {"apower": 50.0}}))
        self.unbound, _ = self.harness.connect_ws("/ws")
        self.harness.flush()
        self.service = CloseOnStop(self.factory.registry, self.harness.clock, timeout=5)
        self.service.startService()

    def test_closed_with_going_away(self) -> None:
        stopped = self.service.stopService()
        self.harness.flush()
        self.assertEqual(self.successResultOf(stopped), None)
        for client in (self.bound, self.unbound):
            self.assertEqual(client.closed, (True, 1001, "server stopping"))
        self.assertEqual(self.factory.registry.open_connections, set())
        self.assertEqual(self.factory.registry.devices, {})
        self.assertEqual(self.harness.sink.disconnected_calls, [DEVICE])

    def test_waits_for_a_silent_peer(self) -> None:
        """A peer that does not answer the close is dropped by Autobahn's timer."""
        self.unbound.dataReceived = lambda data: None  # type: ignore[method-assign]
        stopped = self.service.stopService()
        self.harness.flush()
        self.assertNoResult(stopped)
        self.assertEqual(self.bound.closed, (True, 1001, "server stopping"))
        self.harness.advance(3)
        self.assertEqual(self.successResultOf(stopped), None)
        self.assertEqual(self.factory.registry.open_connections, set())

    def test_slow_answer_is_clean(self) -> None:
        """
        A peer that answers the close after 1.9 s, its close begun just before a whole
        second, still closes cleanly: Autobahn's timers fire at the whole second after
        now + delay, so its default of 1 s would drop it at once.
        """
        self.harness.clock.advance(0.999)
        held: list[bytes] = []
        receive = self.unbound.dataReceived

        def hold(data: bytes) -> None:
            held.append(data)

        self.unbound.dataReceived = hold  # type: ignore[method-assign]
        stopped = self.service.stopService()
        self.harness.advance(1.9, step=0.1)
        self.assertEqual(self.unbound.closed, None)
        for data in held:
            receive(data)
        self.harness.flush()
        self.assertEqual(self.successResultOf(stopped), None)
        self.assertEqual(self.unbound.closed, (True, 1001, "server stopping"))

    def test_gives_up_after_its_timeout(self) -> None:
        events = capture_log(self)
        # Autobahn's own close timer is longer than the service's here.
        self.factory.setProtocolOptions(closeHandshakeTimeout=60, allowNullOrigin=True)
        stuck, _ = self.harness.connect_ws("/ws")
        stuck.dataReceived = lambda data: None  # type: ignore[method-assign]
        stopped = self.service.stopService()
        self.harness.advance(4)
        self.assertNoResult(stopped)
        self.harness.advance(1)
        self.assertEqual(self.successResultOf(stopped), None)
        (late,) = [e for e in events if e.get("event") == "close_timeout"]
        self.assertEqual(late["count"], 1)

    def test_nothing_open(self) -> None:
        for client in (self.bound, self.unbound):
            client.sendClose(1000)
        self.harness.flush()
        self.assertEqual(self.successResultOf(self.service.stopService()), None)
