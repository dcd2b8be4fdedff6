"""
The dashboard over the real site as C{makeService} wires it (L{tests.support.stack.Stack}):
C{/api/fleet} with real devices, the page and its assets under C{/dashboard/}, their
headers, and C{/} sending browsers to the dashboard while health checks still get C{ok}.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import shellylog.tap
from shellylog.dashboard.page import CONTENT_SECURITY_POLICY, STATIC
from shellylog.web import asks_for_html
from tests.support.frames import DEVICE, notify, switch
from tests.support.stack import T0, Stack
from tests.support.wire import RawClient, raw_get

FULL = {
    "switch:0": switch(450, 230.1, 1.9, 100.0),
    "switch:1": switch(2.5, 230.0, 0.01, 7.0),
    "switch:2": switch(99, 229.0, 0.4, 3.0),
}


class FleetApiTests(SynchronousTestCase):
    """C{GET /api/fleet} on the wired server."""

    def setUp(self) -> None:
        self.stack = Stack(self, "--channels", "0,1", "--tz", "Europe/Berlin",
                           "--instance", "box-1")

    def fleet(self) -> dict[str, Any]:
        raw = self.stack.get(b"/api/fleet")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(raw.headers[b"content-type"], b"application/json")
        self.assertEqual(raw.headers[b"cache-control"], b"no-store")
        document: dict[str, Any] = json.loads(raw.body)
        return document

    def test_devices_live(self) -> None:
        """A device's logged channels with their power and running state, in --tz."""
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))  # at T0 + 5
        stack.advance_to(T0 + 60)  # the tick writes minute T0 of switch:0
        self.assertEqual(self.fleet(), {
            "now": "2027-01-15T09:01:00+01:00",
            "today": "2027-01-15",
            "tz": "Europe/Berlin",
            "instance": "box-1",
            "devices": [{
                "device_id": DEVICE,
                "connected": True,
                "connected_since": "2027-01-15T09:00:05+01:00",
                "left_at": None,
                "last_frame_at": "2027-01-15T09:00:05+01:00",
                "channels": [
                    {"channel": "switch:0", "apower_W": 450, "running": True,
                     "run_since": "2027-01-15T09:00:00+01:00",
                     "last_minute_written": "2027-01-15T09:00:00+01:00"},
                    {"channel": "switch:1", "apower_W": 2.5, "running": False,
                     "run_since": None, "last_minute_written": None},
                ],
            }],
            "page": {"offset": 0, "limit": 200, "total": 1, "next": None},
            "devices_known": 1,
        })

    def test_only_its_documents(self) -> None:
        """C{/api} itself, a path below C{/api/fleet} or C{/api/day}, an unknown document: 404."""
        for path in [b"/api", b"/api/", b"/api/fleet/x", b"/api/fleet/x?limit=5",
                     b"/api/day/x", b"/api/day/anything/else",
                     b"/api/day/x?device=" + DEVICE.encode() + b"&channel=switch:0",
                     b"/api/nothing"]:
            raw = self.stack.get(path)
            self.assertEqual(raw.status_line, b"HTTP/1.1 404 Not Found", path)

    def test_power_changes(self) -> None:
        """A new power is served once the second's document is old; the device leaves."""
        stack = self.stack
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))
        self.fleet()
        stack.send(client, notify({"switch:0": {"apower": 612.5}}))
        stack.advance(2)
        (device,) = self.fleet()["devices"]
        self.assertEqual(device["channels"][0]["apower_W"], 612.5)
        client.sendClose(code=1000)
        stack.advance(2)
        (device,) = self.fleet()["devices"]
        self.assertEqual((device["connected"], device["channels"][0]["running"]),
                         (False, False))
        self.assertEqual((device["connected_since"], device["left_at"]),
                         (None, "2027-01-15T09:00:07+01:00"))


#: Three devices, in the order of their ids.
THREE = ["shellyplus1pm-001122334455", "shellypro4pm-aabbccddeeff", "shellypro4pm-ffeeddccbbaa"]


