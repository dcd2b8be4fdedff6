"""
Hardening: what a misbehaving peer costs, and that it costs nobody else anything.

Every case here runs against the real site with a second, well-behaved device connected in
the same harness. After the abuse that device still gets its readings through, whatever the
abuser already delivered is kept, the rejection is counted by reason in
the registry's C{rejected}, and it is logged once, with the peer, however often it is
repeated.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from shellylog.admission import Admission, TokenRule
from shellylog.config import Limits
from shellylog.csvlog import HEADER
from shellylog.logbudget import LogBudget
from shellylog.protocol import CloseOnStop
from shellylog.status import ChannelValues
from shellylog.web import REQUEST_TIMEOUT, access_log_line
from tests.support.frames import DEVICE, fixture_device_id, notify
from tests.support.logs import capture_log
from tests.support.stack import T0, Stack
from tests.support.wire import (
    BufferedTransport,
    Connection,
    Harness,
    RawClient,
    RecordingClient,
    raw_get,
    raw_upgrade,
)

#: The well-behaved device of every test (unless a test needs another one).
GOOD = fixture_device_id("plus1pm-fw1.1.0.json")
#: The misbehaving device.
BAD = DEVICE
#: What the misbehaving device delivered before it misbehaved.
EARLY_POWER = 42.0

OPEN = WebSocketProtocol.STATE_OPEN
CLOSED = WebSocketProtocol.STATE_CLOSED


def power_frame(apower: float, src: str = BAD) -> dict[str, Any]:
    return notify({"switch:0": {"apower": apower}}, src=src)


def raw_notify(params: str, src: str = BAD, method: str = "NotifyStatus") -> str:
    """A notification with C{params} given as JSON text, exactly as written."""
    return '{"src":' + json.dumps(src) + ',"method":"' + method + '","params":' + params + "}"


def sized_frame(size: int, src: str = BAD, apower: float = 7.0) -> bytes:
    """A NotifyStatus of exactly C{size} bytes (padded with an ignored component)."""
    base = json.dumps(notify({"switch:0": {"apower": apower}, "pad": ""}, src=src))
    assert len(base) <= size, (len(base), size)
    padded = {"switch:0": {"apower": apower}, "pad": "x" * (size - len(base))}
    frame = json.dumps(notify(padded, src=src)).encode("utf-8")
    assert len(frame) == size
    return frame


def warn_events(events: list[LogEvent]) -> list[LogEvent]:
    """Warnings (or worse) logged by shellylog itself."""
    return [
        e for e in events
        if str(e.get("log_namespace", "")).startswith("shellylog")
        and e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)
    ]


class HardeningCase(SynchronousTestCase):
    """
    A harness with one well-behaved device connected and reporting; helpers to connect
    the misbehaving one and to check that nothing spilled over.
    """

    limits: Limits | None = None
    admission: Admission | None = None
    good_id = GOOD
    good_path = "/ws"

    def setUp(self) -> None:
        self.fresh_harness()

    def fresh_harness(self) -> Harness:
        """
        A new harness (and log) with the good device connected and reporting, which this
        case's C{harness}, C{good} and the rest are from then on: each case of a C{subTest}
        loop starts from its own.
        """
        self.events = capture_log(self)
        self.harness = Harness(self, limits=self.limits, admission=self.admission)
        self.factory = self.harness.factory
        self.sink = self.harness.sink
        self.good, self.good_connection = self.harness.connect_ws(
            self.good_path, protocols=["json-rpc"]
        )
        self.assertTrue(self.good.opened)
        self.good_power = 100.0
        self.assert_good_served()
        return self.harness

    # -- the well-behaved device --------------------------------------------------------

    def assert_good_served(self) -> None:
        """The good device is connected and a new reading of it reaches the sink."""
        self.good_power += 1.0
        self.good.send_json(power_frame(self.good_power, self.good_id))
        self.harness.flush()
        self.assertIsNone(self.good.closed)
        self.assertEqual(self.good_connection.server.state, OPEN)
        device_id, values = self.sink.readings_calls[-1]
        self.assertEqual((device_id, values[0].apower), (self.good_id, self.good_power))
        self.assertIs(self.factory.registry.devices.get(self.good_id), self.good_connection.server)
        self.assertNotIn(self.good_id, self.sink.disconnected_calls)
        self.assertEqual(self.good_connection.server.rejected, {})

    # -- the misbehaving device ---------------------------------------------------------

    def connect_bad(
        self, path: str = "/ws", device: str | None = BAD
    ) -> tuple[RecordingClient, Connection]:
        """Connect the misbehaving device; unless C{device} is None, it reports once."""
        client, connection = self.harness.connect_ws(path, protocols=["json-rpc"])
        self.assertTrue(client.opened)
        if device is not None:
            client.send_json(power_frame(EARLY_POWER, device))
            self.harness.flush()
            self.assertEqual(self.readings_of(device)[-1][0].apower, EARLY_POWER)
        return client, connection

    def readings_of(self, device: str) -> list[dict[int, ChannelValues]]:
        return [v for d, v in self.sink.readings_calls if d == device]

    def assert_bad_kept(self, device: str = BAD, closed: bool = True) -> None:
        """
        What the misbehaving device delivered before is still there, in order; once its
        connection is gone, the device's end reached the sink exactly once, after it.
        """
        calls = [(kind, values) for kind, d, values in self.sink.calls if d == device]
        self.assertEqual(calls[0], ("readings", {0: ChannelValues(EARLY_POWER, None, None,
                                                                  None)}))
        if closed:
            self.assertEqual([kind for kind, _ in calls].count("disconnected"), 1)
            self.assertEqual(calls[-1][0], "disconnected")
            self.assertNotIn(device, self.factory.registry.devices)
        else:
            self.assertNotIn("disconnected", [kind for kind, _ in calls])

    def assert_close_code(self, client: RecordingClient, connection: Connection,
                          code: int) -> None:
        self.harness.flush()
        self.assertIsNotNone(client.closed, "the client saw no close")
        assert client.closed is not None
        self.assertEqual(client.closed[1], code, client.closed)
        self.assertEqual(connection.server.state, CLOSED)

    def assert_still_open(self, client: RecordingClient, connection: Connection) -> None:
        self.assertIsNone(client.closed)
        self.assertEqual(connection.server.state, OPEN)

    # -- the log ------------------------------------------------------------------------

    def assert_logged_once(self, fragment: str, peer: str | None) -> str:
        """Exactly one shellylog warning contains C{fragment}; it names C{peer}."""
        assert peer is not None
        texts = [formatEvent(e) for e in warn_events(self.events)]
        matching = [t for t in texts if fragment in t]
        self.assertEqual(len(matching), 1, texts)
        self.assertIn(peer, matching[0])
        return matching[0]

    def assert_no_traceback(self) -> None:
        self.assertEqual(
            [e for e in self.events if e.get("log_failure") is not None
             or e.get("log_level") in (LogLevel.error, LogLevel.critical)],
            [],
        )


class DroppedFrameCase(HardeningCase):
    """Frames that are dropped while the connection carries on."""

    def assert_dropped_warns_once(self, payload: bytes | str, reason: str, repeat: int = 3,
                                  binary: bool = False) -> str:
        """
        Send C{payload} C{repeat} times from a device that already reported: each one is
        dropped and counted under C{reason}; the one warning is returned.
        """
        client, connection = self.connect_bad()
        server = connection.server
        before = list(self.sink.calls)
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        for _ in range(repeat):
            client.sendMessage(data, isBinary=binary)
        self.harness.flush()
        self.assertEqual(self.sink.calls, before)
        self.assertEqual(self.factory.registry.rejected, {reason: repeat})
        self.assertEqual(server.rejected, {reason: repeat})
        drops = [e for e in warn_events(self.events) if e.get("reason") == reason]
        self.assertEqual(len(drops), 1)
        text = formatEvent(drops[0])
        self.assertIn(server.peer, text)
        self.assert_no_traceback()
        # The abuser's connection carries on, and so does everyone else.
        self.assert_still_open(client, connection)
        client.send_json(power_frame(43.0))
        self.harness.flush()
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 43.0)
        self.assert_bad_kept(closed=False)
        self.assert_good_served()
        return text


class MalformedJsonTests(DroppedFrameCase):
    """Text that is not a usable JSON object: dropped, never a crash."""

    def test_text_not_json_flood(self) -> None:
        self.assert_dropped_warns_once("{not json", "not_json")

    def test_json_not_an_object(self) -> None:
        self.assert_dropped_warns_once('"just a string"', "not_object")

    def test_params_a_string(self) -> None:
        self.assert_dropped_warns_once(json.dumps(notify("switch:0")), "bad_params")

    def test_switch_a_list(self) -> None:
        self.assert_dropped_warns_once(json.dumps(notify({"switch:0": [1, 2]})), "bad_component")

    def test_nesting_deeper_than_json_recursion(self) -> None:
        """
        Deep enough for C{json} itself to raise L{RecursionError} (and within
        MAX_VALUES: deeper still is refused before parsing, as too_many_values).
        """
        depth = 1990
        self.assert_dropped_warns_once('{"src":"x","method":"M","params":{"a":' + "[" * depth
                                       + "]" * depth + "}}", "too_deep")

    def test_nested_objects_json_accepts(self) -> None:
        """
        Objects nested a few hundred deep: C{json} parses them, but merging such a status
        would recurse past the interpreter's limit. Dropped as too deep, with one warning
        and no traceback, and the status is left as it was.
        """
        depth = 600
        deep = '{"a":' * depth + "1" + "}" * depth
        text = raw_notify('{"switch:0":{"apower":999,"x":' + deep + "}}")
        self.assert_dropped_warns_once(text, "too_deep")

    def test_nested_objects_in_other_component(self) -> None:
        depth = 600
        deep = '{"a":' * depth + "1" + "}" * depth
        text = raw_notify('{"sys":' + deep + ',"switch:0":{"apower":999}}',
                          method="NotifyFullStatus")
        self.assert_dropped_warns_once(text, "too_deep")

    def test_integer_too_long_for_python(self) -> None:
        """An integer literal beyond Python's digit limit does not parse: not JSON."""
        self.assert_dropped_warns_once(raw_notify('{"switch:0":{"apower":' + "9" * 5000 + "}}"),
                                       "not_json")

    def test_duplicate_keys_dropped(self) -> None:
        """
        Two values for one key: which one the sender meant is unknown, so the frame is
        dropped, whether the key is C{src} or a value.
        """
        text = '{"src":"evil\\nid",' + raw_notify('{"switch:0":{"apower":1.0}}')[1:]
        self.assert_dropped_warns_once(text, "duplicate_key")

    def test_duplicate_value_keys_dropped(self) -> None:
        self.assert_dropped_warns_once(raw_notify('{"switch:0":{"apower":1.0,"apower":2.0}}'),
                                       "duplicate_key")

    def test_invalid_json_flood_then_other_reason(self) -> None:
        """A second reason gets its own single warning; both are counted."""
        self.assert_dropped_warns_once("{", "not_json", repeat=50)
        client = self.harness.connections[-1].client
        for _ in range(5):
            client.send_text("[]")
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {"not_json": 50, "not_object": 5})
        self.assertEqual(len([e for e in warn_events(self.events)
                              if e.get("reason") == "not_object"]), 1)


