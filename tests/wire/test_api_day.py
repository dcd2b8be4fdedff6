"""
C{GET /api/day} (L{shellylog.dashboard.day.DayResource}): the query, the JSON document,
the errors, and a request whose client goes away while the log is read.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from shellylog.dashboard.day import MAX_READS, DayResource
from tests.support.logs import capture_log, warnings_from
from tests.support.reports import BERLIN, PLUS, PRO, csv_text, minute_at, row

#: 2027-01-15T09:00 in Berlin.
M = minute_at("2027-01-15T09:00:00+01:00")
DAY = date(2027, 1, 15)
NAMESPACE = "shellylog.dashboard.day"


def at_once(work: Callable[[], Any]) -> Deferred[Any]:
    """A runner that calls at once, as the thread would, and fires with the result."""
    return maybeDeferred(work)


class DayResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.csv = os.path.join(self.folder, "log.csv")
        self.today = DAY
        self.resource = DayResource(self.csv, BERLIN, lambda: self.today, at_once)

    def write(self, name: str, text: str) -> None:
        data = text.encode()
        with open(os.path.join(self.folder, name), "wb") as f:
            f.write(gzip.compress(data) if name.endswith(".gz") else data)

    def get(self, query: dict[bytes, list[bytes]],
            resource: DayResource | None = None) -> DummyRequest:
        request = DummyRequest([])
        request.args = query
        result = (resource or self.resource).render(request)
        if result != NOT_DONE_YET:
            request.write(result)
            request.finish()
        return request

    def document(self, request: DummyRequest) -> dict[str, Any]:
        self.assertEqual(request.responseCode, None)  # 200
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"application/json"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"),
                         [b"no-store"])
        self.assertEqual(request.finished, 1)
        parsed: dict[str, Any] = json.loads(b"".join(request.written))
        return parsed

    def test_over_http(self) -> None:
        """
        A real request through a C{Site}: the channel's rows of the day in time order,
        from the rotated file and the current one, its runs as the report gives them
        and the day's energy.
        """
        self.write("log.csv.1.gz", csv_text([row(M - 1440, energy=9), row(M, energy=10),
                                             row(M, PLUS, "0", apower=7)]))
        self.write("log.csv", csv_text([row(M + 1, apower=150, energy=17.5),
                                        row(M + 3, apower="", energy=18)]))
        transport = StringTransport()
        site = Site(self.resource)
        protocol = site.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /?device=" + PRO.encode() + b"&channel=switch:2&date=2027-01-15 HTTP/1.1\r\n"
            b"Host: localhost\r\nConnection: close\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"\r\nContent-Type: application/json", head)
        self.assertIn(b"\r\nCache-Control: no-store", head)
        self.assertEqual(json.loads(body), {
            "device_id": PRO, "channel": "switch:2", "date": "2027-01-15",
            "tz": "Europe/Berlin",
            "points": {"time": [M * 60, (M + 1) * 60, (M + 3) * 60],
                       "apower_W": [450, 150, None]},
            "runs": [
                {"device": PRO, "channel": "switch:2", "start": "2027-01-15T09:00:00+01:00",
                 "end": "2027-01-15T09:02:00+01:00", "minutes": 2, "peak_W": 450.0,
                 "mean_W": 300.0, "energy_Wh": 10.0, "counter_Wh": 7.5},
                {"device": PRO, "channel": "switch:2", "start": "2027-01-15T09:03:00+01:00",
                 "end": "2027-01-15T09:04:00+01:00", "minutes": 1, "peak_W": None,
                 "mean_W": None, "energy_Wh": None, "counter_Wh": 0.0},
            ],
            "energy_Wh": 10.0,
        })

    def test_default_date_is_today(self) -> None:
        """Without C{date}, the server's today (in its zone); the other channels left out."""
        self.write("log.csv", csv_text([row(M - 1440), row(M + 1440), row(M, PLUS, "0")]))
        self.today = date(2027, 1, 16)
        doc = self.document(self.get({b"device": [PRO.encode()], b"channel": [b"2"]}))
        self.assertEqual((doc["date"], doc["channel"], doc["points"]["time"]),
                         ("2027-01-16", "switch:2", [(M + 1440) * 60]))

    def test_other_families(self) -> None:
        """A channel of another family is named as the CSV names it."""
        self.write("log.csv", csv_text([row(M, PLUS, "em:0:a", apower=-20),
                                        row(M, PLUS, "em:0", apower=-60)]))
        doc = self.document(self.get({b"device": [PLUS.encode()], b"channel": [b"em:0:a"],
                                      b"date": [b"2027-01-15"]}))
        self.assertEqual((doc["channel"], doc["points"]["apower_W"]), ("em:0:a", [-20]))
        self.assertEqual([r["channel"] for r in doc["runs"]], ["em:0:a"])

    def test_runs_name_the_channel_as_the_document(self) -> None:
        """
        A switch asked for by its CSV name (C{2}) or its API name: the document and each of
        its runs say C{switch:2}, the name of C{/api/fleet}; the runs' other keys are the
        report's.
        """
        self.write("log.csv", csv_text([row(M), row(M + 1), row(M + 5)]))
        for asked in [b"2", b"switch:2"]:
            doc = self.document(self.get({b"device": [PRO.encode()], b"channel": [asked]}))
            self.assertEqual(doc["channel"], "switch:2")
            self.assertEqual([(r["channel"], r["start"], r["minutes"]) for r in doc["runs"]],
                             [("switch:2", "2027-01-15T09:00:00+01:00", 2),
                              ("switch:2", "2027-01-15T09:05:00+01:00", 1)])
            self.assertEqual(list(doc["runs"][0]), [
                "device", "channel", "start", "end", "minutes", "peak_W", "mean_W",
                "energy_Wh", "counter_Wh"])

    def test_nothing_below(self) -> None:
        """A path below C{/api/day} is no document: 404, whatever its query."""
        self.write("log.csv", csv_text([row(M)]))
        for below in [[b"x"], [b"x", b""], [b"", b"x"]]:
            request = DummyRequest(below)
            request.args = {b"device": [PRO.encode()], b"channel": [b"2"]}
            result = self.resource.render(request)
            self.assertEqual(request.responseCode, 404, below)
            self.assertNotIn(b"device_id", result)

    def test_no_rows(self) -> None:
        """A device without rows that day, or no log at all yet: 200, empty lists."""
        empty: dict[str, Any] = {"points": {"time": [], "apower_W": []}, "runs": [],
                                 "energy_Wh": None}
        query = {b"device": [PRO.encode()], b"channel": [b"switch:0"]}
        doc = self.document(self.get(query))
        self.assertEqual({k: doc[k] for k in empty}, empty)
        self.write("log.csv", csv_text([row(M - 1440, channel="0")]))
        doc = self.document(self.get(query))
        self.assertEqual({k: doc[k] for k in empty}, empty)

    def test_bad_queries(self) -> None:
        """Each bad argument: 400, plain text naming it and what is wrong; nothing read."""
        calls: list[object] = []

        def runner(work: Callable[[], Any]) -> Deferred[Any]:
            calls.append(work)
            return at_once(work)

        resource = DayResource(self.csv, BERLIN, lambda: DAY, runner)
        pro, sw = PRO.encode(), b"switch:0"
        cases = [
            ({b"channel": [sw]}, "device: missing (device=ID, as in /api/fleet)"),
            ({b"device": [b""], b"channel": [sw]}, "device: missing (device=ID, as in /api/fleet)"),
            ({b"device": [b"a,b"], b"channel": [sw]}, "device: 'a,b' is not a device id"),
            ({b"device": [b"shelly*"], b"channel": [sw]},
             "device: 'shelly*' is not a device id"),
            ({b"device": [b"\xff"], b"channel": [sw]}, "device: not UTF-8 text"),
            ({b"device": [pro, pro], b"channel": [sw]},
             "device: given 2 times, expected once"),
            ({b"device": [pro]}, "channel: missing (channel=switch:0, pm1:0, em:0:a, ...)"),
        ] + [
            ({b"device": [pro], b"channel": [bad]},
             f"channel: {bad.decode()!r} is not a channel (switch:0, pm1:0, em:0:a, ...)")
            for bad in (b"switch:x", b"switch:", b"switch:01", b"007", b"pm1", b"foo:1",
                        b"em:0:d", b"switch:pm1:0")
        ] + [
            ({b"device": [pro], b"channel": [sw], b"date": [bad]},
             f"date: {bad.decode()!r} is not a date (YYYY-MM-DD)")
            for bad in (b"2027-13-01", b"20270115", b"yesterday", b"2027-02-29",
                        b"2027-01-15T00:00")
        ] + [
            ({b"device": [pro], b"channel": [sw], b"date": [b"9999-12-31"]},
             "date: '9999-12-31' is out of range"),
        ]
        for query, message in cases:
            request = self.get(query, resource)
            self.assertEqual(
                (request.responseCode, b"".join(request.written).decode()),
                (400, message + "\n"), query)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                             [b"text/plain; charset=utf-8"])
        self.assertEqual(calls, [])

    def test_read_in_run(self) -> None:
        """The log is read through C{run}: nothing is answered before it fires."""
        self.write("log.csv", csv_text([row(M)]))
        pending: list[tuple[Deferred[Any], Callable[[], Any]]] = []

        def later(work: Callable[[], Any]) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append((d, work))
            return d

        resource = DayResource(self.csv, BERLIN, lambda: DAY, later)
        request = self.get({b"device": [PRO.encode()], b"channel": [b"2"]}, resource)
        self.assertEqual((request.written, request.finished, len(pending)), ([], 0, 1))
        d, work = pending[0]
        d.callback(work())
        self.assertEqual(self.document(request)["points"]["time"], [M * 60])

    def test_busy(self) -> None:
        """
        With L{MAX_READS} days being read, the next request is 503 at once (nothing more
        queued), with C{Retry-After}, and counted; once a read ends (well or not), the
        next is taken.
        """
        self.write("log.csv", csv_text([row(M)]))
        pending: list[tuple[Deferred[Any], Callable[[], Any]]] = []

        def later(work: Callable[[], Any]) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append((d, work))
            return d

        rejected: Counter[str] = Counter()
        resource = DayResource(self.csv, BERLIN, lambda: DAY, later, rejected)
        query = {b"device": [PRO.encode()], b"channel": [b"2"]}
        requests = [self.get(query, resource) for _ in range(MAX_READS)]
        refused = self.get(query, resource)
        self.assertEqual((refused.responseCode, b"".join(refused.written)),
                         (503, b"busy: 4 days are being read; try again in a second\n"))
        self.assertEqual(refused.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])
        self.assertEqual((len(pending), rejected), (MAX_READS, {"api_busy": 1}))
        d, work = pending.pop(0)
        d.errback(OSError("gone"))
        self.flushLoggedErrors(OSError)
        d, work = pending.pop(0)
        d.callback(work())
        self.assertEqual(self.document(requests[1])["points"]["time"], [M * 60])
        taken = [self.get(query, resource) for _ in range(2)]
        self.assertEqual([r.responseCode for r in taken], [None, None])
        self.assertEqual((len(pending), rejected), (MAX_READS, {"api_busy": 1}))

    def test_client_gone(self) -> None:
        """A client that went away while the log was read: nothing is written to it."""
        self.write("log.csv", csv_text([row(M)]))
        pending: list[Deferred[Any]] = []

        def later(work: Callable[[], Any]) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: work())
            pending.append(d)
            return d

        resource = DayResource(self.csv, BERLIN, lambda: DAY, later)
        for outcome in ("rows", "error"):
            request = self.get({b"device": [PRO.encode()], b"channel": [b"2"]}, resource)
            request.processingFailed(Failure(ConnectionDone()))
            if outcome == "error":
                self.write("log.csv", "not a log\n")
            pending.pop().callback(None)
            self.assertEqual((request.written, request.finished), ([], 0))
        self.flushLoggedErrors(ConnectionDone)

    def test_not_shellylog(self) -> None:
        """A file that is not shellylog's: 500 saying so, and one line logged."""
        events = capture_log(self)
        self.write("log.csv.1", "date,watts\n")
        request = self.get({b"device": [PRO.encode()], b"channel": [b"2"]})
        path = os.path.join(self.folder, "log.csv.1")
        message = (f"{path}: not a shellylog CSV file: its first line is 'date,watts\\n', "
                   "expected 'timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,"
                   "energy_total_Wh' (or with ',ret_energy_total_Wh')")
        self.assertEqual((request.responseCode, b"".join(request.written).decode()),
                         (500, f"cannot read the CSV log: {message}\n"))
        self.assertEqual(warnings_from(events, NAMESPACE),
                         [f"/api/day: cannot read the CSV log: {message}"])

    def test_unreadable(self) -> None:
        """A file that cannot be read (here a folder by the log's name): 500."""
        os.makedirs(self.csv)
        events = capture_log(self)
        request = self.get({b"device": [PRO.encode()], b"channel": [b"2"]})
        self.assertEqual(request.responseCode, 500)
        self.assertIn("cannot be read", b"".join(request.written).decode())
        self.assertEqual(len(warnings_from(events, NAMESPACE)), 1)

    def test_warnings_once(self) -> None:
        """
        A torn line in a rotated file is logged once, not at every poll; the torn last
        line of the file being written is not logged at all.
        """
        events = capture_log(self)
        self.write("log.csv.1", csv_text([row(M), row(M + 1)])[:-30])
        self.write("log.csv", csv_text([row(M + 2), row(M + 3)])[:-30])
        for _ in range(3):
            doc = self.document(self.get({b"device": [PRO.encode()], b"channel": [b"2"]}))
            self.assertEqual(doc["points"]["time"], [M * 60, (M + 2) * 60])
        path = os.path.join(self.folder, "log.csv.1")
        self.assertEqual(warnings_from(events, NAMESPACE), [
            f"/api/day: {path}: line 3 is torn (no line end); ignored: "
            "'2027-01-15T09:01:00+01:00,shellypro4pm-'"])