class FleetQueryTests(SynchronousTestCase):
    """C{GET /api/fleet?offset=N&limit=M&q=TEXT} on the wired server: pages and filters."""

    def setUp(self) -> None:
        self.stack = Stack(self, "--channels", "0,1")
        for device in reversed(THREE):
            client, _ = self.stack.connect()
            self.stack.send(client, notify({"switch:0": switch(10)}, src=device))

    def fleet(self, query: bytes) -> dict[str, Any]:
        raw = self.stack.get(b"/api/fleet?" + query)
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK", query)
        self.assertEqual(raw.headers[b"content-type"], b"application/json")
        document: dict[str, Any] = json.loads(raw.body)
        return document

    def shown(self, query: bytes) -> tuple[list[str], dict[str, Any], int]:
        document = self.fleet(query)
        return ([d["device_id"] for d in document["devices"]], document["page"],
                document["devices_known"])

    def test_pages(self) -> None:
        """Pages of C{limit} devices from C{offset}, by id; C{next} is the next offset."""
        self.assertEqual(self.shown(b"limit=2"), (THREE[:2], {
            "offset": 0, "limit": 2, "total": 3, "next": 2}, 3))
        self.assertEqual(self.shown(b"offset=2&limit=2"), (THREE[2:], {
            "offset": 2, "limit": 2, "total": 3, "next": None}, 3))
        self.assertEqual(self.shown(b"offset=1"), (THREE[1:], {
            "offset": 1, "limit": 200, "total": 3, "next": None}, 3))
        self.assertEqual(self.shown(b"offset=7&limit=1000"), ([], {
            "offset": 7, "limit": 1000, "total": 3, "next": None}, 3))
        # An empty q: every device.
        self.assertEqual(self.shown(b"q=")[0], THREE)

    def test_filter(self) -> None:
        """C{q}: the devices whose id contains it, whatever its case; total counts them."""
        self.assertEqual(self.shown(b"q=PRO4pm"), (THREE[1:], {
            "offset": 0, "limit": 200, "total": 2, "next": None}, 3))
        self.assertEqual(self.shown(b"q=pro4pm&limit=1"), (THREE[1:2], {
            "offset": 0, "limit": 1, "total": 2, "next": 1}, 3))
        self.assertEqual(self.shown(b"q=pro4pm&limit=1&offset=1")[0], THREE[2:])
        self.assertEqual(self.shown(b"q=aabbcc")[0], [THREE[1]])
        self.assertEqual(self.shown(b"q=%41ABBcc")[0], [THREE[1]])
        self.assertEqual(self.shown(b"q=nothing-such")[1]["total"], 0)
        # At most 64 characters, not bytes.
        self.assertEqual(self.shown(b"q=" + b"x" * 64)[0], [])
        self.assertEqual(self.shown(b"q=" + b"%C3%A9" * 64)[0], [])

    def test_bad_queries(self) -> None:
        """A bad C{offset}, C{limit} or C{q}: 400, in plain text, saying which and why."""
        for query, message in [
            (b"offset=-1", "offset: a whole number from 0, got '-1'"),
            (b"offset=x", "offset: a whole number from 0, got 'x'"),
            (b"offset=", "offset: a whole number from 0, got ''"),
            (b"limit=0", "limit: a whole number from 1 to 1000, got '0'"),
            (b"limit=1001", "limit: a whole number from 1 to 1000, got '1001'"),
            (b"limit=2.5", "limit: a whole number from 1 to 1000, got '2.5'"),
            (b"q=" + b"x" * 65, "q: at most 64 characters, got 65"),
            (b"q=" + b"%C3%A9" * 65, "q: at most 64 characters, got 65"),
            (b"q=a&q=b", "q: given 2 times, expected once"),
            (b"q=%ff", "q: not UTF-8 text"),
        ]:
            raw = self.stack.get(b"/api/fleet?" + query)
            self.assertEqual(raw.status_line, b"HTTP/1.1 400 Bad Request", query)
            self.assertEqual(raw.headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertEqual(raw.headers[b"cache-control"], b"no-store")
            self.assertEqual(raw.body.decode(), message + "\n", query)

    def test_once_a_second(self) -> None:
        """
        The ids are taken once a second, and each page built once in it: many requests of
        a few pages cost one look at the registry and one build a page; a device that
        comes meanwhile is in the pages of the next second.
        """
        built: list[tuple[int, int, str]] = []
        looked: list[int] = []

        def fleet_document(**kwargs: Any) -> dict[str, Any]:
            query = kwargs["query"]
            built.append((query.offset, query.limit, query.q))
            return real_document(**kwargs)

        def device_ids(registry: Any) -> list[str]:
            looked.append(1)
            return real_ids(registry)

        # The names makeService's closures call, looked up at each call.
        real_document = shellylog.tap.fleet_document  # type: ignore[attr-defined]
        real_ids = shellylog.tap.device_ids  # type: ignore[attr-defined]
        self.patch(shellylog.tap, "fleet_document", fleet_document)
        self.patch(shellylog.tap, "device_ids", device_ids)
        queries = [b"", b"limit=1", b"q=pro", b"limit=1&offset=1"]
        for _ in range(5):
            for query in queries:
                self.assertEqual(self.fleet(query)["devices_known"], 3)
        self.assertEqual(len(looked), 1)
        self.assertEqual(built, [(0, 200, ""), (0, 1, ""), (0, 200, "pro"), (1, 1, "")])
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"switch:0": switch(10)}, src="shellyplus1pm-999999999999"))
        self.assertEqual(self.fleet(b"")["devices_known"], 3)
        self.stack.advance(1)
        self.assertEqual(self.fleet(b"")["devices_known"], 4)
        self.assertEqual(self.fleet(b"q=999")["page"]["total"], 1)
        self.assertEqual(len(looked), 2)