def tiny_objects(size: int, separator: str = ",") -> str:
    """A status of at most C{size} bytes whose one extra component is a list of C{{}}."""
    head = raw_notify('{"switch:0":{"apower":999},"x":[')[:-1]
    n = (size - len(head) - 3 + len(separator)) // (2 + len(separator))
    return head + separator.join(["{}"] * n) + "]}}"


class ValueLimitTests(DroppedFrameCase):
    """A frame of more than MAX_VALUES (2,000) JSON values: dropped before it is parsed."""

    def test_tiny_objects_dropped(self) -> None:
        """The attack: 256 KiB of empty objects, within every other limit."""
        text = tiny_objects(256 * 1024)
        self.assertGreater(len(text), 256 * 1024 - 3)
        detail = self.assert_dropped_warns_once(text, "too_many_values")
        # The frame, src, method, params, switch:0, apower, x, and the objects.
        self.assertIn(f"{7 + text.count('{}')} JSON values, more than 2000", detail)

    def test_tiny_objects_for_the_exact_decoder_dropped(self) -> None:
        self.assert_dropped_warns_once(tiny_objects(256 * 1024, ", "), "too_many_values")

    def test_at_the_limit_used(self) -> None:
        client, connection = self.connect_bad()
        # The frame, src, method, params, switch:0, apower, x and 1,993 objects.
        text = tiny_objects(len(raw_notify('{"switch:0":{"apower":999},"x":[]}'))
                            + 1993 * 3 - 1)
        self.assertEqual(text.count("{}"), 1993)
        client.send_text(text)
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 999)
        client.send_text(text.replace("[{}", "[{},{}"))
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {"too_many_values": 1})
        self.assert_still_open(client, connection)
        self.assert_good_served()


class InternalErrorTests(HardeningCase):
    """
    An error of our own while handling a frame (here: the sink raises) drops that frame;
    its traceback is logged once per connection, not once per frame.
    """

    def test_sink_error(self) -> None:
        client, connection = self.connect_bad()
        sink = self.sink

        class FailingForBad:
            def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
                if device_id == BAD:
                    raise RuntimeError("sink broke")
                sink.readings(device_id, values)

            def disconnected(self, device_id: str) -> None:
                sink.disconnected(device_id)

            def forget(self, device_id: str) -> bool:
                return sink.forget(device_id)

        self.factory.registry.sink = FailingForBad()
        for i in range(5):
            client.send_json(power_frame(float(i)))
        self.harness.flush()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.factory.registry.rejected, {"internal": 5})
        self.assertEqual(len([e for e in warn_events(self.events)
                              if e.get("reason") == "internal"]), 1)
        self.assert_still_open(client, connection)
        self.assert_bad_kept(closed=False)
        self.assert_good_served()


class NumberTests(HardeningCase):
    """Numbers JSON allows but a row cannot hold: the value is missing, the frame is used."""

    def send_raw(self, text: str) -> RecordingClient:
        client, _connection = self.connect_bad()
        client.send_text(text)
        self.harness.flush()
        return client

    def test_huge_exponent_is_missing(self) -> None:
        self.send_raw(raw_notify('{"switch:0":{"apower":1e999,"voltage":230.5,'
                                 '"current":-1e999,"aenergy":{"total":1E400}}}'))
        self.assertEqual(self.readings_of(BAD)[-1],
                         {0: ChannelValues(apower=None, voltage=230.5, current=None,
                                           energy_total=None)})
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_no_traceback()
        self.assert_good_served()

    def test_nan_and_infinity_literals_are_missing(self) -> None:
        self.send_raw(raw_notify('{"switch:0":{"apower":NaN,"voltage":Infinity,'
                                 '"current":-Infinity,"aenergy":{"total":2.5}}}'))
        self.assertEqual(self.readings_of(BAD)[-1],
                         {0: ChannelValues(apower=None, voltage=None, current=None,
                                           energy_total=2.5)})
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_no_traceback()
        self.assert_good_served()

    def test_nan_replaces_an_earlier_number(self) -> None:
        """A NaN overwrites the device's last apower: missing, not the old value."""
        self.send_raw(raw_notify('{"switch:0":{"apower":NaN}}'))
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, None)

    def test_tiny_exponent_is_zero(self) -> None:
        self.send_raw(raw_notify('{"switch:0":{"apower":1e-999}}'))
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 0.0)

    def test_beyond_a_meter_is_missing(self) -> None:
        """
        A number beyond 1e15 either side (a 400-digit integer, 1e16, an 18-digit
        integer) is missing; the frame's other values are used.
        """
        self.send_raw(raw_notify('{"switch:0":{"apower":' + "9" * 400 + ',"voltage":1e16,'
                                 '"current":-1e16,"aenergy":{"total":123456789012345678}},'
                                 '"switch:1":{"apower":12345678901234567,"voltage":1e15,'
                                 '"current":-1000000000000000,"aenergy":{"total":0.5}}}'))
        self.assertEqual(self.readings_of(BAD)[-1], {
            0: ChannelValues(apower=None, voltage=None, current=None, energy_total=None),
            1: ChannelValues(apower=None, voltage=1e15, current=-10**15, energy_total=0.5),
        })
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_no_traceback()
        self.assert_good_served()

    def test_huge_number_replaces_an_earlier_number(self) -> None:
        """Like NaN: the device's last apower is gone, not kept."""
        self.send_raw(raw_notify('{"switch:0":{"apower":' + "4" * 400 + "}}"))
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, None)



class ComponentBudgetTests(DroppedFrameCase):
    """
    A connection keeps the components of the logged channels only, and a status frame
    holds at most MAX_COMPONENTS (64) components.
    """

    def test_unlogged_switches_not_kept(self) -> None:
        """
        Frames of made-up C{switch:N} components, each within every limit: the status
        keeps the logged channels' and nothing else, however many frames come.
        """
        client, connection = self.connect_bad()
        for n in range(5):
            client.send_json(notify({f"switch:{100 + 60 * n + i}": {"apower": 1.0}
                                     for i in range(60)}))
        client.send_json(notify({"switch:3": {"apower": 33.0}, "switch:4": {"apower": 44.0}},
                                method="NotifyFullStatus"))
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(connection.server.status.switches,
                         {"switch:3": ChannelValues(33.0, None, None, None)})
        self.assertEqual(self.readings_of(BAD)[-1], {3: ChannelValues(33.0, None, None, None)})
        self.assert_still_open(client, connection)
        self.assert_good_served()

    def test_unlogged_switch_of_any_type_ignored(self) -> None:
        """A channel not logged is never read, so its shape does not matter."""
        client, _connection = self.connect_bad()
        client.send_json(notify({"switch:7": [1, 2], "switch:0": {"apower": 70.0}}))
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 70.0)
        self.assert_good_served()

    def test_64_components_accepted(self) -> None:
        client, connection = self.connect_bad()
        params: dict[str, Any] = {f"x:{i}": {} for i in range(63)}
        params["switch:0"] = {"apower": 64.0}
        client.send_json(notify(params))
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 64.0)
        self.assert_still_open(client, connection)

    def test_65_components_dropped(self) -> None:
        params: dict[str, Any] = {f"x:{i}": {} for i in range(64)}
        params["switch:0"] = {"apower": 65.0}
        text = self.assert_dropped_warns_once(json.dumps(notify(params)), "too_many_components")
        self.assertIn("65 components, more than 64", text)
        self.assertNotIn(65.0, [v[0].apower for v in self.readings_of(BAD)])

    def test_full_status_of_many_components_dropped(self) -> None:
        """
        The attack's full status of 15,000 empty components: dropped, nothing kept. Its
        30,000 values trip MAX_VALUES first, before it is even parsed.
        """
        params: dict[str, object] = {f"switch:{i}": {} for i in range(15_000)}
        text = json.dumps(notify(params, method="NotifyFullStatus"), separators=(",", ":"))
        self.assertLess(len(text), 256 * 1024)
        self.assert_dropped_warns_once(text, "too_many_values", repeat=1)
        self.assertEqual(self.harness.connections[-1].server.status.switches,
                         {"switch:0": ChannelValues(43.0, None, None, None)})

    def test_get_status_result_of_many_components_dropped(self) -> None:
        client, connection = self.connect_bad()
        server = connection.server
        outstanding = server.session.outstanding
        request_id = next(i for i, m in outstanding.items() if m == "Shelly.GetStatus")
        result = {f"switch:{i}": {"apower": 5000.0} for i in range(65)}
        client.send_json({"id": request_id, "src": BAD, "result": result})
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {"too_many_components": 1})
        self.assertEqual(server.status.switches,
                         {"switch:0": ChannelValues(EARLY_POWER, None, None, None)})
        self.assert_still_open(client, connection)
        self.assert_bad_kept(closed=False)
        self.assert_good_served()


