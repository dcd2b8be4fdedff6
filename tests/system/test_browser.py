"""
A real browser as a WebSocket client: headless Chromium, in its default WebSocket behaviour,
plays a device against the real service.

Browsers offer C{permessage-deflate} on every WebSocket, and an offer once failed every
handshake (Chromium saw close code 1006). Here, as in C{tests/system/test_clients.py}, the service
is started in this process, and so is a small web server of the test's own: it serves the
page C{tests/system/browser/device.html}, with the device's plan filled in, and receives the page's
reports. Chromium opens the page; the page opens C{new WebSocket(url)} (no subprotocol, no
option), answers the bootstrap requests with a fixture's full status, sends one
C{NotifyStatus}, and reports (C{POST /exchanged}) what was negotiated and which requests it
got. Chromium sends the page's C{Origin}, so the service is started with C{--allow-origin}
for it; without the option the same page is refused (403). The service is then stopped (a
clean stop closes each device's connection with 1001 and writes the minute in progress,
minute-log rule 6), and the page reports the close (C{POST /closed}). The test checks the CSV
rows, the handshake, the requests, the close and the server's log.

A page cannot see the headers of its own handshake, and shellylog logs none of them, so the
WebSocket goes through a plain TCP proxy of the test's own, which keeps the heads of the
request and of the response as they crossed the wire: Chromium's offer, and the server's
C{101} without an extension.

A browser has no WebSocket ping, so the page cannot know when the server has its update;
the test knows, from the readings the device's connection hands the tracker (the devices'
factory's C{sink}, watched), and stops the service only then.

Rows are per minute and the clock is the real one, so Chromium is started only when the
current minute has L{EXCHANGE_ROOM} seconds left: its start, the exchange and the stop fall in
that minute, and exactly one row is expected.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogEvent
from twisted.protocols.portforward import (
    ProxyClient,
    ProxyClientFactory,
    ProxyFactory,
    ProxyServer,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from shellylog.csvlog import HEADER
from shellylog.registry import ReadingSink
from shellylog.status import ChannelValues
from tests.support.chromium import CHROMIUM_SWITCHES
from tests.support.client_plan import DEFLATE, DEVICE, ROW_VALUES, UPDATE, device_plan
from tests.support.logs import assert_clean_session, capture_log
from tests.support.processes import RealReactorTestCase, device_factory, listen_local, start_service
from tests.support.realtime import minute_now, minute_start, room_in_minute
from tests.support.tools import tool
from tests.support.wire import device_connection

#: The page the browser opens; C{@PLAN@} in it becomes the plan, as JSON.
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser", "device.html")
PLAN_PLACEHOLDER = b"@PLAN@"

#: Seconds Chromium's start, the exchange and the stop may take, at most, in one minute.
EXCHANGE_ROOM = 20.0
#: Seconds Chromium gets to end on SIGTERM before it is killed.
STOP_GRACE = 10.0
#: Seconds Chromium's helper processes get to end after it did, before they are killed.
HELPERS_GRACE = 5.0

#: switch:0's power in the update: once the tracker has it, the server has the update.
UPDATE_APOWER = UPDATE["switch:0"]["apower"]


def page_with(plan: dict[str, Any]) -> bytes:
    """The page, with C{plan} in its JSON data block (no C{<}, so no C{</script>})."""
    with open(PAGE, "rb") as f:
        page = f.read()
    assert page.count(PLAN_PLACEHOLDER) == 1
    return page.replace(PLAN_PLACEHOLDER, json.dumps(plan).replace("<", "\\u003c").encode())


def parse_head(raw: bytes) -> tuple[str, dict[str, list[str]]]:
    """
    An HTTP message's head (the bytes up to the blank line, and maybe more): its first line,
    and its headers by lower-case name, each with its values in order.
    """
    head, blank, _ = raw.partition(b"\r\n\r\n")
    assert blank, f"no complete HTTP head: {raw!r}"
    first, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return first, headers


class Connections:
    """
    The open connections of one listener (and those it opened onward), so that the test
    can end them and wait until they are gone: the reactor must be clean when it ends.
    """

    def __init__(self) -> None:
        self._open: dict[Protocol, Deferred[None]] = {}

    def opened(self, protocol: Protocol) -> None:
        """C{protocol}'s connection is open."""
        self._open[protocol] = Deferred()

    def lost(self, protocol: Protocol) -> None:
        """C{protocol}'s connection is gone."""
        done = self._open.pop(protocol, None)
        if done is not None:
            done.callback(None)

    async def close(self) -> None:
        """Abort every connection still open, and wait until each is gone."""
        while self._open:
            protocol, done = next(iter(self._open.items()))
            if protocol.transport is not None:
                cast(ITCPTransport, protocol.transport).abortConnection()
            await done


