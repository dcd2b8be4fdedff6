"""
C{/api/fleet}: the document of L{shellylog.dashboard.fleet.fleet_document} from a real
registry and tracker on a L{Clock}, and L{FleetResource}'s once-a-second building.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from shellylog.channels import ChannelSelection, ChannelSpec, channel_key, parse_channel_spec
from shellylog.dashboard.fleet import FLEET_MAX_AGE, FleetResource, api_name, fleet_document
from shellylog.registry import DeviceRecord, DeviceRegistry
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker

#: 2027-01-15T08:00:00Z, a minute's start: 09:00 in Berlin.
T0 = 1_800_000_000
D = "shellypro4pm-aabbccddeeff"
E = "shellyplus1pm-112233445566"
UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def values(apower: float | None) -> ChannelValues:
    return ChannelValues(apower=apower, voltage=230.0, current=None, energy_total=10.0)


def iso(t: float, zone: ZoneInfo = UTC) -> str:
    return datetime.fromtimestamp(t, zone).isoformat()


class FleetDocumentTests(SynchronousTestCase):
    """What the fleet document says of the server, its devices and their channels."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0 + 5)
        self.tracker = ChannelTracker(clock=self.clock, threshold=5, max_carry=10)
        self.registry = DeviceRegistry(sink=self.tracker, clock=self.clock)

    def connect(self, device_id: str) -> DeviceRecord:
        """A device record as the registry keeps it for a device connected now."""
        now = self.clock.seconds()
        record = self.registry.records[device_id] = DeviceRecord(
            device_id, connected=True, connected_since=now, last_frame_at=now)
        return record

    def document(self, specs: tuple[ChannelSpec, ...] = (0, 1, 2, 3),
                 zone: ZoneInfo = UTC) -> dict[str, Any]:
        return fleet_document(
            now=self.clock.seconds(), zone=zone, tz=zone.key, instance="box-1",
            registry=self.registry,
            tracker=self.tracker, selection=ChannelSelection.from_specs(specs))

    def channels(self, document: dict[str, Any], device_id: str = D) -> dict[str, Any]:
        (device,) = [d for d in document["devices"] if d["device_id"] == device_id]
        return {c["channel"]: c for c in device["channels"]}

    def next_minute(self) -> None:
        """The minute ends and the tick writes its rows."""
        self.clock.advance(60)
        self.tracker.close_completed()

    def test_empty(self) -> None:
        """No device yet: the server's time, date and zone, and no device."""
        self.assertEqual(self.document(), {
            "now": iso(T0 + 5), "today": "2027-01-15", "tz": "UTC", "instance": "box-1",
            "devices": []})

    def test_today_is_the_servers_zone(self) -> None:
        """At 23:30 UTC it is tomorrow in Berlin: C{now} and C{today} are Berlin's."""
        self.clock.advance(15 * 3600 + 30 * 60 - 5)  # 23:30 UTC
        document = self.document(zone=BERLIN)
        self.assertEqual(document["today"], "2027-01-16")
        self.assertEqual(document["now"], "2027-01-16T00:30:00+01:00")
        self.assertEqual(document["tz"], "Europe/Berlin")

    def test_connected_device(self) -> None:
        """A connected device: when it connected and sent its last frame, in the zone."""
        record = self.connect(D)
        self.clock.advance(10)
        record.last_frame_at = self.clock.seconds()
        self.tracker.readings(D, {0: values(450.0)})
        (device,) = self.document(zone=BERLIN)["devices"]
        self.assertEqual(
            {k: v for k, v in device.items() if k != "channels"},
            {"device_id": D, "connected": True,
             "connected_since": "2027-01-15T09:00:05+01:00", "left_at": None,
             "last_frame_at": "2027-01-15T09:00:15+01:00"})

    def test_running_channel(self) -> None:
        """
        A channel above the threshold runs since its first minute; its last minute
        written is the one the tick wrote; its power is the latest reading.
        """
        self.connect(D)
        self.tracker.readings(D, {0: values(450.0)})
        self.next_minute()
        self.tracker.readings(D, {0: values(460.5)})
        self.assertEqual(self.channels(self.document(zone=BERLIN))["switch:0"], {
            "channel": "switch:0", "apower_W": 460.5, "running": True,
            "run_since": "2027-01-15T09:00:00+01:00",
            "last_minute_written": "2027-01-15T09:00:00+01:00"})

    def test_idle_channel(self) -> None:
        """A channel at or below the threshold does not run, and has written nothing."""
        self.connect(D)
        self.tracker.readings(D, {1: values(2.5)})
        self.next_minute()
        self.assertEqual(self.channels(self.document())["switch:1"], {
            "channel": "switch:1", "apower_W": 2.5, "running": False, "run_since": None,
            "last_minute_written": None})

    def test_run_that_ended(self) -> None:
        """A channel that ran and stopped: not running, its last minute written kept."""
        self.connect(D)
        self.tracker.readings(D, {0: values(450.0)})
        self.next_minute()
        self.tracker.readings(D, {0: values(0.0)})
        self.next_minute()
        channel = self.channels(self.document())["switch:0"]
        self.assertEqual(
            (channel["running"], channel["run_since"], channel["last_minute_written"]),
            (False, None, iso(T0 + 60)))

    def test_null_power(self) -> None:
        """A channel whose device sent no power: C{apower_W} null."""
        self.connect(D)
        self.tracker.readings(D, {2: values(None)})
        channel = self.channels(self.document())["switch:2"]
        self.assertEqual((channel["apower_W"], channel["running"]), (None, False))

    def test_only_logged_channels(self) -> None:
        """Channels outside C{--channels} are not shown."""
        self.connect(D)
        self.tracker.readings(D, {0: values(450.0), 3: values(99.0),
                                  channel_key("pm1", 0): values(12.0)})
        self.assertEqual(list(self.channels(self.document(specs=(0, 1)))), ["switch:0"])

    def test_rows_order_and_names(self) -> None:
        """
        Every channel with C{*}, in the rows' order (rule 8): switches by number, then the
        other families; a switch named by its component, the others by their CSV cell.
        """
        self.connect(D)
        self.tracker.readings(D, {
            channel_key("em", 0, 2): values(1.0), channel_key("pm1", 0): values(2.0),
            10: values(3.0), 2: values(4.0), channel_key("em", 0): values(5.0),
        })
        names = list(self.channels(self.document(specs=(parse_channel_spec("*"),))))
        self.assertEqual(names, ["switch:2", "switch:10", "em:0", "em:0:b", "pm1:0"])

    def test_disconnected_device(self) -> None:
        """
        A device that left: not connected, its channels kept with their last power, and
        none runs (nothing is carried past a closed connection).
        """
        record = self.connect(D)
        self.tracker.readings(D, {0: values(450.0)})
        self.next_minute()
        self.clock.advance(5)
        # As the registry leaves it: connected_since is the last connection's start.
        record.connected, record.left_at = False, self.clock.seconds()
        self.tracker.disconnected(D)
        (device,) = self.document()["devices"]
        self.assertEqual(
            (device["connected"], device["connected_since"], device["left_at"]),
            (False, None, iso(T0 + 70)))
        self.assertEqual(self.channels(self.document())["switch:0"]["running"], False)
        self.assertEqual(self.channels(self.document())["switch:0"]["apower_W"], 450.0)

    def test_devices_by_id(self) -> None:
        """Every device seen, sorted by id; one without readings has no channel."""
        self.connect(E)
        self.connect(D)
        self.tracker.readings(E, {0: values(1.0)})
        devices = self.document()["devices"]
        self.assertEqual([d["device_id"] for d in devices], [E, D])
        self.assertEqual([c["channel"] for c in devices[0]["channels"]], ["switch:0"])
        self.assertEqual(devices[1]["channels"], [])

    def test_api_channel(self) -> None:
        self.assertEqual(
            [api_name(k) for k in (0, 7, channel_key("cover", 1), channel_key("em", 3, 3))],
            ["switch:0", "switch:7", "cover:1", "em:3:c"])