class SrcTests(DroppedFrameCase):
    """C{src} missing, unsafe or not the bound device: dropped, never logged raw."""

    def assert_escaped(self, raw: str) -> None:
        for event in self.events:
            self.assertNotIn(raw, formatEvent(event))

    def test_missing(self) -> None:
        self.assert_dropped_warns_once(json.dumps({"method": "NotifyStatus",
                                                   "params": {"switch:0": {"apower": 5.0}}}),
                                       "bad_src")

    def test_not_a_string(self) -> None:
        self.assert_dropped_warns_once(
            json.dumps({"src": 12, "method": "NotifyStatus", "params": {}}), "bad_src"
        )

    def test_newline(self) -> None:
        src = "shelly\nFAKE log line"
        text = self.assert_dropped_warns_once(json.dumps(power_frame(9.0, src)), "bad_src")
        self.assertIn("shelly\\nFAKE log line", text)
        self.assertNotIn("\n", text)
        self.assert_escaped(src)

    def test_ansi_escape(self) -> None:
        src = "\x1b[2J\x1b[31mshelly"
        text = self.assert_dropped_warns_once(json.dumps(power_frame(9.0, src)), "bad_src")
        self.assertIn("\\x1b[2J\\x1b[31mshelly", text)
        self.assertNotIn("\x1b", text)
        self.assert_escaped("\x1b")

    def test_long(self) -> None:
        src = "a" * 65
        text = self.assert_dropped_warns_once(json.dumps(power_frame(9.0, src)), "bad_src")
        self.assertNotIn("a" * 81, text)

    def test_spreadsheet_words(self) -> None:
        """
        Ids a CSV reader takes for a missing value, a number, a date or a boolean are
        not device ids: each one's frames are dropped on its own fresh connection, which
        stays open and bound to nothing; logged once per connection.
        """
        words = ("NaN", "NULL", "2026-01-01", "1E5", "true", "-1")
        connections = []
        for word in words:
            client, connection = self.connect_bad(device=None)
            for apower in (9.0, 10.0):
                client.send_json(power_frame(apower, word))
            self.harness.flush()
            self.assertEqual(connection.server.rejected, {"bad_src": 2})
            self.assertIsNone(connection.server.device_id)
            self.assert_still_open(client, connection)
            self.assertNotIn(word, self.factory.registry.devices)
            connections.append(connection)
        self.assertEqual(self.sink.calls[-1][1], GOOD)
        self.assertEqual({d for _, d, _ in self.sink.calls}, {GOOD})
        self.assertEqual(self.factory.registry.rejected, {"bad_src": 2 * len(words)})
        drops = [e for e in warn_events(self.events) if e.get("reason") == "bad_src"]
        self.assertEqual(len(drops), len(words))
        for connection, event in zip(connections, drops, strict=True):
            self.assertIn(connection.server.peer, formatEvent(event))
        self.assert_no_traceback()
        self.assert_good_served()

    def test_spreadsheet_word_on_a_bound_connection(self) -> None:
        self.assert_dropped_warns_once(json.dumps(power_frame(9.0, "NaN")), "bad_src")

    def test_different_from_bound(self) -> None:
        other = "shellypro4pm-001122334455"
        text = self.assert_dropped_warns_once(json.dumps(power_frame(9.0, other)), "src_mismatch")
        self.assertIn(other, text)
        self.assertNotIn(other, self.factory.registry.devices)

    def test_other_device_id_of_a_connected_device(self) -> None:
        """Claiming the good device's id does not reach the good device's readings."""
        self.assert_dropped_warns_once(json.dumps(power_frame(9999.0, GOOD)), "src_mismatch")
        self.assertNotIn(9999.0, [v[0].apower for v in self.readings_of(GOOD)])


class BinaryTests(HardeningCase):
    """Binary frames: dropped; the tenth on a connection closes it with 1003."""

    def test_dropped_then_closed(self) -> None:
        client, connection = self.connect_bad()
        payload = json.dumps(power_frame(500.0)).encode("utf-8")
        for _ in range(9):
            client.sendMessage(payload, isBinary=True)
        self.harness.flush()
        self.assert_still_open(client, connection)
        self.assertEqual(self.factory.registry.rejected, {"binary": 9})
        self.assertNotIn(500.0, [v[0].apower for v in self.readings_of(BAD)])
        self.assert_good_served()
        client.sendMessage(payload, isBinary=True)
        self.assert_close_code(client, connection, 1003)
        self.assertEqual(self.factory.registry.rejected, {"binary": 10})
        peer = connection.server.peer
        self.assert_logged_once("devices send text", peer)
        self.assert_logged_once("with 1003", peer)
        self.assert_bad_kept()
        self.assert_good_served()

    def test_flood(self) -> None:
        """A hundred at once: closed, the rest ignored, one warning of each kind."""
        client, connection = self.connect_bad()
        for _ in range(100):
            client.sendMessage(b"\x00\x01", isBinary=True)
        self.assert_close_code(client, connection, 1003)
        peer = connection.server.peer
        self.assert_logged_once("devices send text", peer)
        self.assert_logged_once("with 1003", peer)
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()


class MessageSizeTests(HardeningCase):
    """A message over Limits.max_message: closed with 1009."""

    limits = Limits(max_message=4096)

    def test_at_the_limit_accepted(self) -> None:
        client, connection = self.connect_bad()
        client.sendMessage(sized_frame(4096, apower=77.0))
        self.harness.flush()
        self.assert_still_open(client, connection)
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 77.0)
        self.assertEqual(self.factory.registry.rejected, {})

    def test_over_the_limit_closed(self) -> None:
        client, connection = self.connect_bad()
        client.sendMessage(sized_frame(4097, apower=77.0))
        self.assert_close_code(client, connection, 1009)
        self.assertNotIn(77.0, [v[0].apower for v in self.readings_of(BAD)])
        self.assertEqual(self.factory.registry.rejected, {"too_big": 1})
        self.assert_logged_once("1009", connection.server.peer)
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()

    def test_fragments_add_up(self) -> None:
        """Each fragment is small; the message they make is not."""
        client, connection = self.connect_bad()
        client.sendMessage(sized_frame(6000, apower=77.0), fragmentSize=1500)
        self.assert_close_code(client, connection, 1009)
        self.assertNotIn(77.0, [v[0].apower for v in self.readings_of(BAD)])
        self.assertEqual(self.factory.registry.rejected, {"too_big": 1})
        self.assert_bad_kept()
        self.assert_good_served()


class FragmentTests(HardeningCase):
    """A message in more than 64 frames (fragments): closed with 1009."""

    def fragmented(self, client: RecordingClient, fragments: int, apower: float) -> None:
        """Send a status whose JSON is split into exactly C{fragments} frames."""
        client.sendMessage(sized_frame(3 * fragments - 1, apower=apower), fragmentSize=3)
        self.harness.flush()

    def test_64_fragments_accepted(self) -> None:
        client, connection = self.connect_bad()
        self.fragmented(client, 64, 64.0)
        self.assert_still_open(client, connection)
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 64.0)
        self.assertEqual(self.factory.registry.rejected, {})

    def test_65_fragments_closed(self) -> None:
        client, connection = self.connect_bad()
        self.fragmented(client, 65, 65.0)
        self.assert_close_code(client, connection, 1009)
        self.assertNotIn(65.0, [v[0].apower for v in self.readings_of(BAD)])
        self.assertEqual(self.factory.registry.rejected, {"too_many_fragments": 1})
        self.assert_logged_once("(too_many_fragments)", connection.server.peer)
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()

    def test_unfinished_message_of_tiny_fragments(self) -> None:
        """
        The attack: a message that never ends, in 2-byte fragments. Closed at the 65th,
        and what it held is let go at once, not when the close completes.
        """
        client, connection = self.connect_bad()
        server = connection.server
        held: list[int] = []
        client.beginMessage()
        for _ in range(1000):
            client.beginMessageFrame(2)
            client.sendMessageFrameData(b"  ")
            self.harness.flush()
            held.append(len(server.message_data or []))
        self.assertEqual(max(held), 64)
        self.assertEqual(server.state, CLOSED)
        self.assertEqual(client.closed, (True, 1009, "more than 64 fragments in a message"))
        self.assertEqual(self.factory.registry.rejected, {"too_many_fragments": 1})
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()


class DefaultMessageSizeTests(HardeningCase):
    """The default limit is 256 KiB."""

    def test_default(self) -> None:
        self.assertEqual(Limits().max_message, 256 * 1024)
        client, connection = self.connect_bad()
        client.sendMessage(sized_frame(256 * 1024, apower=77.0))
        self.harness.flush()
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 77.0)
        client.sendMessage(sized_frame(256 * 1024 + 1, apower=78.0))
        self.assert_close_code(client, connection, 1009)
        self.assertNotIn(78.0, [v[0].apower for v in self.readings_of(BAD)])
        self.assert_bad_kept()
        self.assert_good_served()


class RateTests(HardeningCase):
    """More than max_rate frames a minute: dropped; more than twice that: closed, 1008."""

    limits = Limits(max_rate=5)

    def send_powers(self, client: RecordingClient, *powers: float) -> None:
        for apower in powers:
            client.send_json(power_frame(apower))
        self.harness.flush()

    def powers(self) -> list[float | None]:
        return [v[0].apower for v in self.readings_of(BAD)]

    def test_excess_dropped(self) -> None:
        client, connection = self.connect_bad()  # frame 1 of the window
        self.send_powers(client, 2, 3, 4, 5)
        self.assertEqual(self.powers(), [EARLY_POWER, 2, 3, 4, 5])
        self.send_powers(client, 6, 7, 8, 9, 10)
        self.assertEqual(self.powers(), [EARLY_POWER, 2, 3, 4, 5])
        self.assertEqual(self.factory.registry.rejected, {"rate_limited": 5})
        self.assertEqual(connection.server.rejected, {"rate_limited": 5})
        self.assert_still_open(client, connection)
        self.assert_logged_once("more than 5 frames a minute", connection.server.peer)
        # The limit is per connection: the good device is not affected.
        self.assert_good_served()
        self.assert_bad_kept(closed=False)

    def test_closed_past_twice_the_limit(self) -> None:
        client, connection = self.connect_bad()
        self.send_powers(client, *range(2, 11))  # frames 2..10
        self.assert_still_open(client, connection)
        self.send_powers(client, 11)
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(self.powers(), [EARLY_POWER, 2, 3, 4, 5])
        self.assertEqual(self.factory.registry.rejected, {"rate_limited": 6})
        peer = connection.server.peer
        self.assert_logged_once("more than 5 frames a minute", peer)
        self.assert_logged_once("with 1008", peer)
        self.assert_bad_kept()
        self.assert_good_served()

    def test_flood_closed(self) -> None:
        client, connection = self.connect_bad()
        for i in range(1000):
            client.send_json(power_frame(float(i)))
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(len(self.readings_of(BAD)), 5)
        self.assert_logged_once("more than 5 frames a minute", connection.server.peer)
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()

    def test_new_window_after_a_minute(self) -> None:
        client, connection = self.connect_bad()
        self.send_powers(client, 2, 3, 4, 5, 6, 7, 8)  # 6, 7, 8 dropped
        self.harness.advance(59)
        self.send_powers(client, 9)  # still the same window
        self.assertEqual(self.powers(), [EARLY_POWER, 2, 3, 4, 5])
        self.harness.advance(1)
        self.send_powers(client, 10, 11, 12, 13, 14, 15)
        self.assertEqual(self.powers(), [EARLY_POWER, 2, 3, 4, 5, 10, 11, 12, 13, 14])
        self.assertEqual(self.factory.registry.rejected, {"rate_limited": 5})
        self.assert_still_open(client, connection)
        self.assert_logged_once("more than 5 frames a minute", connection.server.peer)
        self.assert_good_served()