class PageTests(SynchronousTestCase):
    """C{/dashboard/}: the page and its assets, and only they."""

    def setUp(self) -> None:
        self.stack = Stack(self)

    def get(self, path: bytes, status: bytes = b"200 OK") -> RawClient:
        raw = self.stack.get(path)
        self.assertEqual(raw.status_line, b"HTTP/1.1 " + status, path)
        return raw

    def test_folder_redirect(self) -> None:
        """C{/dashboard} is sent to C{dashboard/}: relative, for a proxy's prefix."""
        raw = self.get(b"/dashboard", b"301 Moved Permanently")
        self.assertEqual(raw.headers[b"location"], b"dashboard/")

    def test_page(self) -> None:
        """C{/dashboard/} is the page, as HTML, with the headers of a strict page."""
        raw = self.get(b"/dashboard/")
        headers = raw.headers
        self.assertEqual(headers[b"content-type"], b"text/html; charset=utf-8")
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertEqual(headers[b"content-security-policy"], CONTENT_SECURITY_POLICY)
        self.assertIn(b"script-src 'self';", CONTENT_SECURITY_POLICY)
        self.assertNotIn(b"unsafe", CONTENT_SECURITY_POLICY)
        self.assertIn(b'<table id="fleet">', raw.body)
        with open(os.path.join(STATIC, "index.html"), "rb") as f:
            self.assertEqual(raw.body, f.read())

    def test_assets(self) -> None:
        """Each asset with its content type; the vendored uPlot with its licence."""
        for path, kind in [
            (b"/dashboard/dashboard.js", b"text/javascript; charset=utf-8"),
            (b"/dashboard/dashboard.css", b"text/css; charset=utf-8"),
            (b"/dashboard/vendor/uPlot.iife.min.js", b"text/javascript; charset=utf-8"),
            (b"/dashboard/vendor/uPlot.min.css", b"text/css; charset=utf-8"),
            (b"/dashboard/vendor/uPlot.LICENSE", b"text/plain; charset=utf-8"),
        ]:
            raw = self.get(path)
            self.assertEqual(raw.headers[b"content-type"], kind, path)
            self.assertEqual(raw.headers[b"x-content-type-options"], b"nosniff", path)
            self.assertEqual(int(raw.headers[b"content-length"]), len(raw.body), path)
        self.assertIn(b"The MIT License",
                      self.get(b"/dashboard/vendor/uPlot.LICENSE").body)

    def test_no_listing(self) -> None:
        """A folder's listing, a missing file, a path out of the folder: 404."""
        for path in [b"/dashboard/vendor/", b"/dashboard/vendor", b"/dashboard/nothing.js",
                     b"/dashboard/../page.py", b"/dashboard/%2e%2e/page.py",
                     b"/dashboard/vendor/%2e%2e/%2e%2e/page.py"]:
            raw = self.get(path, b"404 Not Found")
            self.assertNotIn(b"Directory listing", raw.body, path)
            self.assertNotIn(b"import", raw.body, path)

    def test_page_references(self) -> None:
        """
        Everything the page loads is a relative URL that the site serves; its scripts
        are files (the policy forbids inline script, and the page has none), and nothing
        in it has an inline style or event handler.
        """
        page = _Page()
        page.feed(self.get(b"/dashboard/").body.decode("utf-8"))
        self.assertEqual(page.inline, [])
        self.assertIn("dashboard.js", page.urls)
        self.assertIn("vendor/uPlot.iife.min.js", page.urls)
        for url in page.urls:
            if url == "data:,":
                continue  # the empty icon: no request for /favicon.ico
            self.assertNotRegex(url, r"^(/|[a-z]+:)", "not relative")
            self.get(b"/dashboard/" + url.encode())

    def test_script_keeps_the_policy(self) -> None:
        """The script writes no HTML, evaluates no text and sets no inline style."""
        with open(os.path.join(STATIC, "dashboard.js"), encoding="utf-8") as f:
            script = f.read()
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                          "eval(", "new Function", '"style"', "http://", "https://"]:
            self.assertNotIn(forbidden, script)
        # Its requests are relative: behind a proxy's prefix they stay below it.
        self.assertEqual(sorted(set(re.findall(r'"(\.\./api/\w+)', script))),
                         ["../api/fleet"])
        self.assertIn("`../api/day?", script)


