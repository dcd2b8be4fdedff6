"""
The one HTTP site: health at C{/}, the devices' WebSocket at C{/ws} and C{/ws/}.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from shellylog.handshake import Refusal, check_handshake, origin_key
from shellylog.internals import HeadersFirstChannel, quiet_http_channel, release_http_channel
from shellylog.logbudget import LogBudget
from shellylog.pagecache import PageCache
from shellylog.queryargs import BadQueryError, bad_query_answer, whole_arg
from shellylog.registry import DeviceRegistry
from shellylog.statuspage import PAGE_SIZE, status_page

log = Logger(namespace="shellylog.web")

#: Seconds a peer has to send a complete HTTP request (the WebSocket handshake included).
REQUEST_TIMEOUT = 5
#: Requests of one connection written to the access log.
ACCESS_LINES_PER_CONNECTION = 3


def _no_problem() -> str | None:
    return None


def asks_for_html(accept: bytes | None) -> bool:
    """
    Whether an C{Accept} header names C{text/html} (with a quality above 0): a browser's
    does; curl's C{*/*}, HAProxy's, systemd's and Prometheus's do not.
    """
    for item in (accept or b"").split(b","):
        media, _, parameters = item.partition(b";")
        if media.strip().lower() != b"text/html":
            continue
        for parameter in parameters.split(b";"):
            name, _, value = parameter.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    if float(value.strip()) <= 0:
                        break
                except ValueError:
                    break
        else:
            return True
    return False


class HealthResource(Resource):
    """
    C{GET /}: C{ok}, the number of connected devices and the rows written since start,
    as plain text, one C{key: value} a line after the first. While rows wait because the
    CSV file cannot be written, the answer is 503 and its first line says why.

    With C{browsers_to}, a request whose C{Accept} names C{text/html} (a browser's) is
    sent there instead (303, relative: it works behind a reverse proxy's path prefix);
    health checks, which do not ask for HTML, get the plain text as before.
    """

    isLeaf = True

    def __init__(
        self,
        devices: Callable[[], int],
        rows_written: Callable[[], int],
        problem: Callable[[], str | None] = _no_problem,
        rows_pending: Callable[[], int] = int,
        browsers_to: bytes | None = None,
    ) -> None:
        super().__init__()
        self._browsers_to = browsers_to
        self._devices = devices
        self._rows_written = rows_written
        self._problem = problem
        self._rows_pending = rows_pending

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        # The answer depends on Accept: no cache may give a browser's to curl.
        request.setHeader(b"vary", b"accept")
        if self._browsers_to is not None and asks_for_html(request.getHeader(b"accept")):
            request.setResponseCode(303)
            request.setHeader(b"location", self._browsers_to)
            return b"see " + self._browsers_to + b"\n"
        problem = self._problem()
        if problem is not None:
            request.setResponseCode(503)
        body = f"{'ok' if problem is None else 'error: ' + problem}\n"
        body += f"devices: {self._devices()}\nrows_written: {self._rows_written()}\n"
        if problem is not None:
            body += f"rows_pending: {self._rows_pending()}\n"
        return body.encode("utf-8")


#: Seconds one C{/status} document is served for: however many ask, it is built at most
#: once in that time.
STATUS_MAX_AGE = 1.0
# Pages of one document kept encoded; a peer asking for ever other pages gets them built.
_PAGES_KEPT = 8


class StatusResource(Resource):
    """
    C{GET /status?offset=N&limit=M}: a page of the document C{report} returns (see
    L{status_page}), as JSON. The document is built at most once in L{STATUS_MAX_AGE}
    seconds on C{clock}, so that many requests in a row cost the building of one.
    """

    isLeaf = True

    def __init__(self, report: Callable[[], dict[str, Any]], clock: IReactorTime,
                 max_age: float = STATUS_MAX_AGE) -> None:
        super().__init__()
        self._pages: PageCache[dict[str, Any], tuple[int, int]] = PageCache(
            report, clock, max_age, _PAGES_KEPT)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        try:
            offset = whole_arg(request, "offset", 0, 0, None)
            limit = whole_arg(request, "limit", PAGE_SIZE, 1, PAGE_SIZE)
        except BadQueryError as e:
            return bad_query_answer(request, e)
        request.setHeader(b"content-type", b"application/json")
        return self._pages.answer((offset, limit), _status_page)


def _status_page(document: dict[str, Any], key: tuple[int, int]) -> bytes:
    offset, limit = key
    return (json.dumps(status_page(document, offset, limit), indent=2) + "\n").encode("utf-8")


class DeviceSocketResource(WebSocketResource):
    """
    The WebSocket for devices, at exactly C{/ws} or C{/ws/}. A WebSocketResource is a
    leaf, so without this check C{/ws/anything} would upgrade too.

    A request that is not a WebSocket handshake shellylog speaks (L{check_handshake}) is
    answered at once with a clear HTTP error, counted in C{rejected} as C{bad_handshake}
    (C{bad_origin} for a web page whose origin is not in C{allowed_origins}), and logged
    once per connection (within C{log_budget}).
    """

    def __init__(self, factory: WebSocketServerFactory, rejected: Counter[str],
                 log_budget: LogBudget, allowed_origins: Iterable[str] = ()) -> None:
        super().__init__(factory)
        #: The devices' WebSocket factory.
        self.factory = factory
        self.rejected = rejected
        self.log_budget = log_budget
        #: The origins (C{--allow-origin}) whose pages may open the WebSocket.
        self.allowed_origins = frozenset(origin_key(o) for o in allowed_origins)

    def render(self, request: Request) -> bytes | int:
        if request.postpath not in ([], [b""]):
            return NoResource().render(request)  # type: ignore[no-any-return]
        assert request.method is not None and request.clientproto is not None
        refusal = check_handshake(request.method, request.clientproto, request.requestHeaders,
                                  self.allowed_origins)
        if refusal is not None:
            return self._refuse(request, refusal)
        # Compression is declined (shellylog.internals.decline_compression), so Autobahn
        # need not read the offers: it would fail a handshake whose offer has a parameter
        # it does not know, where RFC 7692 says to decline the offer.
        request.requestHeaders.removeHeader(b"sec-websocket-extensions")
        channel = request.channel
        transport = channel.transport
        result = super().render(request)
        if channel.transport is None and result == NOT_DONE_YET:
            # The WebSocket took the connection over.
            release_http_channel(request)
            # Only now may the WebSocket be the transport's producer: the release above
            # unregisters whatever producer the transport has.
            watch_output = getattr(getattr(transport, "protocol", None), "watch_output", None)
            if watch_output is not None:
                watch_output()
        return result  # type: ignore[no-any-return]

    def _refuse(self, request: Request, refusal: Refusal) -> bytes:
        self.rejected[refusal.counted] += 1
        channel = request.channel
        # Once per connection: one keep-alive connection may send any number of them.
        if not isinstance(channel, RequestChannel) or not channel.refusal_logged:
            if isinstance(channel, RequestChannel):
                channel.refusal_logged = True
            peer = _peer(request.getClientAddress())
            if refusal.origin is not None:
                # The origin as sent, so that a device which does send one is easy to
                # admit.
                self.log_budget.warn(
                    log, "refused a WebSocket handshake from {peer} with Origin {origin}: "
                    "not admitted by --allow-origin", event="origin_refused", peer=peer,
                    origin=_text(refusal.origin, 100), code=refusal.code)
            else:
                self.log_budget.warn(log, "refused a WebSocket handshake from {peer}: {why}",
                                     event="handshake_refused", peer=peer,
                                     code=refusal.code, why=refusal.reason)
        request.setResponseCode(refusal.code, _PHRASES.get(refusal.code))
        for name, value in refusal.headers:
            request.setHeader(name, value)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return f"{refusal.reason}\n".encode()


# Twisted Web lacks this one's phrase (it would say "Unknown Status").
_PHRASES = {413: b"Content Too Large", 426: b"Upgrade Required"}


def _text(raw: bytes | None, limit: int = 200) -> str:
    # Peer-supplied bytes, escaped so that no quote or control character reaches the log.
    return ascii((raw or b"-")[:limit].decode("latin-1"))[1:-1].replace('"', "\\x22")


def access_log_line(timestamp: str, request: Request) -> str:
    """
    A combined-log-format line without the query string: devices carry their token there,
    and a token must never reach a log.
    """
    path = request.uri.split(b"?", 1)[0]
    host = getattr(request.getClientAddress(), "host", "-")
    return (
        f'"{host}" - - {timestamp} "{_text(request.method)} {_text(path)} '
        f'{_text(request.clientproto)}" {request.code} {request.sentLength or "-"} '
        f'"{_text(request.getHeader(b"referer"))}" "{_text(request.getHeader(b"user-agent"))}"'
    )


class DeviceRequest(Request):
    """
    A request of the site. One that announced a body (L{RequestChannel}) is refused without
    rendering its page: 413, or 405 for a method other than C{GET} and C{HEAD}, which are
    all that shellylog's pages take. The connection is closed after the answer.

    @ivar body_announced: whether the request's headers announced a body.
    """

    body_announced = False

    def render(self, resrc: IResource) -> None:
        if self.body_announced:
            self._refuse_body(resrc)
        else:
            super().render(resrc)

    def _refuse_body(self, resrc: IResource) -> None:
        site = self.site
        assert isinstance(site, DeviceSite)
        site.rejected["request_body"] += 1
        takes = (b"GET",) if isinstance(resrc, DeviceSocketResource) else (b"GET", b"HEAD")
        if self.method in takes:
            code, why = 413, "a request body is not accepted here"
        else:
            code, why = 405, f"this path takes {b', '.join(takes).decode()} only, without a body"
            self.setHeader(b"allow", b", ".join(takes))
        site.log_budget.warn(log, "refused a request with a body from {peer}: {method} {path}: "
                             "{why}", event="request_body_refused",
                             peer=_peer(self.getClientAddress()),
                             method=_text(self.method, 20), path=_text(self.path, 100),
                             code=code, why=why)
        self.setResponseCode(code, _PHRASES.get(code))
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.setHeader(b"cache-control", b"no-store")
        self.setHeader(b"connection", b"close")
        body = f"{why}\n".encode()
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()


class RequestChannel(HeadersFirstChannel):
    """
    HTTP/1.1 with a deadline for each whole request: L{REQUEST_TIMEOUT} seconds from the
    connection (or from the end of the previous response) however the bytes trickle in.
    Twisted's own timeout starts over at every byte received, so one byte every few
    seconds would hold a connection for hours. Pipelined requests are answered one per
    reactor turn (L{requestDone}).

    A request that announces a body is answered from its headers (L{DeviceRequest}); its
    body is never read.
    """

    site: DeviceSite
    _idle = False
    # Nothing received yet: a browser's spare connection, opened ahead of need, is closed
    # at the deadline like any other, but is no refusal (a request begun and not finished
    # is, however slowly its bytes came).
    _silent = True
    #: A refused WebSocket handshake of this connection has been logged.
    refusal_logged = False
    #: Requests of this connection in the access log.
    access_lines = 0
    # The peer's socket takes no more (the transport paused us as its producer).
    _send_blocked = False
    _lost = False
    # A finished request whose successor waits for the next reactor turn.
    _done: Request | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Twisted's own line about a timed-out client comes out of the peers' budget.
        quiet_http_channel(self)

    def may_log(self) -> bool:
        """Whether Twisted may log an info line or a warning about this connection now."""
        return self.site.log_budget.allow("twisted.web")

    def resetTimeout(self) -> None:
        # Bytes received do not move the deadline.
        pass

    def dataReceived(self, data: bytes) -> None:
        self._idle = False
        self._silent = False
        super().dataReceived(data)

    def requestDone(self, request: Request) -> None:
        """
        Pipelined requests one per reactor turn: Twisted's channel replays the requests
        buffered behind this one (from C{requestDone}) in the same call, so a packet of
        2,000 C{GET /status} would hold the reactor until all were answered. Until the
        replay, the channel still counts as busy with this request, so whatever arrives
        meanwhile is buffered behind the rest, in order (and read no further past 16 KiB).
        And the next request waits while the peer does not read its answers, so that
        they do not pile up in memory.
        """
        self._idle = True
        if not self.persistent:
            super().requestDone(request)
            return
        self._done = request
        # The deadline runs again, from the end of this answer: a peer that reads no
        # answers is not held forever.
        self.setTimeout(self.site.timeOut)
        if not self._send_blocked:
            self.callLater(0, self._next_request)

    def _next_request(self) -> None:
        if self._send_blocked:
            # resumeProducing calls again.
            return
        request, self._done = self._done, None
        if request is None or self._lost or not self.requests or self.requests[0] is not request:
            return
        super().requestDone(request)

    def body_announced(self, request: Request) -> None:
        if isinstance(request, DeviceRequest):
            request.body_announced = True

    def pauseProducing(self) -> None:
        self._send_blocked = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._send_blocked = False
        super().resumeProducing()
        if self._done is not None:
            self.callLater(0, self._next_request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        if not self._idle and not self._silent:
            # Not a keep-alive connection idle after an answer: a request that never came.
            assert self.transport is not None
            self.site.rejected["request_timeout"] += 1
            self.site.log_budget.warn(log, "closing {peer}: no complete request within "
                                      "{timeout} s", event="request_timeout",
                                      peer=_peer(self.transport.getPeer()),
                                      timeout=self.timeOut)
        super().timeoutConnection()


def _peer(address: IAddress) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


class DeviceSite(Site):
    """
    The site, with L{RequestChannel} for connections.

    @ivar rejected: where requests that missed their deadline are counted (the
        registry's counter).
    @ivar log_budget: the warnings peers may cause (the registry's).
    @ivar access_budget: the access log lines they may cause (the registry's).
    """

    protocol = RequestChannel  # type: ignore[assignment]
    requestFactory = DeviceRequest
    rejected: Counter[str]
    log_budget: LogBudget
    access_budget: LogBudget

    def log(self, request: http.Request) -> None:
        """
        The access log line of C{request}: the first L{ACCESS_LINES_PER_CONNECTION} of a
        connection, within C{access_budget}; the rest are counted for its summary. One
        packet of pipelined requests would otherwise write a line for each.
        """
        channel = request.channel
        if isinstance(channel, RequestChannel):
            channel.access_lines += 1
            if channel.access_lines > ACCESS_LINES_PER_CONNECTION:
                self.access_budget.suppress("access")
                return
        if self.access_budget.allow("access"):
            super().log(request)


def build_site(
    ws_factory: WebSocketServerFactory,
    registry: DeviceRegistry,
    health: HealthResource,
    clock: object = None,
    pages: Mapping[bytes, IResource] | None = None,
    allowed_origins: Iterable[str] = (),
) -> Site:
    """
    The site: C{/} health, C{/ws} and C{/ws/} devices, C{pages} (such as C{/status} and
    C{/metrics}), everything else 404. Requests refused are counted in C{registry}, and
    logged within its budgets. C{clock} runs its request timeout (the global reactor when
    C{None}). Web pages of C{allowed_origins} (such as C{http://192.0.2.5:8080}) may open
    the WebSocket; others are refused (403).
    """
    root = Resource()
    root.putChild(b"", health)
    rejected = registry.rejected
    budget = registry.log_budget
    access_budget = registry.access_budget
    if clock is None:
        from twisted.internet import reactor as clock
    root.putChild(b"ws", DeviceSocketResource(ws_factory, rejected, budget, allowed_origins))
    for name, page in (pages or {}).items():
        root.putChild(name, page)
    site = DeviceSite(root, logFormatter=access_log_line, timeout=REQUEST_TIMEOUT,
                      reactor=clock)
    site.rejected = rejected
    site.log_budget = budget
    site.access_budget = access_budget
    site.displayTracebacks = False
    return site