class ByteRateTests(HardeningCase):
    """
    More than max_bytes_rate bytes of messages a minute: dropped; more than twice that:
    closed with 1008.
    """

    limits = Limits(max_message=4096, max_bytes_rate=10_000)

    def send_sized(self, client: RecordingClient, *powers: float) -> None:
        for apower in powers:
            client.sendMessage(sized_frame(4000, apower=apower))
        self.harness.flush()

    def powers(self) -> list[float | None]:
        return [v[0].apower for v in self.readings_of(BAD)]

    def test_default(self) -> None:
        self.assertEqual(Limits().max_bytes_rate, 1024 * 1024)

    def test_excess_dropped(self) -> None:
        client, connection = self.connect_bad()  # 84 bytes
        self.send_sized(client, 1, 2)  # 8,084 bytes
        self.assertEqual(self.powers(), [EARLY_POWER, 1, 2])
        self.send_sized(client, 3)  # 12,084: over
        self.assertEqual(self.powers(), [EARLY_POWER, 1, 2])
        self.assertEqual(self.factory.registry.rejected, {"byte_rate_limited": 1})
        self.assertEqual(connection.server.rejected, {"byte_rate_limited": 1})
        self.assert_still_open(client, connection)
        self.assert_logged_once("more than 10000 bytes a minute", connection.server.peer)
        self.assert_good_served()
        self.assert_bad_kept(closed=False)

    def test_closed_past_twice_the_limit(self) -> None:
        client, connection = self.connect_bad()
        self.send_sized(client, 1, 2, 3, 4, 5)  # 20,084 bytes: over twice the limit
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(self.powers(), [EARLY_POWER, 1, 2])
        self.assertEqual(self.factory.registry.rejected, {"byte_rate_limited": 3})
        peer = connection.server.peer
        self.assert_logged_once("more than 10000 bytes a minute", peer)
        self.assert_logged_once("with 1008: too many bytes", peer)
        self.assert_no_traceback()
        self.assert_bad_kept()
        self.assert_good_served()

    def test_at_twice_the_limit_still_open(self) -> None:
        client, connection = self.connect_bad()
        early = len(json.dumps(power_frame(EARLY_POWER)))
        self.send_sized(client, 1, 2, 3, 4)
        client.sendMessage(sized_frame(20_000 - early - 16_000, apower=5))
        self.harness.flush()
        self.assert_still_open(client, connection)
        self.assertEqual(self.factory.registry.rejected, {"byte_rate_limited": 3})

    def test_new_window_after_a_minute(self) -> None:
        client, connection = self.connect_bad()
        self.send_sized(client, 1, 2, 3, 4)
        self.assertEqual(self.powers(), [EARLY_POWER, 1, 2])
        self.harness.advance(60)
        self.send_sized(client, 5, 6)
        self.assertEqual(self.powers(), [EARLY_POWER, 1, 2, 5, 6])
        self.assert_still_open(client, connection)
        self.assert_good_served()

    def test_frame_rate_counts_first(self) -> None:
        """A frame over both limits is counted once, as rate_limited."""
        harness = Harness(self, limits=Limits(max_message=4096, max_rate=2,
                                              max_bytes_rate=4096))
        client, _connection = harness.connect_ws("/ws")
        for apower in (1, 2, 3):  # 4,000, 8,000 (over the bytes) and 12,000 (over both)
            client.sendMessage(sized_frame(4000, apower=apower))
        harness.flush()
        self.assertEqual(harness.registry.rejected, {"byte_rate_limited": 1, "rate_limited": 1})
        self.assertEqual([v[0].apower for _, v in harness.sink.readings_calls], [1])


class InvalidUtf8Tests(HardeningCase):
    """A text frame that is not UTF-8: closed with 1007."""

    def test_invalid(self) -> None:
        for name, raw in [("ff", b"\xff"), ("overlong", b"\xc0\xaf"),
                          ("surrogate", b"\xed\xa0\x80"), ("cut short", b"\xe2\x82")]:
            with self.subTest(name):
                self.fresh_harness()
                client, connection = self.connect_bad()
                client.sendMessage(b'{"src":"' + raw + b'","method":"NotifyStatus"}',
                                   isBinary=False)
                self.assert_close_code(client, connection, 1007)
                self.assertEqual(self.factory.registry.rejected, {"bad_utf8": 1})
                self.assert_logged_once("1007", connection.server.peer)
                self.assert_no_traceback()
                self.assert_bad_kept()
                self.assert_good_served()

    def test_cut_short_by_the_frame_end(self) -> None:
        """The last character of a message is incomplete."""
        client, connection = self.connect_bad()
        client.sendMessage(json.dumps(power_frame(5.0)).encode("utf-8") + b"\xe2\x82",
                           isBinary=False)
        self.assert_close_code(client, connection, 1007)
        self.assertEqual(self.factory.registry.rejected, {"bad_utf8": 1})
        self.assert_bad_kept()
        self.assert_good_served()


class HttpTimeoutTests(HardeningCase):
    """A peer has REQUEST_TIMEOUT seconds to send its whole request, handshake included."""

    def assert_timed_out(self, raw: RawClient) -> float:
        """Advance in small steps until C{raw} is disconnected; return when it was."""
        start = self.harness.clock.seconds()
        while not raw.lost:
            self.assertLess(self.harness.clock.seconds() - start, 30, "never disconnected")
            self.harness.advance(0.25, step=0.25)
        return self.harness.clock.seconds() - start

    def assert_slow_peer_dropped(self, first: bytes) -> None:
        raw, _connection = self.harness.connect_raw(first)
        self.harness.advance(REQUEST_TIMEOUT - 0.5, step=0.5)
        self.assertFalse(raw.lost)
        after = self.assert_timed_out(raw)
        self.assertLessEqual(after, 1.0)
        self.assertNotIn(b"101", raw.status_line)
        self.assertEqual(self.factory.registry.devices.keys(), {GOOD})
        self.assertEqual(self.factory.registry.rejected, {"request_timeout": 1})
        self.assert_logged_once("request", "192.0.2.7")
        self.assert_good_served()

    def test_timeout_is_five_seconds(self) -> None:
        self.assertEqual(REQUEST_TIMEOUT, 5)

    def test_nothing_sent(self) -> None:
        """
        A connection that sends nothing (a browser's spare one, opened ahead of need) is
        closed at the deadline too, but it is no refusal: not counted, no warning.
        """
        raw, _connection = self.harness.connect_raw(b"")
        self.harness.advance(REQUEST_TIMEOUT - 0.5, step=0.5)
        self.assertFalse(raw.lost)
        self.assertLessEqual(self.assert_timed_out(raw), 1.0)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(warn_events(self.events), [])
        self.assert_good_served()

    def test_one_byte_sent(self) -> None:
        self.assert_slow_peer_dropped(b"G")

    def test_partial_request_line(self) -> None:
        self.assert_slow_peer_dropped(b"GET /ws HTT")

    def test_partial_headers(self) -> None:
        self.assert_slow_peer_dropped(b"GET /ws?token=x HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n"
                                      b"Upgrade: websocket\r\n")

    def test_trickle(self) -> None:
        """A byte at a time does not buy more time: the deadline is for the whole request."""
        raw, connection = self.harness.connect_raw(b"G")
        request = raw_upgrade(b"/ws")[1:]
        for i in range(40):
            self.harness.advance(0.5, step=0.5)
            if raw.lost:
                break
            connection.client_transport.write(request[i:i + 1])
        self.assertTrue(raw.lost)
        self.assertLessEqual(self.harness.clock.seconds(), REQUEST_TIMEOUT + 1)
        self.assertFalse(connection.upgraded)
        self.assertEqual(self.factory.registry.rejected, {"request_timeout": 1})
        self.assert_good_served()

    def test_partial_body(self) -> None:
        """A body is never waited for: the request is answered from its headers."""
        raw, _ = self.harness.connect_raw(raw_get(b"/", b"POST", b"Content-Length: 100\r\n")
                                          + b"{")
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 405"), raw.status_line)
        self.assertTrue(raw.lost)
        self.assertEqual(self.factory.registry.rejected, {"request_body": 1})
        self.assert_good_served()

    def test_keep_alive_idle_is_not_a_rejection(self) -> None:
        """A health client that keeps its connection open is closed, but not counted."""
        raw, _ = self.harness.connect_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assert_timed_out(raw)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(warn_events(self.events), [])

    def test_websocket_not_killed_by_the_request_timeout(self) -> None:
        """The open WebSocket lives on, its pings answered, long past the HTTP deadline."""
        self.harness.advance(120)
        self.assertEqual(self.good_connection.server.state, OPEN)
        self.assertIsNone(self.good.closed)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_good_served()

    def test_raw_websocket_after_handshake(self) -> None:
        """
        A peer that finished its handshake and then says nothing is not cut at the HTTP
        deadline: it is the deadline for naming its device (30 s) that ends it.
        """
        raw, connection = self.harness.connect_raw(raw_upgrade(b"/ws"))
        self.assertEqual(raw.status_line, b"HTTP/1.1 101 Switching Protocols")
        self.harness.advance(29)
        self.assertFalse(raw.lost)
        self.assertEqual(connection.server.state, OPEN)
        self.harness.advance(41)
        self.assertTrue(raw.lost)
        self.assertEqual(self.factory.registry.rejected, {"no_device": 1})
        self.assert_good_served()


def head(line: bytes, *headers: bytes) -> bytes:
    """A request's head: C{line}, a Host and C{headers} (keep-alive: HTTP/1.1's default)."""
    return line + b"\r\nHost: 127.0.0.1:5000\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