class _Page(HTMLParser):
    """The URLs a page loads, and whatever of it a strict policy would block."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            value = values.get(name)
            if value is not None:
                self.urls.append(value)
        if tag == "script" and "src" not in values:
            self.inline.append("script without src")
        self._in_script = tag == "script"
        self.inline.extend(f"{tag} {name}" for name, _ in attrs
                           if name == "style" or name.startswith("on"))
        if tag == "style":
            self.inline.append("style element")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script text")


class HealthOrDashboardTests(SynchronousTestCase):
    """C{GET /}: a browser is sent to the dashboard; anything else gets the health text."""

    def setUp(self) -> None:
        self.stack = Stack(self)

    def get_root(self, accept: bytes | None) -> RawClient:
        extra = b"" if accept is None else b"Accept: " + accept + b"\r\n"
        raw, _ = self.stack.harness.connect_raw(raw_get(b"/", extra=extra))
        return raw

    def test_browser(self) -> None:
        """Chromium's and Firefox's Accept: 303 to C{dashboard/}, relative."""
        for accept in [
            b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
            b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
            b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            b"TEXT/HTML",
        ]:
            raw = self.get_root(accept)
            self.assertEqual(raw.status_line, b"HTTP/1.1 303 See Other", accept)
            self.assertEqual(raw.headers[b"location"], b"dashboard/")
            self.assertEqual(raw.headers[b"vary"], b"accept")

    def test_health_checks(self) -> None:
        """curl's C{*/*}, none, plain text, HTML refused with q=0: today's C{ok}."""
        for accept in [b"*/*", None, b"text/plain", b"text/html;q=0", b"application/json",
                       b"text/htmlx"]:
            raw = self.get_root(accept)
            self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK", accept)
            self.assertEqual(raw.headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertEqual(raw.body, b"ok\ndevices: 0\nrows_written: 0\n")

    def test_asks_for_html(self) -> None:
        self.assertTrue(asks_for_html(b"text/html"))
        self.assertTrue(asks_for_html(b"application/xml, text/html ; q=0.5"))
        self.assertFalse(asks_for_html(b"text/html; q=0.0"))
        self.assertFalse(asks_for_html(b"text/html; q=zero"))
        self.assertFalse(asks_for_html(b"*/*"))
        self.assertFalse(asks_for_html(None))


class DayApiTests(SynchronousTestCase):
    """C{GET /api/day} as C{makeService} mounts it: the rows the tick wrote, today's."""

    def test_rows_of_today(self) -> None:
        """
        The minutes the server itself wrote come back as the day's points and run, the
        day being the server's today in --tz when the query names none.
        """
        stack = Stack(self, "--channels", "0,1", "--tz", "Europe/Berlin")
        client, _ = stack.connect()
        stack.send(client, notify(FULL, method="NotifyFullStatus"))  # at T0 + 5
        stack.advance_to(T0 + 60)
        stack.send(client, notify({"switch:0": {"apower": 0}}))
        stack.advance_to(T0 + 180)
        raw = stack.get(b"/api/day?device=" + DEVICE.encode() + b"&channel=switch:0")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(raw.headers[b"content-type"], b"application/json")
        day = json.loads(raw.body)
        self.assertEqual((day["device_id"], day["channel"], day["date"], day["tz"]),
                         (DEVICE, "switch:0", "2027-01-15", "Europe/Berlin"))
        self.assertEqual(day["points"], {"time": [T0, T0 + 60], "apower_W": [450, 450]})
        self.assertEqual([(r["start"], r["minutes"]) for r in day["runs"]],
                         [("2027-01-15T09:00:00+01:00", 2)])

    def test_bad_query(self) -> None:
        """A request without a device: 400 with a message, not a traceback."""
        stack = Stack(self)
        raw = stack.get(b"/api/day?channel=switch:0")
        self.assertEqual(raw.status_line, b"HTTP/1.1 400 Bad Request")
        self.assertIn(b"device", raw.body)