class FleetResourceTests(SynchronousTestCase):
    """The document as JSON, built at most once in L{FLEET_MAX_AGE} seconds."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.built = 0
        self.resource = FleetResource(self.document, self.clock)

    def document(self) -> dict[str, Any]:
        self.built += 1
        return {"built": self.built, "power": 12.5, "none": None}

    def get(self) -> tuple[DummyRequest, Any]:
        request = DummyRequest([])
        body = self.resource.render_GET(request)  # type: ignore[arg-type]
        return request, json.loads(body)

    def test_json(self) -> None:
        """JSON, never cached by a browser or proxy: it is live."""
        request, document = self.get()
        self.assertEqual(document, {"built": 1, "power": 12.5, "none": None})
        headers = request.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_once_a_second(self) -> None:
        """Many requests within a second cost one document; after it, a new one."""
        for _ in range(50):
            self.get()
            self.clock.advance(FLEET_MAX_AGE / 100)
        self.assertEqual(self.built, 1)
        self.clock.advance(FLEET_MAX_AGE)
        self.assertEqual(self.get()[1]["built"], 2)

    def test_clock_back(self) -> None:
        """A clock set back does not keep the old document for ever."""
        self.get()
        self.clock.rightNow -= 3600
        self.assertEqual(self.get()[1]["built"], 2)