class RequestBodyTests(HardeningCase):
    """
    None of the pages takes a body: a request that announces one (Content-Length above 0,
    any Transfer-Encoding) is answered from its headers at once, 413 (405 for a method the
    path does not take), and the connection closed; no byte of the body is stored (Twisted
    would spool a large one to a temporary file first), nothing after it is parsed as a
    request, and it is counted (C{request_body}) and logged.
    """

    def setUp(self) -> None:
        super().setUp()
        #: Temporary files made (Twisted's spool for a large body).
        self.spooled: list[object] = []

        def temporary_file(*args: object, **kwargs: object) -> io.BytesIO:
            self.spooled.append(args)
            return io.BytesIO()

        self.patch(tempfile, "TemporaryFile", temporary_file)
        #: Body bytes handed to a request, which would store them.
        self.stored: list[bytes] = []
        handle = Request.handleContentChunk

        def handle_content_chunk(request: Request, data: bytes) -> None:
            self.stored.append(data)
            handle(request, data)

        self.patch(Request, "handleContentChunk", handle_content_chunk)

    def assert_refused(self, data: bytes, status: bytes, allow: bytes | None = None
                       ) -> RawClient:
        start = self.harness.clock.seconds()
        raw, connection = self.harness.connect_raw(data)
        self.assertEqual(self.harness.clock.seconds(), start)
        self.assertEqual(raw.status_line.split(b" ", 2)[:2], [b"HTTP/1.1", status],
                         raw.status_line)
        self.assertTrue(raw.lost)
        self.assertEqual(raw.headers[b"connection"], b"close")
        self.assertEqual(raw.headers.get(b"allow"), allow)
        self.assertNotIn(b"100 Continue", raw.received)
        # One answer: whatever followed the head was never parsed as a request.
        self.assertEqual(raw.received.count(b"HTTP/1.1 "), 1)
        self.assertFalse(connection.upgraded)
        self.assertEqual((self.spooled, self.stored), ([], []))
        self.assertEqual(self.factory.registry.rejected, {"request_body": 1})
        text = self.assert_logged_once("with a body", "192.0.2.7")
        self.assertIn("request_body_refused",
                      [e.get("event") for e in warn_events(self.events)])
        self.assertNotIn("token", text)
        self.assertEqual(self.factory.registry.devices.keys(), {GOOD})
        self.assert_good_served()
        return raw

    def test_huge_content_length(self) -> None:
        """The 100 GB POST of the attack: answered at once, nothing spooled."""
        raw = self.assert_refused(head(b"POST / HTTP/1.1", b"Content-Length: 100000000000")
                                  + b"x" * 70000, b"405", b"GET, HEAD")
        self.assertTrue(raw.body.endswith(b"this path takes GET, HEAD only, without a body\n"))

    def test_chunked(self) -> None:
        self.assert_refused(head(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked")
                            + b"ffffffff\r\n" + b"x" * 70000, b"405", b"GET, HEAD")

    def test_get_with_a_small_body(self) -> None:
        raw = self.assert_refused(head(b"GET / HTTP/1.1", b"Content-Length: 5") + b"hello",
                                  b"413")
        self.assertEqual(raw.status_line, b"HTTP/1.1 413 Content Too Large")
        self.assertEqual(raw.headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertTrue(raw.body.endswith(b"a request body is not accepted here\n"))

    def test_body_then_a_request(self) -> None:
        """A request hidden in the body is not answered."""
        self.assert_refused(head(b"GET /status HTTP/1.1", b"Content-Length: 40")
                            + head(b"GET /metrics HTTP/1.1"), b"413")

    def test_expect_100_continue(self) -> None:
        self.assert_refused(head(b"PUT /status HTTP/1.1", b"Content-Length: 1000000",
                                 b"Expect: 100-continue"), b"405", b"GET, HEAD")

    def test_head_with_a_body(self) -> None:
        raw = self.assert_refused(head(b"HEAD / HTTP/1.1", b"Content-Length: 3") + b"abc",
                                  b"413")
        self.assertEqual(raw.body, b"")

    def test_transfer_encoding_identity(self) -> None:
        self.assert_refused(head(b"GET / HTTP/1.1", b"Transfer-Encoding: identity") + b"abc",
                            b"413")

    def test_websocket_handshake_with_a_body(self) -> None:
        self.assert_refused(raw_upgrade(b"/ws").replace(b"\r\n\r\n",
                                                        b"\r\nContent-Length: 4\r\n\r\n")
                            + b"\x81\x80abcd", b"413")

    def test_post_ws(self) -> None:
        self.assert_refused(head(b"POST /ws?token=x HTTP/1.1", b"Content-Length: 2") + b"{}",
                            b"405", b"GET")

    def test_multipart_form(self) -> None:
        """Not parsed (Twisted would parse a form body, or answer 400 for a broken one)."""
        self.assert_refused(head(b"POST / HTTP/1.1", b"Content-Length: 9",
                                 b"Content-Type: multipart/form-data; boundary=x")
                            + b"--x\r\nbad", b"405", b"GET, HEAD")

    def test_content_length_zero_is_no_body(self) -> None:
        """Answered as usual, and the connection kept for the next request."""
        raw, connection = self.harness.connect_raw(head(b"GET / HTTP/1.1",
                                                        b"Content-Length: 0"))
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertFalse(raw.lost)
        connection.client_transport.write(head(b"GET / HTTP/1.1"))
        connection.flush()
        self.assertEqual(raw.received.count(b"HTTP/1.1 200 OK"), 2)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(warn_events(self.events), [])


class PingTimeoutTests(HardeningCase):
    """A ping every 30 s; a peer silent for 60 s is dropped."""

    def test_silent_peer_dropped(self) -> None:
        client, connection = self.connect_bad()
        # From now on the device hears nothing, so it answers nothing.
        client.dataReceived = lambda data: None  # type: ignore[method-assign]
        start = self.harness.clock.seconds()
        while BAD in self.factory.registry.devices:
            self.assertLess(self.harness.clock.seconds() - start, 120, "never dropped")
            self.harness.advance(0.5, step=0.5)
        lost_after = self.harness.clock.seconds() - start
        self.assertGreaterEqual(lost_after, 55)
        self.assertLessEqual(lost_after, 65)
        self.assertEqual(connection.server.state, CLOSED)
        self.assertEqual(self.factory.registry.rejected, {"ping_timeout": 1})
        self.assert_logged_once("ping", connection.server.peer)
        self.assert_bad_kept()
        # The good device answered every ping meanwhile.
        self.assert_good_served()

    def test_chatty_peer_that_never_answers_dropped(self) -> None:
        """Frames (a fragment every 25 s) do not stand in for the answer to a ping."""
        client, _ = self.connect_bad()
        # From now on the device hears nothing, so it answers no ping, but it sends.
        client.dataReceived = lambda data: None  # type: ignore[method-assign]
        start = self.harness.clock.seconds()
        sent = start
        client.beginMessage()
        while BAD in self.factory.registry.devices:
            self.assertLess(self.harness.clock.seconds() - start, 120, "never dropped")
            if self.harness.clock.seconds() - sent >= 25:
                client.beginMessageFrame(1)
                client.sendMessageFrameData(b" ")
                sent = self.harness.clock.seconds()
            self.harness.advance(0.5, step=0.5)
        lost_after = self.harness.clock.seconds() - start
        self.assertGreaterEqual(lost_after, 55)
        self.assertLessEqual(lost_after, 65)
        self.assertEqual(self.factory.registry.rejected, {"ping_timeout": 1})
        self.assert_bad_kept()
        self.assert_good_served()

    def test_answering_peer_kept(self) -> None:
        client, connection = self.connect_bad()
        self.harness.advance(600, step=5)
        self.assert_still_open(client, connection)
        self.assert_bad_kept(closed=False)
        self.assert_good_served()


class BackpressureTests(HardeningCase):
    """
    A peer that does not read what it is sent: once more than the transport's buffer
    waits for it, it is no longer read (so it cannot make the server write more), and
    if it stays so for 30 s it is dropped.
    """

    def setUp(self) -> None:
        super().setUp()
        self.harness.server_transport_class = BufferedTransport

    def stop_reading(self) -> tuple[RecordingClient, Connection, BufferedTransport]:
        """Connect the bad device; from now on it reads nothing it is sent."""
        client, connection = self.connect_bad()
        transport = connection.server_transport
        assert isinstance(transport, BufferedTransport)
        transport.peer_reads = False
        return client, connection, transport

    def test_pinger_bounded_then_dropped(self) -> None:
        client, connection, transport = self.stop_reading()
        peer = connection.server.peer
        # Each ping asks for a pong of the same size: 20,000 of them would be 2.5 MB.
        for _ in range(20000):
            client.sendPing(b"x" * 125)
            self.harness.flush()
        self.assertFalse(transport.reading)
        self.assertLessEqual(transport.buffered, transport.bufferSize + 127)
        paused_at = self.harness.clock.seconds()
        self.harness.advance(29)
        self.assertIn(BAD, self.factory.registry.devices)
        self.harness.advance(2)
        self.assertNotIn(BAD, self.factory.registry.devices)
        self.assertLessEqual(self.harness.clock.seconds() - paused_at, 31)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.registry.rejected, {"backpressure": 1})
        self.assert_logged_once("did not read", peer)
        self.assert_bad_kept()
        self.assert_good_served()

    def test_reader_that_catches_up_kept(self) -> None:
        client, connection, transport = self.stop_reading()
        for _ in range(1000):
            client.sendPing(b"x" * 125)
            self.harness.flush()
        self.assertFalse(transport.reading)
        self.harness.advance(20)
        # It reads again: everything it sent is read, and it stays.
        transport.peer_reads = True
        self.harness.flush()
        self.assertTrue(transport.reading)
        self.assertEqual(transport.unread, [])
        self.harness.advance(60)
        self.assert_still_open(client, connection)
        self.assertEqual(self.factory.registry.rejected, {})
        client.send_json(power_frame(7.0))
        self.harness.flush()
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, 7.0)
        self.assert_good_served()


class SlotsCase(HardeningCase):
    """Two WebSocket slots (the good device's and one more), the third refused."""

    def assert_third_refused(self, reason: str, logged: str) -> None:
        """
        The third WebSocket gets HTTP 503 (an Autobahn client and a raw handshake alike),
        counted as C{reason} and logged with C{logged}; health still answers; once the
        second leaves, the next one is let in.
        """
        client, connection = self.connect_bad()
        third, third_connection = self.harness.connect_ws("/ws")
        self.assertFalse(third.opened)
        assert third.closed is not None
        self.assertIn("503", third.closed[2] or "")
        raw, _ = self.harness.connect_raw(raw_upgrade(b"/ws"))
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 503"), raw.status_line)
        self.assertNotIn(b"sec-websocket-accept", raw.headers)
        self.assertEqual(self.factory.registry.rejected, {reason: 2})
        warnings = [formatEvent(e) for e in warn_events(self.events)]
        self.assertEqual(len(warnings), 2)
        self.assertIn(third_connection.server.peer, warnings[0])
        self.assertIn(logged, warnings[0])
        # Health is not a WebSocket and still answers.
        health, _ = self.harness.connect_raw(raw_get(b"/"))
        self.assertEqual(health.status_line, b"HTTP/1.1 200 OK")
        self.assert_good_served()
        self.assert_still_open(client, connection)
        # Once one leaves, the next is let in.
        client.sendClose(code=1000)
        self.harness.flush()
        self.assert_bad_kept()
        fourth, _ = self.harness.connect_ws("/ws")
        self.assertTrue(fourth.opened)
        self.assert_good_served()