async def close_listener(port: IListeningPort, connections: Connections) -> None:
    """Stop listening on C{port}, and end its connections."""
    stopped = port.stopListening()
    if stopped is not None:
        await stopped
    await connections.close()


class Reports:
    """
    What the page reported, by name (C{exchanged}, C{closed}), and its problems.

    The test waits for one report at a time (L{next}); a problem, the end of Chromium, or
    the close reported before the exchange fails that wait at once, instead of a timeout.
    """

    def __init__(self) -> None:
        self.received: dict[str, dict[str, Any]] = {}
        #: Errors of the page's own (C{POST /problem}).
        self.problems: list[dict[str, Any]] = []
        self._waiting: tuple[str, Deferred[dict[str, Any]]] | None = None

    def next(self, name: str) -> Deferred[dict[str, Any]]:
        """The report C{name}, once it has come."""
        if name in self.received:
            return succeed(self.received[name])
        waiting: Deferred[dict[str, Any]] = Deferred()
        self._waiting = (name, waiting)
        return waiting

    def receive(self, name: str, report: dict[str, Any]) -> None:
        """The page POSTed C{report} to C{/name}."""
        if name == "problem":
            self.problems.append(report)
            self.failed(FailTest(f"the page failed: {report}"))
            return
        self.received.setdefault(name, report)
        if self._waiting is None:
            return
        wanted, waiting = self._waiting
        if wanted == name:
            self._waiting = None
            waiting.callback(report)
        elif name == "closed":
            self.failed(FailTest(f"the WebSocket closed before the exchange: {report}"))
        elif wanted == "closed":
            # A refusal was expected; the page got through instead.
            self.failed(FailTest(f"the page reported {name} before the close: {report}"))

    def failed(self, error: FailTest) -> None:
        """Fail the wait for a report, if there is one."""
        if self._waiting is not None:
            _, waiting = self._waiting
            self._waiting = None
            waiting.errback(error)


class PageResource(Resource):
    """The device page, with its plan."""

    isLeaf = True

    def __init__(self, page: bytes) -> None:
        super().__init__()
        self.page = page

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.page


class ReportResource(Resource):
    """Where the page POSTs one kind of report, a JSON object."""

    isLeaf = True

    def __init__(self, reports: Reports, name: str) -> None:
        super().__init__()
        self.reports = reports
        self.name = name

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        report = json.loads(request.content.read())
        assert isinstance(report, dict), report
        self.reports.receive(self.name, report)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"


