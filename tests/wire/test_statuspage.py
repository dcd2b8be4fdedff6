"""
C{/status}: the report of L{shellylog.statuspage.status_report} over the real, wired parts
(tracker and minute tick on a L{Clock}, the CSV sink on a temporary file, the device
factory with real WebSocket clients), and the page that serves it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from shellylog import __version__, tap
from shellylog.csvlog import HEADER
from shellylog.statuspage import public_options
from shellylog.tap import Options
from tests.support.frames import DEVICE, notify, switch
from tests.support.stack import T0, Stack
from tests.support.wire import raw_get

OTHER = "shellyplus1pm-112233445566"
PEER = "tcp4:192.0.2.7:40001"  # the harness's first client

#: A full status: channel 0 running, 1 idle, 2 running but not monitored (--channels 0,1).
FULL = {
    "switch:0": switch(450, 230.1, 1.9, 100.0),
    "switch:1": switch(2.5, 230.0, 0.01, 7.0),
    "switch:2": switch(99, 229.0, 0.4, 3.0),
}


def berlin(t: float) -> str:
    """C{t} as the report writes it with C{--tz Europe/Berlin} (in January: +01:00)."""
    return datetime.fromtimestamp(t, ZoneInfo("Europe/Berlin")).isoformat()


class DeviceReportTests(SynchronousTestCase):
    """What C{/status} says of each device and its monitored channels."""

    def setUp(self) -> None:
        self.stack = Stack(self, "--channels", "0,1", "--tz", "Europe/Berlin")

    def only_device(self) -> dict[str, Any]:
        report = self.stack.status()
        self.assertEqual(len(report["devices"]), 1, report["devices"])
        device: dict[str, Any] = report["devices"][0]
        return device

    def test_connected_device(self) -> None:
        stack = self.stack
        client, connection = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))  # at T0 + 5
        stack.advance(10)
        stack.send(client, notify({"switch:0": {"apower": 460.5}}))  # at T0 + 15
        self.assertEqual(connection.server.peer, PEER)
        self.assertEqual(self.only_device(), {
            "device_id": DEVICE,
            "connected": True,
            "peer": PEER,
            "connected_since": "2027-01-15T09:00:05+01:00",
            "last_frame_at": "2027-01-15T09:00:15+01:00",
            "frames_received": 2,
            "reconnects": 0,
            "channels": {
                "0": {"apower_W": 460.5, "voltage_V": 230.1, "current_A": 1.9,
                      "energy_total_Wh": 100.0, "active": True, "last_minute_written": None},
                "1": {"apower_W": 2.5, "voltage_V": 230.0, "current_A": 0.01,
                      "energy_total_Wh": 7.0, "active": False, "last_minute_written": None},
            },
        })
        self.assertEqual(berlin(T0 + 5), "2027-01-15T09:00:05+01:00")

    def test_last_minute_written_after_a_tick(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))
        stack.advance_to(T0 + 60)  # the tick writes minute T0 of channel 0
        channels = self.only_device()["channels"]
        self.assertEqual(channels["0"]["last_minute_written"], "2027-01-15T09:00:00+01:00")
        self.assertIsNone(channels["1"]["last_minute_written"])
        with open(stack.csv, encoding="utf-8") as f:
            rows = f.read().splitlines()[1:]
        self.assertEqual(rows, [f"2027-01-15T09:00:00+01:00,{DEVICE},0,450,230.1,1.9,100.0"])
        # Channel 0 is still running: the next tick writes the carried minute.
        stack.advance(60)
        channels = self.only_device()["channels"]
        self.assertEqual(channels["0"]["last_minute_written"], "2027-01-15T09:01:00+01:00")
        self.assertTrue(channels["0"]["active"])

    def test_only_monitored_channels(self) -> None:
        """
        Channel 2 is known (from the file of an earlier run that logged it) but not
        monitored now: not shown.
        """
        earlier = f"{HEADER}\n2027-01-15T08:59:00+01:00,{DEVICE},2,99,229.0,0.4,3.0\n"
        stack = Stack(self, "--channels", "0,1", "--tz", "Europe/Berlin", csv_text=earlier)
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))
        # The tracker does know channel 2, so a leak would show.
        self.assertEqual(set(stack.tracker.view(DEVICE)), {0, 1, 2})
        (device,) = stack.status()["devices"]
        self.assertEqual(set(device["channels"]), {"0", "1"})

    def test_disconnected_device_keeps_its_last_values(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))
        client.sendClose(code=1000)
        stack.advance(3)
        device = self.only_device()
        self.assertFalse(device["connected"])
        self.assertEqual(device["reconnects"], 0)
        self.assertEqual(device["frames_received"], 1)
        self.assertEqual(device["last_frame_at"], berlin(T0 + 5))
        channel = device["channels"]["0"]
        self.assertEqual(channel["apower_W"], 450)
        # Nothing is running on a device that is gone.
        self.assertFalse(channel["active"])
        self.assertEqual(stack.status()["server"]["connected_devices"], 0)

    def test_reconnect_counted(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))
        client.sendClose(code=1000)
        stack.advance(20)
        again, connection = stack.connect()
        stack.send(again, notify({"switch:0": {"apower": 300}}))
        device = self.only_device()
        self.assertEqual(device["reconnects"], 1)
        self.assertTrue(device["connected"])
        self.assertEqual(device["peer"], connection.server.peer)
        self.assertEqual(device["connected_since"], berlin(T0 + 25))
        self.assertEqual(device["last_frame_at"], berlin(T0 + 25))
        # Frames over all its connections since start.
        self.assertEqual(device["frames_received"], 2)
        self.assertEqual(device["channels"]["0"]["apower_W"], 300)
        self.assertTrue(device["channels"]["0"]["active"])

    def test_replaced_connection(self) -> None:
        """A device that dials again while its old connection is open: one reconnect."""
        stack = self.stack
        old, _ = stack.connect()
        stack.send(old, notify(FULL, method="NotifyFullStatus"))
        stack.advance(2)
        new, connection = stack.connect()
        stack.send(new, notify({"switch:0": {"apower": 300}}))
        stack.advance(2)  # the old connection is closed meanwhile
        self.assertIsNotNone(old.closed)
        device = self.only_device()
        self.assertEqual(device["reconnects"], 1)
        self.assertTrue(device["connected"])
        self.assertEqual(device["peer"], connection.server.peer)
        self.assertNotEqual(device["peer"], PEER)
        self.assertEqual(stack.status()["server"]["connected_devices"], 1)

    def test_devices_sorted_by_id(self) -> None:
        stack = self.stack
        for device in (OTHER, DEVICE):
            client, _ = stack.connect()
            stack.send(client, notify({"switch:0": {"apower": 10}}, src=device))
        ids = [d["device_id"] for d in stack.status()["devices"]]
        self.assertEqual(ids, sorted([OTHER, DEVICE]))


class ServerReportTests(SynchronousTestCase):
    """What C{/status} says of the server."""

    def setUp(self) -> None:
        self.stack = Stack(self, "--channels", "0", "--tz", "Europe/Berlin")

    def test_version_and_uptime(self) -> None:
        stack = self.stack
        stack.advance(90)
        stack.clock.advance(0.5)
        server = stack.status()["server"]
        self.assertEqual(server["version"], __version__)
        self.assertEqual(server["started_at"], "2027-01-15T09:00:05+01:00")
        self.assertEqual(server["uptime_s"], 90.5)

    def test_instance(self) -> None:
        """The instance's name comes first: which of several behind a balancer answered."""
        server = Stack(self, "--instance", "box-1").status()["server"]
        self.assertEqual(next(iter(server.items())), ("instance", "box-1"))
        self.assertEqual(server["options"]["instance"], "box-1")

    def test_instance_is_the_host_name(self) -> None:
        self.patch(socket, "gethostname", lambda: "collector-7.example.net")
        self.assertEqual(Stack(self).status()["server"]["instance"], "collector-7")

    def test_rows_written_and_pending(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450, 230.1, 1.9, 100.0)}))
        server = stack.status()["server"]
        self.assertEqual(
            {k: server[k] for k in ("connected_devices", "rows_written", "rows_pending",
                                    "rows_dropped", "write_problem")},
            {"connected_devices": 1, "rows_written": 0, "rows_pending": 0, "rows_dropped": 0,
             "write_problem": None},
        )
        # The disk is full at the first tick: the row waits.
        stack.fail_writes()
        stack.advance_to(T0 + 60)
        server = stack.status()["server"]
        self.assertEqual((server["rows_written"], server["rows_pending"]), (0, 1))
        self.assertEqual(server["write_problem"],
                         f"cannot write {stack.csv}: No space left on device")
        # /status still answers 200, with the same document.
        self.assertEqual(stack.get_status()["server"], server)
        # The disk has room again: the waiting row and the carried minute are written.
        stack.disk_full = False
        stack.advance(60)
        server = stack.status()["server"]
        self.assertEqual(
            (server["rows_written"], server["rows_pending"], server["write_problem"]),
            (2, 0, None),
        )
        channel = stack.status()["devices"][0]["channels"]["0"]
        self.assertEqual(channel["last_minute_written"], "2027-01-15T09:01:00+01:00")