class ConnectionLimitTests(SlotsCase):
    """More than max_connections WebSockets: HTTP 503 at the handshake."""

    limits = Limits(max_connections=2)

    def test_third_refused(self) -> None:
        self.assert_third_refused("too_many_connections", "more than 2 connections")


class NoDeviceTests(HardeningCase):
    """A connection must name its device (a frame with a valid src) within 30 s."""

    def test_nameless_closed_after_30_s(self) -> None:
        client, connection = self.connect_bad(device=None)
        peer = connection.server.peer
        # Frames without a usable src do not name a device.
        client.send_json({"method": "NotifyStatus", "params": {}})
        self.harness.advance(29)
        self.assert_still_open(client, connection)
        self.harness.advance(2)
        self.assert_close_code(client, connection, 1008)
        assert client.closed is not None
        self.assertEqual(client.closed[2], "no device id")
        self.assertEqual(self.factory.registry.rejected["no_device"], 1)
        self.assert_logged_once("no device id", peer)
        self.assertEqual(self.factory.registry.records.keys(), {self.good_id})
        self.assert_good_served()

    def test_named_device_kept(self) -> None:
        client, connection = self.connect_bad()
        self.harness.advance(120, step=5)
        self.assert_still_open(client, connection)
        self.assertNotIn("no_device", self.factory.registry.rejected)
        self.assert_good_served()


class PerAddressLimitTests(SlotsCase):
    """More than max_per_address WebSockets from one host: HTTP 503 at the handshake."""

    # The good device and every client of the harness share the address 192.0.2.7.
    limits = Limits(max_per_address=2)

    def test_third_from_one_address_refused(self) -> None:
        self.assert_third_refused("too_many_from_address",
                                  "more than 2 connections from its address")

    def test_refusals_within_the_warnings_budget(self) -> None:
        """A host that dials again and again is refused each time, logged within budget."""
        self.connect_bad()
        self.factory.registry.log_budget = LogBudget(self.harness.clock, 5)
        for _ in range(50):
            self.harness.connect_ws("/ws")
        self.assertEqual(self.factory.registry.rejected, {"too_many_from_address": 50})
        # Autobahn's own lines about the refused handshakes share the budget.
        self.assertTrue(0 < len(warn_events(self.events)) <= 5, warn_events(self.events))
        self.assert_good_served()

    def test_other_address_let_in(self) -> None:
        self.connect_bad()
        self.harness.connect_ws("/ws")
        self.assertEqual(self.factory.registry.rejected, {"too_many_from_address": 1})
        # The same limit, a different host.
        self.harness.client_host = "198.51.100.9"
        other, _ = self.harness.connect_ws("/ws")
        self.assertTrue(other.opened)
        self.assertEqual(self.factory.registry.rejected, {"too_many_from_address": 1})


class PathAndMethodTests(HardeningCase):
    """Other paths and methods: 4xx, never an upgrade."""

    def assert_refused(self, request: bytes, status: bytes) -> RawClient:
        raw, connection = self.harness.connect_raw(request)
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 " + status), raw.status_line)
        self.assertNotIn(b"sec-websocket-accept", raw.headers)
        if isinstance(connection.server_transport.protocol, WebSocketProtocol):
            # Autobahn answered, and hung up.
            self.assertTrue(raw.lost)
            self.assertEqual(connection.server.state, CLOSED)
        self.assertEqual(self.factory.registry.devices.keys(), {GOOD})
        self.assertEqual(self.factory.countConnections, 1)
        self.assert_good_served()
        return raw

    def test_post_ws(self) -> None:
        self.assert_refused(raw_get(b"/ws", b"POST", b"Content-Length: 2\r\n") + b"{}", b"405")

    def test_post_ws_with_upgrade_headers(self) -> None:
        self.assert_refused(raw_upgrade(b"/ws").replace(b"GET", b"POST", 1), b"405")

    def test_other_methods_ws(self) -> None:
        for method in [b"PUT", b"DELETE", b"OPTIONS", b"HEAD", b"PATCH"]:
            with self.subTest(method=method):
                self.assert_refused(raw_upgrade(b"/ws/").replace(b"GET", method, 1), b"405")

    def test_get_ws_without_upgrade(self) -> None:
        """A browser's plain GET: no status page, just a refusal."""
        raw = self.assert_refused(raw_get(b"/ws"), b"400")
        self.assertNotIn(b"<html", raw.received.lower())

    def test_other_paths(self) -> None:
        for path in [b"/ws/x", b"/ws//", b"/wss", b"/WS", b"/api/ws", b"/ws/../x"]:
            with self.subTest(path=path):
                self.assert_refused(raw_upgrade(path), b"404")

    def test_post_root(self) -> None:
        self.assert_refused(raw_upgrade(b"/").replace(b"GET", b"POST", 1), b"405")


TOKEN = "s3cret"


class TokenTests(HardeningCase):
    """With a token, a WebSocket without it is refused with 403 before the upgrade."""

    admission = Admission(tokens=(TokenRule(TOKEN, ("*",)),))
    good_path = f"/ws?token={TOKEN}"

    def assert_forbidden(self, path: str, count: int) -> None:
        client, _connection = self.harness.connect_ws(path)
        self.assertFalse(client.opened)
        assert client.closed is not None
        self.assertIn("403", client.closed[2] or "")
        raw, _ = self.harness.connect_raw(raw_upgrade(path.encode("ascii")))
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 403"), raw.status_line)
        self.assertNotIn(b"sec-websocket-accept", raw.headers)
        self.assertEqual(self.factory.registry.rejected, {"bad_token": count})
        self.assertEqual(self.factory.registry.devices.keys(), {GOOD})
        self.assert_good_served()

    def test_no_token(self) -> None:
        self.assert_forbidden("/ws", 2)
        self.assert_forbidden("/ws/", 4)

    def test_wrong_token(self) -> None:
        self.assert_forbidden("/ws?token=s3cre", 2)
        self.assert_forbidden("/ws?token=S3CRET", 4)
        self.assert_forbidden("/ws?token=", 6)
        self.assert_forbidden("/ws?tok=s3cret", 8)

    def test_only_the_first_token_counts(self) -> None:
        self.assert_forbidden(f"/ws?token=wrong&token={TOKEN}", 2)
        client, _ = self.harness.connect_ws(f"/ws?token={TOKEN}&token=wrong")
        self.assertTrue(client.opened)

    def test_token_open(self) -> None:
        for path in [f"/ws?token={TOKEN}", f"/ws/?token={TOKEN}"]:
            with self.subTest(path=path):
                client, connection = self.harness.connect_ws(path)
                self.assertTrue(client.opened)
                self.assertEqual(connection.server.state, OPEN)
        self.assertEqual(self.factory.registry.rejected, {})

    def test_refusal_logged_with_peer(self) -> None:
        _client, connection = self.harness.connect_ws("/ws?token=wrong")
        text = self.assert_logged_once("token", connection.server.peer)
        self.assertNotIn("wrong", text.replace("missing or wrong token", ""))

    def test_token_never_logged(self) -> None:
        """Not on connecting, not in the access log of a request that carries it."""
        log_file = io.StringIO()
        self.harness.site.logFile = log_file
        client, connection = self.harness.connect_ws(f"/ws?token={TOKEN}")
        client.send_json(power_frame(1.0))
        client.sendClose(code=1000)
        self.harness.flush()
        raw, _ = self.harness.connect_raw(raw_get(f"/?token={TOKEN}".encode("ascii")))
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        raw, _ = self.harness.connect_raw(raw_upgrade(f"/ws/x?token={TOKEN}".encode("ascii")))
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 404"))
        texts = [formatEvent(e) for e in self.events]
        self.assertTrue(any(str(connection.server.peer) in t for t in texts))
        for text in texts:
            self.assertNotIn(TOKEN, text)
        access = log_file.getvalue()
        self.assertIn('"GET / HTTP/1.1" 200', access)
        self.assertIn('"GET /ws/x HTTP/1.1" 404', access)
        self.assertNotIn(TOKEN, access)

    def test_access_log_line_drops_the_query(self) -> None:
        request = Request(DummyChannel())
        request.method = b"GET"
        request.uri = f"/ws?token={TOKEN}&x=1".encode("ascii")
        request.clientproto = b"HTTP/1.1"
        request.code = 403
        request.requestHeaders.setRawHeaders(b"user-agent", [b"Shelly \"Pro\"\x1b[2J"])
        line = access_log_line("[01/Jan/2026:00:00:00 +0000]", request)
        self.assertNotIn(TOKEN, line)
        self.assertIn('"GET /ws HTTP/1.1" 403', line)
        self.assertNotIn("\x1b", line)
        self.assertIn("Shelly \\x22Pro\\x22\\x1b[2J", line)


class TokenFileRuleTests(HardeningCase):
    """A token admits only the device ids its lines name; others are closed, 1008."""

    admission = Admission(tokens=(TokenRule("t1", ("shellyplus1pm-*",)),
                                  TokenRule("t2", ("shellypro4pm-aabbcc*",))))
    good_path = "/ws?token=t1"

    def test_wrong_device_for_the_token(self) -> None:
        client, connection = self.connect_bad("/ws?token=t1", device=None)
        client.send_json(power_frame(300.0, BAD))
        client.send_json(power_frame(301.0, BAD))
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(self.readings_of(BAD), [])
        self.assertNotIn(BAD, self.factory.registry.devices)
        self.assertEqual(self.factory.registry.rejected["not_allowed"], 2)
        self.assert_logged_once("not allowed here", connection.server.peer)
        self.assert_good_served()

    def test_matching_device(self) -> None:
        client, connection = self.connect_bad("/ws?token=t2")
        self.assertEqual(self.readings_of(BAD)[-1][0].apower, EARLY_POWER)
        self.assert_still_open(client, connection)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_good_served()

    def test_prefix_of_glob_only(self) -> None:
        other = "shellypro4pm-001122334455"
        client, connection = self.connect_bad("/ws?token=t2", device=None)
        client.send_json(power_frame(1.0, other))
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(self.readings_of(other), [])
        self.assert_good_served()

    def test_token_of_another_file_line(self) -> None:
        """t2 does not admit what t1 admits."""
        client, connection = self.connect_bad("/ws?token=t2", device=None)
        client.send_json(power_frame(1.0, "shellyplus1pm-665544332211"))
        self.assert_close_code(client, connection, 1008)
        self.assert_good_served()