class TrackedChannel(HTTPChannel):
    """An HTTP connection to the test's web server, known to its L{PageSite}."""

    site: PageSite

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections.opened(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self.site.connections.lost(self)


class PageSite(Site):
    """
    The test's web server: C{/} the device page, C{POST /exchanged}, C{/closed} and
    C{/problem} the page's reports.
    """

    protocol = TrackedChannel  # type: ignore[assignment]

    def __init__(self, reports: Reports, page: bytes = b"") -> None:
        root = Resource()
        #: The device page (its plan names the proxy's port, known after this site's).
        self.page = PageResource(page)
        root.putChild(b"", self.page)
        for name in ("exchanged", "closed", "problem"):
            root.putChild(name.encode("ascii"), ReportResource(reports, name))
        super().__init__(root)
        self.connections = Connections()


def keep_head(head: bytearray, data: bytes) -> None:
    """Add C{data} to C{head} until C{head} holds a whole HTTP head."""
    if b"\r\n\r\n" not in head:
        head += data


class ServiceSide(ProxyClient):
    """The proxy's connection to shellylog: keeps the head of the server's response."""

    def connectionMade(self) -> None:
        assert self.peer is not None
        self.proxy = cast(HandshakeProxy, cast(ProxyServer, self.peer).factory)
        self.proxy.connections.opened(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        keep_head(self.proxy.response_head, data)
        super().dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self.proxy.connections.lost(self)


class ServiceSideFactory(ProxyClientFactory):
    """Connects a L{BrowserSide} to shellylog."""

    protocol = ServiceSide


class BrowserSide(ProxyServer):
    """The browser's connection to the proxy: keeps the head of the browser's request."""

    clientProtocolFactory = ServiceSideFactory
    factory: HandshakeProxy

    def connectionMade(self) -> None:
        self.factory.accepted += 1
        self.factory.connections.opened(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        keep_head(self.factory.request_head, data)
        super().dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self.factory.connections.lost(self)


class HandshakeProxy(ProxyFactory):
    """
    A plain TCP proxy to shellylog that keeps the opening handshake as it crossed the wire:
    the head of the first request, and of the first response.
    """

    protocol = BrowserSide

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.request_head = bytearray()
        self.response_head = bytearray()
        #: Connections accepted from browsers.
        self.accepted = 0
        #: Both ends of each.
        self.connections = Connections()


class UpdateWatch:
    """
    The devices' factory's sink, watched: it hands every call on to the tracker, and
    C{seen} fires once the device's switch:0 has the power of the page's update, so the
    server has processed the update.
    """

    def __init__(self, sink: ReadingSink, device_id: str, apower: float) -> None:
        self.sink = sink
        self.device_id = device_id
        self.apower = apower
        self.seen: Deferred[None] = Deferred()

    def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
        self.sink.readings(device_id, values)
        channel = values.get(0)
        if (device_id == self.device_id and channel is not None
                and channel.apower == self.apower and not self.seen.called):
            self.seen.callback(None)

    def disconnected(self, device_id: str) -> None:
        self.sink.disconnected(device_id)


def processes_of(folder: str) -> list[int]:
    """The processes whose command line names C{folder} (Linux' C{/proc}; else none)."""
    found: list[int] = []
    if not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if folder.encode() in cmdline:
            found.append(int(entry))
    return found


class Browser(ProcessProtocol):
    """Chromium: its output (for a failure message), and its end."""

    def __init__(self, reports: Reports, profile: str) -> None:
        self.reports = reports
        #: The folder of Chromium's profile and home, named on every one of its processes.
        self.profile = profile
        self.output = bytearray()
        # Fired with the reason (not errbacked): ProcessDone or ProcessTerminated.
        self.ended: Deferred[BaseException] = Deferred()

    def text(self) -> str:
        """The end of what Chromium wrote (mostly complaints about D-Bus)."""
        return bytes(self.output[-8000:]).decode("utf-8", errors="replace")

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        assert value is not None
        self.reports.failed(FailTest(f"chromium ended ({value}):\n{self.text()}"))
        self.ended.callback(value)

    def _signal(self, name: str) -> None:
        assert self.transport is not None
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass  # exited; its pipes are still being closed

    async def stop(self) -> None:
        """
        End Chromium (SIGTERM, which ends its helper processes too; SIGKILL after
        L{STOP_GRACE} seconds), wait for its end, then for its helpers' (and kill any that
        is left after L{HELPERS_GRACE} seconds).
        """
        if not self.ended.called:
            self._signal("TERM")
            kill = reactor.callLater(STOP_GRACE, self._signal, "KILL")
            await self.ended
            if kill.active():
                kill.cancel()
        for _ in range(int(HELPERS_GRACE * 10)):
            if not processes_of(self.profile):
                return
            await deferLater(reactor, 0.1, lambda: None)
        for pid in processes_of(self.profile):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class BrowserTests(RealReactorTestCase):
    """
    Headless Chromium's WebSocket, in its default behaviour (compression offered), is
    answered without an extension and gets its device's row.
    """

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = capture_log(self)

    def test_chromium_default_websocket(self) -> Deferred[None]:
        """
        C{new WebSocket(url)} in headless Chromium: the offer of C{permessage-deflate} is
        declined, both bootstrap requests arrive in order, the row is exact, the stop
        closes the socket with 1001, and the log is clean.
        """
        return ensureDeferred(self.browser_device())

    def test_chromium_refused_without_allow_origin(self) -> Deferred[None]:
        """
        The same page, without C{--allow-origin} for it: Chromium sends its page's
        C{Origin}, the handshake is answered 403 (the page sees only a failed WebSocket,
        1006), counted as C{bad_origin}, logged with the origin, and nothing of the page
        reaches the tracker.
        """
        return ensureDeferred(self.browser_refused())

    async def open_page(self, admitted: bool) -> tuple[Any, HandshakeProxy, Reports, Browser,
                                                       str]:
        """
        Start the service (with C{--allow-origin} for the page's origin if C{admitted}), a
        proxy and the page's web server; open the page in Chromium, once the current
        minute has room for the exchange. Returns the service, the proxy, the reports,
        Chromium and the page's origin.
        """
        chromium = tool("chromium")
        reports = Reports()
        site = PageSite(reports)
        web_port, web_number = listen_local(site)
        self.addCleanup(close_listener, web_port, site.connections)
        # What Chromium sends as the WebSocket's Origin: the page's scheme, host and port.
        origin = f"http://127.0.0.1:{web_number}"
        service, port = await start_service(
            self, ["--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0",
                   *(["--allow-origin", origin] if admitted else [])]
        )
        proxy = HandshakeProxy("127.0.0.1", port)
        proxy_port, proxy_number = listen_local(proxy)
        self.addCleanup(close_listener, proxy_port, proxy.connections)
        plan = {**device_plan(), "url": f"ws://127.0.0.1:{proxy_number}/ws"}
        site.page.page = page_with(plan)

        # Chromium's profile and home: its own, so it reads and writes nothing of the user's.
        profile = os.path.join(self.folder, "chromium")
        home = os.path.join(profile, "home")
        os.makedirs(home)
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
               "XDG_CACHE_HOME": os.path.join(home, ".cache")}
        env.pop("CHROMIUM_FLAGS", None)  # Debian's launcher would add them
        argv = [chromium, *CHROMIUM_SWITCHES, f"--user-data-dir={os.path.join(profile, 'data')}",
                f"{origin}/"]

        await room_in_minute(EXCHANGE_ROOM)
        browser = Browser(reports, profile)
        reactor.spawnProcess(browser, chromium, argv, env=env, path=self.folder)
        self.addCleanup(browser.stop)
        return service, proxy, reports, browser, origin

    async def browser_refused(self) -> None:
        """Open the page without its origin admitted, and check the refusal."""
        service, proxy, reports, _browser, origin = await self.open_page(admitted=False)
        factory = device_factory(service)
        closed = await reports.next("closed")
        self.assertEqual((closed["opened"], closed["code"]), (False, 1006), closed)
        request_line, request_headers = parse_head(bytes(proxy.request_head))
        self.assertEqual(request_line, "GET /ws HTTP/1.1")
        self.assertEqual(request_headers["origin"], [origin])
        status_line, response_headers = parse_head(bytes(proxy.response_head))
        self.assertEqual(status_line, "HTTP/1.1 403 Forbidden")
        self.assertNotIn("sec-websocket-accept", response_headers)
        self.assertEqual(factory.registry.rejected, {"bad_origin": 1})
        self.assertEqual(factory.registry.devices, {})
        (refused,) = [e for e in self.events if e.get("event") == "origin_refused"]
        self.assertEqual(refused["origin"], origin)
        await service.stopService()
        with open(self.csv, encoding="utf-8", newline="") as f:
            self.assertEqual(f.read().splitlines(), [HEADER])

    async def browser_device(self) -> None:
        """Run the page through the whole exchange and the stop, and check it all."""
        service, proxy, reports, _browser, origin = await self.open_page(admitted=True)
        first = minute_now()
        factory = device_factory(service)
        watch = UpdateWatch(factory.registry.sink, DEVICE, UPDATE_APOWER)
        self.patch(factory.registry, "sink", watch)

        exchanged = await reports.next("exchanged")
        await watch.seen
        self.assertEqual(list(factory.registry.devices), [DEVICE])
        server = device_connection(factory.registry, DEVICE)
        self.assertEqual(server.websocket_extensions_in_use, [])
        # The clean stop closes the device's connection (1001, going away) and writes the
        # minute in progress.
        await service.stopService()
        last = minute_now()
        self.assertEqual(last, first, f"the exchange took more than {EXCHANGE_ROOM} s")
        closed = await reports.next("closed")

        with open(self.csv, encoding="utf-8", newline="") as f:
            self.assertEqual(f.read().splitlines(),
                             [HEADER, f"{minute_start(first)},{ROW_VALUES}"])

        # The page: no extension and no subprotocol in use; both bootstrap requests, in
        # order; the server's close.
        self.assertEqual((exchanged["extensions"], exchanged["protocol"]), ("", ""),
                         exchanged["user_agent"])
        requests = exchanged["requests"]
        self.assertEqual([r.get("method") for r in requests],
                         ["NotifyStatus", "Shelly.GetStatus"])
        for request in requests:
            self.assertEqual(request["src"], "shellylog")
            self.assertIsInstance(request["id"], int)
        self.assertEqual(closed, {"code": 1001, "reason": "server stopping", "was_clean": True,
                                  "opened": True, "later_requests": []})
        self.assertEqual(reports.problems, [])

        # The wire: one connection; Chromium offered permessage-deflate, and the server's
        # 101 declined it (no Sec-WebSocket-Extensions), with no subprotocol.
        self.assertEqual(proxy.accepted, 1)
        request_line, request_headers = parse_head(bytes(proxy.request_head))
        self.assertEqual(request_line, "GET /ws HTTP/1.1")
        # Admitted by --allow-origin.
        self.assertEqual(request_headers["origin"], [origin])
        (offer,) = request_headers.get("sec-websocket-extensions", [""])
        self.assertTrue(offer.startswith(DEFLATE), request_headers)
        status_line, response_headers = parse_head(bytes(proxy.response_head))
        self.assertTrue(status_line.startswith("HTTP/1.1 101 "), status_line)
        self.assertNotIn("sec-websocket-extensions", response_headers)
        self.assertNotIn("sec-websocket-protocol", response_headers)

        # A clean session: nothing failed, nothing was dropped or refused; the server saw
        # the device come, and go with the code it was closed with.
        assert_clean_session(self, self.events, DEVICE, 1001)