class StatusPageTests(SynchronousTestCase):
    """C{GET /status} on the site makeService builds."""

    def test_json(self) -> None:
        stack = Stack(self, "--channels", "0")
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450, 230.1, 1.9, 100.0)}))
        raw = stack.get(b"/status")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(raw.headers[b"content-type"], b"application/json")
        self.assertEqual(raw.headers[b"cache-control"], b"no-store")
        document = json.loads(raw.body)
        self.assertEqual(document, json.loads(json.dumps(stack.status())) | {
            "page": {"offset": 0, "limit": 1000, "total": 1, "next": None}})
        self.assertEqual([d["device_id"] for d in document["devices"]], [DEVICE])
        self.assertEqual(document["devices"][0]["channels"]["0"]["apower_W"], 450)
        self.assertEqual(document["server"]["options"]["channels"], [0])
        self.assertIs(document["server"]["options"]["token_required"], False)

    def test_only_get(self) -> None:
        stack = Stack(self)
        raw, _ = stack.harness.connect_raw(
            b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 405"), raw.status_line)


def device_id(n: int) -> str:
    return f"shellypro4pm-{n:012x}"


class StatusLoadTests(SynchronousTestCase):
    """
    C{/status} is built at most once a second, however often it is asked for, and comes
    in pages of at most 1,000 devices.
    """

    def setUp(self) -> None:
        self.builds: list[float] = []
        # The name as tap calls it (it imports it from shellylog.statuspage).
        real: Callable[..., dict[str, Any]] = vars(tap)["status_report"]

        def counting(**kwargs: Any) -> dict[str, Any]:
            self.builds.append(kwargs["now"])
            return real(**kwargs)

        self.patch(tap, "status_report", counting)
        # Every test device connects from one address.
        self.stack = Stack(self, "--channels", "0", "--max-per-address", "2000")

    def connect_devices(self, count: int, first: int = 0) -> None:
        for n in range(first, first + count):
            client, _ = self.stack.connect()
            self.stack.send(client, notify({"switch:0": switch(10 + n)}, src=device_id(n)))

    def get(self, query: bytes = b"") -> tuple[bytes, Any]:
        raw = self.stack.get(b"/status" + query)
        body = json.loads(raw.body) if raw.status_line == b"HTTP/1.1 200 OK" else raw.body
        return raw.status_line, body

    def test_built_once_a_second(self) -> None:
        stack = self.stack
        self.connect_devices(2)
        first = self.get()[1]
        self.assertEqual(len(first["devices"]), 2)
        # More devices within the second: the same document, not built again.
        self.connect_devices(1, first=2)
        stack.clock.advance(0.5)
        for _ in range(20):
            self.assertEqual(self.get()[1], first)
        self.assertEqual(self.builds, [T0 + 5])
        # A second after it was built, the next request gets a new one.
        stack.clock.advance(0.5)
        fresh = self.get()[1]
        self.assertEqual([d["device_id"] for d in fresh["devices"]],
                         [device_id(n) for n in range(3)])
        self.assertEqual(fresh["server"]["uptime_s"], 1.0)
        self.assertEqual(self.builds, [T0 + 5, T0 + 6])

    def test_pipelined_requests_build_it_once(self) -> None:
        self.connect_devices(50)
        count = 200
        raw, connection = self.stack.harness.connect_raw(b"")
        request = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
        connection.client_transport.write(request * (count - 1) + raw_get(b"/status"))
        self.stack.harness.flush()
        self.assertEqual(raw.received.count(b"HTTP/1.1 200 OK"), count)
        self.assertTrue(raw.lost)
        self.assertEqual(len(self.builds), 1)

    def test_pages(self) -> None:
        self.connect_devices(5)
        ids = [device_id(n) for n in range(5)]
        status, page = self.get(b"?limit=2")
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual([d["device_id"] for d in page["devices"]], ids[:2])
        self.assertEqual(page["page"], {"offset": 0, "limit": 2, "total": 5,
                                        "next": "/status?offset=2&limit=2"})
        self.assertEqual(page["server"]["connected_devices"], 5)
        page = self.get(b"?offset=2&limit=2")[1]
        self.assertEqual([d["device_id"] for d in page["devices"]], ids[2:4])
        self.assertEqual(page["page"]["next"], "/status?offset=4&limit=2")
        page = self.get(b"?offset=4&limit=2")[1]
        self.assertEqual([d["device_id"] for d in page["devices"]], ids[4:])
        self.assertIsNone(page["page"]["next"])
        page = self.get(b"?offset=9")[1]
        self.assertEqual((page["devices"], page["page"]),
                         ([], {"offset": 9, "limit": 1000, "total": 5, "next": None}))
        # All pages of one second come from one document.
        self.assertEqual(len(self.builds), 1)

    def test_default_page_is_a_thousand(self) -> None:
        self.connect_devices(1001)
        page = self.get()[1]
        self.assertEqual(len(page["devices"]), 1000)
        self.assertEqual(page["page"], {"offset": 0, "limit": 1000, "total": 1001,
                                        "next": "/status?offset=1000&limit=1000"})
        self.assertEqual([d["device_id"] for d in self.get(b"?offset=1000")[1]["devices"]],
                         [device_id(1000)])

    def test_bad_page_arguments(self) -> None:
        for query, answer in [
            (b"?limit=0", b"limit: a whole number from 1 to 1000, got '0'\n"),
            (b"?limit=1001", b"limit: a whole number from 1 to 1000, got '1001'\n"),
            (b"?limit=-1", b"limit: a whole number from 1 to 1000, got '-1'\n"),
            (b"?offset=x", b"offset: a whole number from 0, got 'x'\n"),
            (b"?offset=99999999999999999999", b"offset: a whole number from 0, "
                                               b"got '99999999999999999999'\n"),
            (b"?offset=%C2%B2", b"offset: a whole number from 0, got '\\xc2\\xb2'\n"),
        ]:
            with self.subTest(query=query):
                status, body = self.get(query)
                self.assertEqual((status, body), (b"HTTP/1.1 400 Bad Request", answer))
        self.assertEqual(self.builds, [])


class TokenNeverShownTests(SynchronousTestCase):
    """The options in C{/status} never give a token away."""

    SECRET = "s3cret"

    def assert_hidden(self, stack: Stack, *, path: str) -> dict[str, Any]:
        # A device that gives the token, so the report has something to show.
        client, _ = stack.connect(path)
        self.assertTrue(client.opened)
        stack.send(client, notify({"switch:0": switch(450, 230.1, 1.9, 100.0)}))
        self.assertEqual(len(stack.status()["devices"]), 1)
        text = json.dumps(stack.status())
        self.assertNotIn(self.SECRET, text)
        raw = stack.get(b"/status")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertNotIn(self.SECRET.encode(), raw.received)
        options: dict[str, Any] = json.loads(raw.body)["server"]["options"]
        self.assertIs(options["token_required"], True)
        self.assertNotIn("token", options)
        return options

    def test_token(self) -> None:
        stack = Stack(self, "--token", self.SECRET)
        self.assertEqual(stack.options["token"], self.SECRET)  # it is in the options
        options = self.assert_hidden(stack, path=f"/ws?token={self.SECRET}")
        self.assertIsNone(options["token-file"])

    def test_token_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{self.SECRET} shellypro4pm-*\n")
        stack = Stack(self, "--token-file", path)
        options = self.assert_hidden(stack, path=f"/ws?token={self.SECRET}")
        # The file's name is shown; what is in it is not.
        self.assertEqual(options["token-file"], path)

    def test_no_token(self) -> None:
        options = public_options(_parse().config)
        self.assertIs(options["token_required"], False)

    def test_shown_options(self) -> None:
        """Every option but the token is shown, with the value in force."""
        options = public_options(_parse("--channels", "3,1", "--allow", "shellypro*",
                                        "--max-message", "1MiB", "--token", self.SECRET).config)
        self.assertEqual(options["channels"], [1, 3])
        self.assertEqual(options["allow"], ["shellypro*"])
        self.assertEqual(options["max-message"], 1024 * 1024)
        self.assertEqual(options["port"], "tcp:5000")
        self.assertIs(options["token_required"], True)
        self.assertNotIn(self.SECRET, json.dumps(options))
        # Every option of the command line is either shown or is the token.
        names = {name.rstrip("=") for name in Options().longOpt} - {"help", "version"}
        self.assertEqual(names - set(options), {"token"})
        self.assertEqual(set(options) - names, {"token_required"})

    def test_page_options(self) -> None:
        """
        The options as the page shows them, in this order, with these JSON values (those
        of C{--fsync off --poll 0}, as L{Stack} runs).
        """
        stack = Stack(self, "--instance", "box-1")
        raw = stack.get(b"/status")
        start = raw.body.index(b'"options": {')
        end = raw.body.index(b"\n    }", start) + 6
        self.assertEqual(raw.body[start:end].decode("utf-8").split("\n"), [
            '"options": {',
            '      "port": "tcp:5000",',
            f'      "csv": {json.dumps(stack.csv)},',
            '      "channels": [',
            '        0,',
            '        1,',
            '        2,',
            '        3',
            '      ],',
            '      "columns": [],',
            '      "threshold": 5.0,',
            '      "tz": "UTC",',
            '      "max-carry": 10,',
            '      "poll": 0.0,',
            '      "fsync": false,',
            '      "max-pending": 1000000,',
            '      "channel-metrics": true,',
            '      "max-message": 262144,',
            '      "max-rate": 600,',
            '      "max-bytes-rate": 1048576,',
            '      "max-connections": 10000,',
            '      "max-per-address": 200,',
            '      "max-devices": 20000,',
            '      "max-warnings": 60,',
            '      "allow": [],',
            '      "allow-origin": [],',
            '      "token-file": null,',
            '      "id-pattern": "[a-z][a-z0-9]{0,47}-[0-9a-f]{12}",',
            '      "web-auth": null,',
            '      "db": null,',
            '      "db-password-file": null,',
            '      "db-table": "shellylog_minutes",',
            '      "instance": "box-1",',
            '      "token_required": false',
            '    }',
        ])


def _parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--csv", os.path.abspath("status-test.csv"), *args])
    return options