class AllowTests(HardeningCase):
    """C{--allow}: device ids that match none of the globs are closed, 1008."""

    admission = Admission(allow=("shellypro4pm-*",))
    good_id = BAD  # here the Pro 4PM is the allowed, well-behaved one

    def test_not_allowed(self) -> None:
        client, connection = self.harness.connect_ws("/ws")
        client.send_json(power_frame(300.0, GOOD))
        self.assert_close_code(client, connection, 1008)
        self.assertEqual(self.readings_of(GOOD), [])
        self.assertNotIn(GOOD, self.factory.registry.devices)
        self.assertEqual(self.factory.registry.rejected, {"not_allowed": 1})
        self.assert_logged_once("not allowed here", connection.server.peer)
        self.assert_good_served()

    def test_allowed(self) -> None:
        other = "shellypro4pm-001122334455"
        client, connection = self.harness.connect_ws("/ws")
        client.send_json(power_frame(300.0, other))
        self.harness.flush()
        self.assertEqual(self.readings_of(other)[-1][0].apower, 300.0)
        self.assert_still_open(client, connection)
        self.assertEqual(self.factory.registry.rejected, {})


class CsvCellTests(SynchronousTestCase):
    """
    Through the whole service (L{Stack}): every cell of the CSV file is one a spreadsheet
    reads as what it is. Ids that a reader takes for a missing value, a number, a date or
    a boolean get no row; numbers beyond a meter are empty cells.
    """

    #: Ids refused by default, each sending a running channel.
    WORDS = ("NaN", "NULL", "2026-01-01", "1E5", "true", "-1")

    def setUp(self) -> None:
        self.events = capture_log(self)
        self.stack = Stack(self)
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, raw_notify(
            '{"switch:0":{"apower":450,"voltage":' + "9" * 400 + ',"current":1e16,'
            '"aenergy":{"total":-1e16}},'
            '"switch:1":{"apower":100.5,"voltage":1e15,"current":123456789012345678,'
            '"aenergy":{"total":12345678901234567}},'
            '"switch:2":{"apower":1000000000000000,"voltage":-1e15,'
            '"current":-1000000000000000,"aenergy":{"total":999999999999999.9}},'
            '"switch:3":{"apower":' + "7" * 400 + ',"voltage":230.1}}',
            src=DEVICE, method="NotifyFullStatus"))
        for word in self.WORDS:
            other, _ = stack.connect()
            stack.send(other, power_frame(300.0, word))
        stack.advance_to(T0 + 60)

    def test_exact_cells(self) -> None:
        with open(self.stack.csv, encoding="utf-8") as f:
            lines = f.read().splitlines()
        minute = "2027-01-15T08:00:00+00:00"
        self.assertEqual(lines, [
            HEADER,
            f"{minute},{DEVICE},0,450,,,",
            f"{minute},{DEVICE},1,100.5,1000000000000000.0,,",
            f"{minute},{DEVICE},2,1000000000000000,-1000000000000000.0,-1000000000000000,"
            "999999999999999.9",
        ])
        # Naming no usable device, each connection is closed after 30 s (no_device).
        self.assertEqual(self.stack.registry.rejected,
                         {"bad_src": len(self.WORDS), "no_device": len(self.WORDS)})
        self.assertEqual(sorted(self.stack.registry.devices), [DEVICE])

    def test_read_with_csv_module(self) -> None:
        """
        Python's C{csv} module reads every row as seven cells: an id of the device's
        shape, a channel number, and numbers that C{float} reads back to the same cell
        text, or empty.
        """
        with open(self.stack.csv, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 3)
        for row in rows:
            self.assertEqual(len(row), 7, row)
            self.assertNotIn(None, row)  # no cell beyond the header's
            self.assertEqual(row["device_id"], DEVICE)
            self.assertTrue(row["channel"].isdigit())
            for name in ("apower_W", "voltage_V", "current_A", "energy_total_Wh"):
                cell = row[name]
                if cell:
                    value = float(cell)
                    self.assertLessEqual(abs(value), 1e15, row)
                    self.assertNotIn("e", cell.lower(), row)
                    self.assertLessEqual(len(cell.strip("-").replace(".", "")), 17, row)
        self.assertEqual([r["voltage_V"] for r in rows],
                         ["", "1000000000000000.0", "-1000000000000000.0"])


class IdPatternTests(SynchronousTestCase):
    """
    C{--id-pattern}, through the whole service: it replaces the default shape; the
    fixed safety check stays whatever it admits.
    """

    def rows_of(self, stack: Stack, *ids: str) -> tuple[list[str], dict[str, RecordingClient]]:
        clients = {}
        for device in ids:
            client, _ = stack.connect()
            stack.send(client, power_frame(300.0, device))
            clients[device] = client
        stack.advance_to(T0 + 60)
        with open(stack.csv, encoding="utf-8") as f:
            lines = f.read().splitlines()[1:]
        return [line.split(",")[1] for line in lines], clients

    def test_other_shape(self) -> None:
        """A fleet of other ids: the pattern admits them, and only them."""
        stack = Stack(self, "--id-pattern", r"meter[0-9]{1,3}")
        written, clients = self.rows_of(stack, "meter7", DEVICE, "meter1234", "NaN")
        self.assertEqual(written, ["meter7"])
        # Naming no usable device, each connection is closed after 30 s (no_device).
        self.assertEqual(stack.registry.rejected, {"bad_src": 3, "no_device": 3})
        self.assertEqual(stack.status()["server"]["options"]["id-pattern"], r"meter[0-9]{1,3}")
        self.assertIsNone(clients["meter7"].closed)
        for device in (DEVICE, "meter1234", "NaN"):
            self.assertEqual(clients[device].closed, (True, 1008, "no device id"))

    def test_wide_pattern_keeps_the_safety_check(self) -> None:
        """
        A pattern that admits anything still refuses what a CSV cell or a log line
        cannot hold, or a spreadsheet takes for a formula.
        """
        stack = Stack(self, "--id-pattern", r"(?s).*")
        unsafe = ("a,b", 'a"b', "a\nb", "a b", "=1+1", "-1", "@x", "x" * 65, "")
        written, _ = self.rows_of(stack, "NaN", *unsafe)
        self.assertEqual(written, ["NaN"])
        # Naming no usable device, each connection is closed after 30 s (no_device).
        self.assertEqual(stack.registry.rejected,
                         {"bad_src": len(unsafe), "no_device": len(unsafe)})

    def test_default(self) -> None:
        stack = Stack(self)
        written, _ = self.rows_of(stack, "NaN", DEVICE, "shellyplus1pm-08b61fcd0b1c")
        self.assertEqual(written, ["shellyplus1pm-08b61fcd0b1c", DEVICE])  # sorted by id
        # Naming no usable device, the connection is closed after 30 s (no_device).
        self.assertEqual(stack.registry.rejected, {"bad_src": 1, "no_device": 1})

    def test_resume_with_other_shape(self) -> None:
        """
        At a restart the file's end tells which minutes were written, whatever ids the
        pattern admits: a row of C{meter7} is not written twice.
        """
        minute = "2027-01-15T08:00:00+00:00"
        earlier = f"{HEADER}\n{minute},meter7,0,300.0,,,\n"
        stack = Stack(self, "--id-pattern", r"meter[0-9]{1,3}", csv_text=earlier)
        client, _ = stack.connect()
        stack.send(client, power_frame(301.0, "meter7"))
        stack.advance_to(T0 + 120)
        with open(stack.csv, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines(), [
                HEADER,
                f"{minute},meter7,0,300.0,,,",
                "2027-01-15T08:01:00+00:00,meter7,0,301.0,,,",
            ])


def keep_alive_get(path: bytes) -> bytes:
    """A GET that leaves the connection open for the next request."""
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n\r\n"


