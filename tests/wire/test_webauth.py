"""
C{--web-auth}: the pages over HTTP, as makeService wires them (L{Stack}), and any page put
behind L{protect_pages} (the dashboard's too), through the real site on a L{Clock}. The
password file holds hashes Apache's htpasswd made.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.guard import HTTPAuthSessionWrapper
from twisted.web.resource import Resource
from twisted.web.static import Data

from shellylog.logbudget import LogBudget
from shellylog.tap import Options
from shellylog.web import build_site
from shellylog.webauth import HtpasswdChecker, parse_htpasswd, protect_pages
from tests.support.logs import capture_log
from tests.support.stack import Stack
from tests.support.wire import Harness, RawClient, raw_get
from tests.unit.test_webauth import ALICE, APR1, BOB, FILE

DEVICE = "shellypro4pm-aabbccddeeff"


def basic(user: bytes, password: bytes) -> bytes:
    """An C{Authorization} header line of Basic credentials."""
    return b"Authorization: Basic " + base64.b64encode(user + b":" + password) + b"\r\n"


def run_now(work: Callable[[], bool]) -> Deferred[bool]:
    """Checks at once (a test's L{Clock} has no threads)."""
    return succeed(work())


def password_file(case: SynchronousTestCase, text: str = FILE) -> str:
    path: str = os.path.abspath(case.mktemp())
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


class ProtectedStackTests(SynchronousTestCase):
    """makeService with C{--web-auth}: C{/status} and C{/metrics} ask, C{/} and C{/ws} not."""

    def setUp(self) -> None:
        self.path = password_file(self)
        self.stack = Stack(self, "--web-auth", self.path)
        self.events = capture_log(self)

    def get(self, path: bytes, extra: bytes = b"", method: bytes = b"GET") -> RawClient:
        raw, _ = self.stack.harness.connect_raw(raw_get(path, method, extra))
        return raw

    def assert_challenged(self, raw: RawClient) -> None:
        self.assertEqual(raw.status_line, b"HTTP/1.1 401 Unauthorized")
        self.assertEqual(raw.headers[b"www-authenticate"].lower(), b'basic realm="shellylog"')

    def test_pages_ask(self) -> None:
        for path in (b"/status", b"/status?offset=0&limit=5", b"/metrics", b"/status/"):
            raw = self.get(path)
            self.assert_challenged(raw)
            self.assertNotIn(b"options", raw.body)
        self.assert_challenged(self.get(b"/status", method=b"HEAD"))
        # Asking without credentials is how a browser starts: neither counted nor logged.
        self.assertEqual(self.stack.registry.rejected, Counter())
        self.assertEqual([e for e in self.events if e.get("event") == "web_auth_refused"], [])

    def test_every_page_but_health_and_ws(self) -> None:
        """
        Whatever pages the site has (the dashboard's included, however they were added),
        all but C{/} and C{/ws} ask.
        """
        children = self.stack.site.resource.children
        self.assertLessEqual({b"status", b"metrics"}, set(children))
        open_pages = {name for name, page in children.items()
                      if not isinstance(page, HTTPAuthSessionWrapper)}
        self.assertEqual(open_pages, {b"", b"ws"})
        for name in set(children) - open_pages:
            for path in (b"/" + name, b"/" + name + b"/", b"/" + name + b"/x?y=1"):
                self.assert_challenged(self.get(path))

    def test_right_password(self) -> None:
        for user, password in ((b"alice", b"correct horse"), (b"bob", b"hunter2")):
            raw = self.get(b"/status", basic(user, password))
            self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
            self.assertEqual(json.loads(raw.body)["server"]["options"]["web-auth"], self.path)

    def test_wrong_password_counted_and_logged(self) -> None:
        self.assert_challenged(self.get(b"/status", basic(b"alice", b"Correct horse")))
        self.assert_challenged(self.get(b"/metrics", basic(b"nobody", b"correct horse")))
        self.assertEqual(self.stack.registry.rejected, Counter(web_auth=2))
        self.assertEqual(self.stack.status()["server"]["rejected"], {"web_auth": 2})
        lines = [e for e in self.events if e.get("event") == "web_auth_refused"]
        self.assertEqual([e["user"] for e in lines], ["alice", "nobody"])
        # The peer's address and port: two connections, two ports.
        peers = {e["peer"] for e in lines}
        self.assertEqual(len(peers), 2)
        self.assertTrue(all(p.startswith("192.0.2.7:") for p in peers), peers)
        self.assertNotIn("Correct horse", repr(self.events))

    def test_malformed_credentials(self) -> None:
        for header in (b"Authorization: Basic !!!\r\n",
                       b"Authorization: Basic " + base64.b64encode(b"no colon") + b"\r\n"):
            self.assert_challenged(self.get(b"/status", header))
        # Another scheme is no credentials of ours: challenged, as a browser's first visit.
        self.assert_challenged(self.get(b"/status", b"Authorization: Bearer abc\r\n"))
        self.assertEqual(self.stack.registry.rejected, Counter(web_auth=2))

    def test_health_open(self) -> None:
        raw = self.get(b"/")
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(raw.body, b"ok\ndevices: 0\nrows_written: 0\n")

    def test_device_socket_open(self) -> None:
        _, connection = self.stack.connect()
        self.assertTrue(connection.upgraded)

    def test_unknown_path(self) -> None:
        self.assertEqual(self.get(b"/nothing").status_line, b"HTTP/1.1 404 Not Found")

    def test_status_shows_refusals_without(self) -> None:
        """Without --web-auth the pages stay open (and show the option as null)."""
        stack = Stack(self)
        self.assertIsNone(stack.get_status()["server"]["options"]["web-auth"])
        self.assertEqual(stack.get_status()["server"]["rejected"], {})


class ProtectEveryPageTests(SynchronousTestCase):
    """L{protect_pages} puts each page of the dict, whatever its name, and its children behind."""

    def setUp(self) -> None:
        self.harness = Harness(self)
        checker = HtpasswdChecker(parse_htpasswd(FILE), run_now, self.harness.registry.rejected,
                                  LogBudget(self.harness.clock))
        dashboard = Resource()
        dashboard.putChild(b"", Data(b"<html>page</html>", "text/html"))
        dashboard.putChild(b"dashboard.js", Data(b"// js", "text/javascript"))
        api = Resource()
        api.putChild(b"fleet", Data(b'{"devices": []}', "application/json"))
        pages = protect_pages({b"dashboard": dashboard, b"api": api}, checker)
        self.harness.site = build_site(self.harness.factory, self.harness.registry,
                                       self.harness.health, self.harness.clock, pages)

    def get(self, path: bytes, extra: bytes = b"") -> RawClient:
        raw, _ = self.harness.connect_raw(raw_get(path, extra=extra))
        return raw

    def test_every_page_and_child(self) -> None:
        for path, body in ((b"/dashboard/", b"<html>page</html>"),
                           (b"/dashboard/dashboard.js", b"// js"),
                           (b"/api/fleet", b'{"devices": []}')):
            self.assertEqual(self.get(path).status_line, b"HTTP/1.1 401 Unauthorized")
            raw = self.get(path, basic(b"alice", b"correct horse"))
            self.assertEqual((raw.status_line, raw.body), (b"HTTP/1.1 200 OK", body))
        self.assertEqual(self.get(b"/api/nothing", basic(b"bob", b"hunter2")).status_line,
                         b"HTTP/1.1 404 Not Found")
        self.assertEqual(self.get(b"/").status_line, b"HTTP/1.1 200 OK")

    def test_without_checker(self) -> None:
        page = Resource()
        self.assertEqual(protect_pages({b"x": page}, None), {b"x": page})


class OptionTests(SynchronousTestCase):
    """C{--web-auth FILE}: read and checked at start, with an error naming file and line."""

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--csv", os.path.abspath("webauth.csv"), *args])
        return options

    def test_valid(self) -> None:
        path = password_file(self)
        self.assertEqual(self.parse("--web-auth", path).config.web_auth, path)
        self.assertIsNone(self.parse().config.web_auth)

    def test_relative_path_made_absolute(self) -> None:
        # SIGHUP re-reads it, whatever the folder then.
        path = password_file(self)
        relative = os.path.relpath(path)
        self.assertEqual(self.parse("--web-auth", relative).config.web_auth, path)

    def test_missing(self) -> None:
        path = os.path.abspath("no-such-htpasswd")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--web-auth", path)
        self.assertEqual(str(caught.exception),
                         f"--web-auth: {path}: cannot read it: No such file or directory")

    def test_weak_hash(self) -> None:
        path = password_file(self, ALICE + "\n" + BOB + "\n" + APR1 + "\n")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--web-auth", path)
        self.assertTrue(str(caught.exception).startswith(
            f"--web-auth: {path}: line 3: MD5 ($apr1$, htpasswd -m) is refused as weak; "
            "use bcrypt"), str(caught.exception))

    def test_help(self) -> None:
        self.assertIn("--web-auth=", str(Options()))
