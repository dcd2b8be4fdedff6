"""
C{/api/fleet}: the document of L{shellylog.dashboard.fleet.fleet_document} from a real
registry and tracker on a L{Clock}, and L{FleetResource}'s once-a-second building.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from shellylog.channels import ChannelSelection, ChannelSpec, channel_key, parse_channel_spec
from shellylog.dashboard.fleet import (
    FLEET_MAX_AGE,
    FLEET_PAGE_SIZE,
    FleetQuery,
    FleetResource,
    api_name,
    device_ids,
    fleet_document,
    matching,
)
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
                 zone: ZoneInfo = UTC, query: FleetQuery | None = None,
                 ids: list[str] | None = None) -> dict[str, Any]:
        return fleet_document(
            now=self.clock.seconds(), zone=zone, tz=zone.key, instance="box-1",
            registry=self.registry,
            tracker=self.tracker, selection=ChannelSelection.from_specs(specs),
            query=query or FleetQuery(), ids=ids)

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
            "devices": [],
            "page": {"offset": 0, "limit": FLEET_PAGE_SIZE, "total": 0, "next": None},
            "devices_known": 0})

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

    def fleet_of(self, count: int) -> list[str]:
        """C{count} connected devices, each with a channel; their ids, sorted."""
        ids = [f"shellyplus1pm-{n:012x}" for n in range(count)]
        for device_id in reversed(ids):
            self.connect(device_id)
            self.tracker.readings(device_id, {0: values(1.0)})
        return ids

    def page(self, offset: int = 0, limit: int = FLEET_PAGE_SIZE, q: str = "",
             ids: list[str] | None = None) -> tuple[list[str], dict[str, Any], int]:
        document = self.document(query=FleetQuery(offset, limit, q), ids=ids)
        return ([d["device_id"] for d in document["devices"]], document["page"],
                document["devices_known"])

    def test_pages(self) -> None:
        """
        C{limit} devices from C{offset}, in the order of their ids; C{total}, those that
        match; C{next}, the offset of the next page, C{null} on the last; every device
        known in C{devices_known}.
        """
        ids = self.fleet_of(5)
        self.assertEqual(self.page(0, 2), (ids[:2], {
            "offset": 0, "limit": 2, "total": 5, "next": 2}, 5))
        self.assertEqual(self.page(2, 2), (ids[2:4], {
            "offset": 2, "limit": 2, "total": 5, "next": 4}, 5))
        self.assertEqual(self.page(4, 2), (ids[4:], {
            "offset": 4, "limit": 2, "total": 5, "next": None}, 5))
        self.assertEqual(self.page(3, 2)[1]["next"], None)
        self.assertEqual(self.page(5, 2), ([], {
            "offset": 5, "limit": 2, "total": 5, "next": None}, 5))
        self.assertEqual(self.page(), (ids, {
            "offset": 0, "limit": FLEET_PAGE_SIZE, "total": 5, "next": None}, 5))

    def test_default_page(self) -> None:
        """Without a query: the first L{FLEET_PAGE_SIZE} devices, not the fleet."""
        ids = self.fleet_of(FLEET_PAGE_SIZE + 1)
        self.assertEqual(self.page(), (ids[:FLEET_PAGE_SIZE], {
            "offset": 0, "limit": FLEET_PAGE_SIZE, "total": FLEET_PAGE_SIZE + 1,
            "next": FLEET_PAGE_SIZE}, FLEET_PAGE_SIZE + 1))

    def test_filter(self) -> None:
        """
        C{q}: the devices whose id contains it, whatever the case of either; C{total}
        counts them, C{devices_known} every device; pages of them.
        """
        self.connect(D)
        self.connect(E)
        self.connect("shellypro4pm-AABBCC000000")
        self.assertEqual(self.page(q="AABBCC"), (["shellypro4pm-AABBCC000000", D], {
            "offset": 0, "limit": FLEET_PAGE_SIZE, "total": 2, "next": None}, 3))
        self.assertEqual(self.page(q="plus1PM")[0], [E])
        self.assertEqual(self.page(q="pro4pm", limit=1), (["shellypro4pm-AABBCC000000"], {
            "offset": 0, "limit": 1, "total": 2, "next": 1}, 3))
        self.assertEqual(self.page(q="pro4pm", offset=1, limit=1)[0], [D])
        self.assertEqual(self.page(q="nothing"), ([], {
            "offset": 0, "limit": FLEET_PAGE_SIZE, "total": 0, "next": None}, 3))

    def test_matching(self) -> None:
        ids = ["a-X1", "b-x1", "c-y"]
        self.assertEqual(matching(ids, ""), ids)
        self.assertEqual(matching(ids, "x1"), ["a-X1", "b-x1"])
        self.assertEqual(matching(ids, "-Y"), ["c-y"])

    def test_only_the_page_is_built(self) -> None:
        """Only the page's devices are looked up in the tracker: not the fleet's."""
        ids = self.fleet_of(50)
        looked: list[str] = []
        # The tracker has slots: its class is patched.
        view, runs = ChannelTracker.view, ChannelTracker.runs

        def viewed(tracker: ChannelTracker, device_id: str) -> Any:
            looked.append(device_id)
            return view(tracker, device_id)

        def ran(tracker: ChannelTracker, device_id: str) -> Any:
            looked.append(device_id)
            return runs(tracker, device_id)

        self.patch(ChannelTracker, "view", viewed)
        self.patch(ChannelTracker, "runs", ran)
        self.page(10, 3)
        self.assertEqual(sorted(set(looked)), ids[10:13])
        looked.clear()
        self.page(q=ids[42][-3:])
        self.assertEqual(sorted(set(looked)), [ids[42]])

    def test_ids_given(self) -> None:
        """
        The ids given (a second old) are the fleet's: a device come since is not in it
        yet, one forgotten since is left out of its page (but still counted).
        """
        ids = self.fleet_of(3)
        self.assertEqual(device_ids(self.registry), ids)
        self.connect("shellyplus1pm-ffffffffffff")
        del self.registry.records[ids[1]]
        self.assertEqual(self.page(ids=ids), ([ids[0], ids[2]], {
            "offset": 0, "limit": FLEET_PAGE_SIZE, "total": 3, "next": None}, 3))
        self.assertEqual(self.page()[2], 3)

    def test_api_channel(self) -> None:
        self.assertEqual(
            [api_name(k) for k in (0, 7, channel_key("cover", 1), channel_key("em", 3, 3))],
            ["switch:0", "switch:7", "cover:1", "em:3:c"])


class FleetResourceTests(SynchronousTestCase):
    """
    A page of the document as JSON, each built at most once in L{FLEET_MAX_AGE} seconds
    from the ids taken at most once in that time; the query parsed.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.built: list[FleetQuery] = []
        self.looked = 0
        self.resource = FleetResource(self.document, self.ids, self.clock)

    def ids(self) -> list[str]:
        self.looked += 1
        return [f"d{self.looked}"]

    def document(self, ids: Sequence[str], query: FleetQuery) -> dict[str, Any]:
        self.built.append(query)
        return {"built": len(self.built), "ids": list(ids), "offset": query.offset,
                "limit": query.limit, "q": query.q, "power": 12.5, "none": None}

    def get(self, args: dict[bytes, list[bytes]] | None = None,
            path: list[bytes] | None = None) -> tuple[DummyRequest, bytes]:
        request = DummyRequest(path or [])
        request.args = args or {}
        body = self.resource.render_GET(request)  # type: ignore[arg-type]
        return request, body

    def json(self, args: dict[bytes, list[bytes]] | None = None) -> Any:
        request, body = self.get(args)
        self.assertEqual(request.responseCode, None)  # 200
        return json.loads(body)

    def test_json(self) -> None:
        """JSON, never cached by a browser or proxy: it is live."""
        request, body = self.get()
        self.assertEqual(json.loads(body), {
            "built": 1, "ids": ["d1"], "offset": 0, "limit": FLEET_PAGE_SIZE, "q": "",
            "power": 12.5, "none": None})
        headers = request.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_query(self) -> None:
        """C{offset}, C{limit} and C{q} make the page's query."""
        self.assertEqual(self.json({b"offset": [b"400"], b"limit": [b"1000"],
                                    b"q": ["Pro4PM-é".encode()]})["built"], 1)
        self.assertEqual(self.built, [FleetQuery(400, 1000, "Pro4PM-é")])

    def test_bad_query(self) -> None:
        """A bad argument: 400 in plain text, and nothing built."""
        for args, message in [
            ({b"limit": [b"1001"]}, b"limit: a whole number from 1 to 1000, got '1001'\n"),
            ({b"limit": [b"0"]}, b"limit: a whole number from 1 to 1000, got '0'\n"),
            ({b"offset": [b"-5"]}, b"offset: a whole number from 0, got '-5'\n"),
            ({b"q": [b"x" * 65]}, b"q: at most 64 characters, got 65\n"),
            ({b"q": [b"a", b"b"]}, b"q: given 2 times, expected once\n"),
            ({b"q": [b"\xff"]}, b"q: not UTF-8 text\n"),
        ]:
            request, body = self.get(args)
            self.assertEqual((request.responseCode, body), (400, message), args)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                             [b"text/plain; charset=utf-8"])
        self.assertEqual((self.built, self.looked), ([], 0))

    def test_nothing_below(self) -> None:
        """A path below C{/api/fleet}: 404."""
        request, _ = self.get(path=[b"x"])
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(self.built, [])

    def test_once_a_second(self) -> None:
        """
        Many requests within a second cost one look at the ids and one document a page
        asked for; after it, the ids and the pages anew.
        """
        pages = [{}, {b"limit": [b"5"]}, {b"q": [b"x"]}, {b"offset": [b"5"], b"limit": [b"5"]}]
        for _ in range(20):
            for args in pages:
                self.get(args)
            self.clock.advance(FLEET_MAX_AGE / 100)
        self.assertEqual(self.looked, 1)
        self.assertEqual(self.built, [FleetQuery(), FleetQuery(0, 5), FleetQuery(q="x"),
                                      FleetQuery(5, 5)])
        self.clock.advance(FLEET_MAX_AGE)
        self.assertEqual(self.json({b"limit": [b"5"]}), {
            "built": 5, "ids": ["d2"], "offset": 0, "limit": 5, "q": "", "power": 12.5,
            "none": None})
        self.assertEqual(self.looked, 2)

    def test_pages_kept(self) -> None:
        """
        A peer that asks for page after page within a second gets each built, but the
        pages kept are bounded: the ones before are built again.
        """
        for offset in range(100):
            self.get({b"offset": [b"%d" % offset]})
        self.assertEqual(len(self.built), 100)
        # The latest page is kept; the first, long gone, is built again.
        self.get({b"offset": [b"99"]})
        self.assertEqual(len(self.built), 100)
        self.get({b"offset": [b"0"]})
        self.assertEqual(len(self.built), 101)
        self.assertEqual(self.looked, 1)

    def test_clock_back(self) -> None:
        """A clock set back does not keep the old document for ever."""
        self.get()
        self.clock.rightNow -= 3600
        self.assertEqual(self.json()["built"], 2)
        self.assertEqual(self.looked, 2)