class PipelineTests(HardeningCase):
    """
    Pipelined requests (many in one packet) are answered one per reactor turn, so the
    devices and the other pages are served in between; and no further while the peer
    reads no answers.

    A reactor turn here (L{turn}): the calls due, then the bytes waiting on every
    connection, moved without running the clock (the harness's own flush runs the calls
    due at each step, which would merge the turns).
    """

    def move_bytes(self) -> None:
        for connection in self.harness.connections:
            connection.pump.flush(advanceClock=False)

    def turn(self) -> None:
        """
        One turn of the reactor: the calls due now, then I/O. Unlike C{Clock.advance}, a
        call scheduled by one of them (C{callLater(0, ...)}) waits for the next turn, as
        in the real reactor.
        """
        clock = self.harness.clock
        for call in [c for c in clock.calls if c.getTime() <= clock.seconds()]:
            if call in clock.calls:  # not cancelled by an earlier one
                clock.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)
        self.move_bytes()

    def pipeline(self, count: int) -> tuple[RawClient, Connection, list[bytes]]:
        """C{count} pipelined requests in one packet, the last closing; the answers due."""
        paths = [b"/" if i % 2 == 0 else b"/missing-%d" % i for i in range(count - 1)]
        packet = b"".join(keep_alive_get(path) for path in paths) + raw_get(b"/")
        expected = [b"HTTP/1.1 200 OK" if path == b"/" else b"HTTP/1.1 404 Not Found"
                    for path in paths] + [b"HTTP/1.1 200 OK"]
        raw, connection = self.harness.connect_raw(b"")
        connection.client_transport.write(packet)
        self.move_bytes()
        return raw, connection, expected

    def good_frame_taken(self) -> None:
        """A frame of the good device, sent now, is taken within this turn's I/O."""
        self.good_power += 1.0
        self.good.send_json(power_frame(self.good_power, self.good_id))
        self.move_bytes()
        device_id, values = self.sink.readings_calls[-1]
        self.assertEqual((device_id, values[0].apower), (self.good_id, self.good_power))

    @staticmethod
    def status_lines(raw: RawClient) -> list[bytes]:
        return re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", raw.received)

    def test_one_answer_per_reactor_turn(self) -> None:
        count = 40
        # Health checks, one per turn, on connections made beforehand (making one runs
        # the clock).
        checks = [self.harness.connect_raw(b"") for _ in range(count)]
        raw, _, expected = self.pipeline(count)
        for answered, (health, connection) in enumerate(checks, 1):
            # Exactly one more answer each turn, in order ...
            self.assertEqual(self.status_lines(raw), expected[:answered])
            # ... and between two answers, a device's frame on another connection is
            # taken, and a health check on a third is answered.
            self.good_frame_taken()
            connection.client_transport.write(raw_get(b"/"))
            self.move_bytes()
            self.assertEqual(health.status_line, b"HTTP/1.1 200 OK")
            self.turn()
        self.assertEqual(self.status_lines(raw), expected)
        self.assertTrue(raw.lost)
        self.assertEqual(self.factory.registry.rejected, {})
        self.assertEqual(warn_events(self.events), [])
        self.assert_good_served()

    def test_no_next_answer_while_the_peer_reads_none(self) -> None:
        raw, connection, expected = self.pipeline(4)
        self.assertEqual(self.status_lines(raw), expected[:1])
        channel = connection.server_transport.protocol
        # The peer's socket is full: the transport pauses the channel, its producer.
        channel.pauseProducing()
        for _ in range(3):
            self.turn()
            self.good_frame_taken()
        self.assertEqual(self.status_lines(raw), expected[:1])
        # The peer reads again: the rest follow, one a turn.
        channel.resumeProducing()
        for answered in range(2, 5):
            self.turn()
            self.assertEqual(self.status_lines(raw), expected[:answered])
        self.assertTrue(raw.lost)
        self.assert_good_served()

    def test_peer_that_reads_no_answers_is_timed_out(self) -> None:
        raw, connection, expected = self.pipeline(4)
        connection.server_transport.protocol.pauseProducing()
        self.harness.advance(REQUEST_TIMEOUT + 1, step=0.5)
        self.assertTrue(raw.lost)
        self.assertEqual(self.status_lines(raw), expected[:1])
        self.assertEqual(self.factory.registry.rejected, {})
        self.assert_good_served()

    def test_disconnect_while_the_next_waits(self) -> None:
        raw, connection, expected = self.pipeline(4)
        connection.client_transport.loseConnection()
        self.move_bytes()
        self.turn()
        self.harness.flush()
        self.assertEqual(self.status_lines(raw), expected[:1])
        self.assert_no_traceback()
        self.assert_good_served()


def error_answer(request_id: int, src: str = BAD) -> dict[str, Any]:
    """An error answer, as a device sends one, to a request of that id."""
    return {"id": request_id, "src": src, "dst": "shellylog",
            "error": {"code": -103, "message": "Resource unavailable"}}


class QuietLogTests(HardeningCase):
    """
    Whatever peers do, they cause a few warnings per connection, and at most the budget
    (60) a minute in all, then one summary line a minute; the counters count everything.
    """

    # Frames are not rate-limited here: the error answers all reach the protocol.
    limits = Limits(max_rate=100_000, max_bytes_rate=1 << 30)

    def events_named(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == name]

    def test_unsolicited_error_answers(self) -> None:
        client, connection = self.connect_bad()
        for n in range(12_000):
            client.send_json(error_answer(1_000_000 + n))
            if n % 500 == 0:
                self.harness.flush()
        self.harness.flush()
        self.assertEqual(self.factory.registry.received["error"], 12_000)
        lines = [formatEvent(e) for e in warn_events(self.events)]
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(
            lines[2], f"{BAD} answered None with error '-103': 'Resource unavailable' "
            "(further errors on this connection are not logged)")
        self.assertEqual(len(self.events_named("device_error")), 3)
        self.harness.advance(61)
        self.assertEqual(self.events_named("log_suppressed"), [])
        self.assert_still_open(client, connection)
        self.assert_bad_kept(closed=False)
        self.assert_good_served()

    def test_error_answers_counted_per_connection(self) -> None:
        """A new connection may log its own few: the cap is per connection."""
        for _ in range(2):
            client, _ = self.connect_bad()
            for n in range(5):
                client.send_json(error_answer(1_000_000 + n))
            self.harness.flush()
        self.assertEqual(len(self.events_named("device_error")), 6)
        self.assertEqual(self.factory.registry.received["error"], 10)

    def test_a_thousand_peers_one_warning_each(self) -> None:
        """Each of 1,000 peers sends a GET /ws that is no handshake, in three minutes."""
        start = self.harness.clock.seconds()
        for minute in range(3):
            for n in range(400 if minute < 2 else 200):
                raw, _ = self.harness.connect_raw(raw_get(b"/ws"))
                self.assertEqual(raw.status_line, b"HTTP/1.1 400 Bad Request")
                if n % 100 == 99:
                    self.harness.advance(10, step=10)
            self.harness.advance(start + 60 * (minute + 1) - self.harness.clock.seconds(),
                                 step=10)
        self.harness.advance(60, step=10)
        self.assertEqual(self.factory.registry.rejected, {"bad_handshake": 1000})
        self.assertEqual(len(self.events_named("handshake_refused")), 60 * 3)
        summaries = self.events_named("log_suppressed")
        self.assertEqual([(e["count"], e["reasons"]) for e in summaries],
                         [(340, {"handshake_refused": 340}),
                          (340, {"handshake_refused": 340}),
                          (140, {"handshake_refused": 140})])
        self.assertEqual(len(warn_events(self.events)), 60 * 3 + 3)
        self.assert_good_served()

    def test_mixed_warnings_share_the_budget(self) -> None:
        """Refused handshakes, bad frames, refused tokens: one budget for them all."""
        for _ in range(50):
            self.harness.connect_raw(raw_get(b"/ws"))
        for _ in range(20):
            client, _ = self.connect_bad(device=None)
            client.send_text("not json")
        self.harness.flush()
        self.assertEqual(self.factory.registry.rejected, {"bad_handshake": 50, "not_json": 20})
        self.assertEqual(len(warn_events(self.events)), 60)
        self.harness.advance(60)
        (summary,) = self.events_named("log_suppressed")
        self.assertEqual(summary["log_level"], LogLevel.warn)
        # Naming no device, the 20 are closed after 30 s: their lines are over budget too.
        self.assertEqual(summary["reasons"], {"frame_rejected": 10, "connection_closed": 20,
                                              "frames_rejected_summary": 20})
        self.assert_good_served()

    def test_pipelined_requests_three_access_lines(self) -> None:
        access = io.StringIO()
        self.harness.site.logFile = access
        raw, connection = self.harness.connect_raw(b"")
        connection.client_transport.write(keep_alive_get(b"/") * 49 + raw_get(b"/"))
        self.harness.flush()
        self.assertEqual(raw.received.count(b"HTTP/1.1 200 OK"), 50)
        lines = access.getvalue().splitlines()
        self.assertEqual(len(lines), 3)
        self.assertIn('"GET / HTTP/1.1" 200', lines[0])
        self.assertEqual(self.events_named("log_suppressed"), [])
        self.harness.advance(60)
        (summary,) = self.events_named("log_suppressed")
        self.assertEqual(formatEvent(summary),
                         "47 more access log lines were not logged: {'access': 47}")
        # Info, as the access lines are: a browser polling the dashboard over one
        # connection passes the per-connection cap every minute, which is no warning.
        self.assertEqual(summary["log_level"], LogLevel.info)
        self.assert_good_served()

    def test_access_log_budget(self) -> None:
        """700 requests on as many connections in a minute: 600 lines and a summary."""
        access = io.StringIO()
        self.harness.site.logFile = access
        for _ in range(700):
            raw, _ = self.harness.connect_raw(raw_get(b"/"))
            self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(len(access.getvalue().splitlines()), 600)
        self.harness.advance(60, step=10)
        (summary,) = self.events_named("log_suppressed")
        self.assertEqual((summary["count"], summary["reasons"]), (100, {"access": 100}))
        # The next minute has its lines again.
        self.harness.connect_raw(raw_get(b"/"))
        self.assertEqual(len(access.getvalue().splitlines()), 601)
        self.assert_good_served()

    def test_pipelined_refused_handshakes_logged_once(self) -> None:
        raw, connection = self.harness.connect_raw(b"")
        connection.client_transport.write(keep_alive_get(b"/ws") * 30 + raw_get(b"/ws"))
        self.harness.flush()
        self.assertEqual(raw.received.count(b"HTTP/1.1 400 Bad Request"), 31)
        self.assertEqual(self.factory.registry.rejected, {"bad_handshake": 31})
        self.assertEqual(len(self.events_named("handshake_refused")), 1)
        self.assert_good_served()


class MaxWarningsOptionTests(SynchronousTestCase):
    """C{--max-warnings}, through the service makeService builds."""

    def refuse(self, stack: Stack, count: int) -> None:
        for _ in range(count):
            raw = stack.get(b"/ws")
            self.assertEqual(raw.status_line, b"HTTP/1.1 400 Bad Request")

    def test_max_warnings(self) -> None:
        events = capture_log(self)
        stack = Stack(self, "--max-warnings", "2")
        self.refuse(stack, 5)
        self.assertEqual(len([e for e in events if e.get("event") == "handshake_refused"]), 2)
        stack.advance(60)
        (summary,) = [e for e in events if e.get("event") == "log_suppressed"]
        self.assertEqual((summary["count"], summary["reasons"]), (3, {"handshake_refused": 3}))
        self.assertEqual(stack.registry.rejected, {"bad_handshake": 5})
        self.assertEqual(stack.status()["server"]["options"]["max-warnings"], 2)

    def test_default_sixty(self) -> None:
        events = capture_log(self)
        stack = Stack(self)
        self.refuse(stack, 61)
        self.assertEqual(len([e for e in events if e.get("event") == "handshake_refused"]), 60)
        stack.advance(60)
        self.assertEqual([e["count"] for e in events if e.get("event") == "log_suppressed"],
                         [1])

    def test_summary_at_stop(self) -> None:
        """The summary of the minute in progress is logged when the service stops."""
        events = capture_log(self)
        stack = Stack(self, "--max-warnings", "1")
        self.refuse(stack, 3)
        stopped = CloseOnStop(stack.registry, stack.clock).stopService()
        self.successResultOf(stopped)
        self.assertEqual([e["count"] for e in events if e.get("event") == "log_suppressed"],
                         [2])
        stack.clock.advance(60)
        self.assertEqual(len([e for e in events if e.get("event") == "log_suppressed"]), 1)
