"""
The device side of the WebSocket: handshake, polling, backpressure, the close.

Each connection drives a L{shellylog.session.Session}, which keeps its device's known
status and hands the channel values of every update to the tracker. Nothing a device
sends raises out of here: an unusable frame is dropped, logged and counted, and the
connection carries on.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from shellylog.admission import Admission
from shellylog.channels import ChannelSpec
from shellylog.config import Config, Limits
from shellylog.internals import ServerFactory, ServerProtocol, protocol_options
from shellylog.registry import DeviceRegistry
from shellylog.session import GET_STATUS, Rules, Session
from shellylog.status import DeviceStatus

log = Logger(namespace="shellylog.protocol")

SUBPROTOCOL = "json-rpc"
#: Seconds a peer may leave more than the transport's buffer (Twisted's C{bufferSize},
#: 64 KiB) of what we sent unread before it is dropped.
BACKPRESSURE_TIMEOUT = 30.0

# WebSocket close codes (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000

#: Close codes Autobahn sends when it fails a connection itself, and the reason that is
#: counted under.
AUTOBAHN_FAILURES = {1002: "protocol_error", 1009: "too_big"}


class ShellyServerProtocol(ServerProtocol):
    """
    One device's WebSocket connection: the handshake's checks, polling, backpressure and
    the close; its L{Session} holds the rules for what the device sends.
    """

    factory: ShellyServerFactory
    #: Made with the connection by L{ShellyServerFactory.buildProtocol}.
    session: Session
    # Why shellylog itself failed the connection, if it did: counted at the close. A class
    # default, so that a connection pays for it only when it is set.
    _failure: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self._poller: LoopingCall | None = None
        self._opened = False
        # The peer's IP address, once it is counted in the registry's per_address.
        self._address: str | None = None
        self._stalled_timer: IDelayedCall | None = None

    @property
    def device_id(self) -> str | None:
        """The device this connection speaks for, once a frame named it."""
        return self.session.device_id

    @property
    def status(self) -> DeviceStatus:
        """The device's known status."""
        return self.session.status

    @property
    def rejected(self) -> Counter[str]:
        """Frames dropped on this connection, by reason."""
        return self.session.rejected

    def send_text(self, text: str) -> None:
        """Send one text message to the device."""
        self.sendMessage(text.encode("utf-8"))

    # -- handshake and life cycle ------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> str | None:
        # This connection is counted already (Autobahn counts from connectionMade).
        registry = self.factory.registry
        limit = self.factory.limits.max_connections
        if self.factory.getConnectionCount() > limit:
            registry.rejected["too_many_connections"] += 1
            registry.log_budget.warn(log, "refused {peer}: more than {limit} connections",
                                     event="connection_refused", peer=self.peer, limit=limit)
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many connections")
        address = self.factory.address_of(self)
        per_limit = self.factory.limits.max_per_address
        if not registry.address_opened(address, per_limit):
            registry.rejected["too_many_from_address"] += 1
            registry.log_budget.warn(
                log, "refused {peer}: more than {limit} connections from its address",
                event="connection_refused", peer=self.peer, limit=per_limit)
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE,
                                 "too many connections from this address")
        self._address = address
        tokens = request.params.get("token") or [None]
        admitted = self.factory.admission.admit(tokens[0])
        if admitted is None:
            registry.rejected["bad_token"] += 1
            registry.log_budget.warn(log, "refused {peer}: missing or wrong token",
                                     event="connection_refused", peer=self.peer)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "missing or wrong token")
        self.session.admitted = admitted
        if SUBPROTOCOL in request.protocols:
            return SUBPROTOCOL
        return None

    def onOpen(self) -> None:
        # No log line per open socket: "device connected" follows with its first frame.
        self._opened = True
        self.session.opened()
        interval = self.factory.poll_interval
        if interval > 0:
            self._poller = LoopingCall(self.session.send_request, GET_STATUS)
            self._poller.clock = self.factory.clock
            self._poller.start(interval, now=False)

    # -- backpressure: this connection is its transport's producer -----------------------

    def watch_output(self) -> None:
        """
        Become the transport's (streaming) producer, once the connection is the
        WebSocket's alone: the transport then pauses us while more than its buffer of our
        output waits for the peer to read it.
        """
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def pauseProducing(self) -> None:
        """The peer does not read what we send: stop reading what it sends."""
        # Whatever it sends may make us write (a pong for each ping, an answer for each
        # request): unread, it costs nothing but the kernel's socket buffer.
        assert self.transport is not None
        self.transport.pauseProducing()  # type: ignore[attr-defined]
        if self._stalled_timer is None:
            self._stalled_timer = self.factory.clock.callLater(
                BACKPRESSURE_TIMEOUT, self._stalled)

    def resumeProducing(self) -> None:
        """The peer read everything we sent: read it again."""
        self._cancel_stalled()
        assert self.transport is not None
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        """The transport is gone."""
        self._cancel_stalled()

    def _cancel_stalled(self) -> None:
        if self._stalled_timer is not None and self._stalled_timer.active():
            self._stalled_timer.cancel()
        self._stalled_timer = None

    def _stalled(self) -> None:
        self._stalled_timer = None
        self._lost("backpressure",
                   f"did not read what it was sent for {BACKPRESSURE_TIMEOUT:g} s")
        # A close frame would wait behind what it does not read: drop at once.
        self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._cancel_stalled()
        self.session.stop_timer()
        if self._address is not None:
            self.factory.registry.address_closed(self._address)
            self._address = None
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        if self._opened:
            self.factory.registry.closed(self)
        failure = AUTOBAHN_FAILURES.get(self.failure_code() or 0)
        if self._failure is not None:
            failure = self._failure
        if failure is not None:
            # Autobahn failed the connection (message too big, invalid UTF-8, ...).
            self._lost(failure, f"closed with {self.failure_code()} ({failure})")
        self.session.ended(code)

    def too_many_fragments(self) -> None:
        self._failure = "too_many_fragments"

    def ping_timed_out(self) -> None:
        self._lost("ping_timeout", "no answer to a ping")

    def may_log(self) -> bool:
        # Autobahn's own lines about a peer come out of the peers' warnings budget.
        factory = getattr(self, "factory", None)
        return factory is None or factory.registry.log_budget.allow("autobahn")

    def _lost(self, reason: str, detail: str) -> None:
        """Count and log a connection that ends because its peer misbehaved."""
        registry = self.factory.registry
        registry.rejected[reason] += 1
        registry.log_budget.warn(log, "lost {peer} ({device}): {detail}",
                                 event="connection_lost", peer=self.peer,
                                 device=self.device_id, reason=reason, detail=detail)

    def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send one JSON-RPC request to the device; return its id."""
        return self.session.send_request(method, params)

    # -- frames in ---------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.session.received(payload, isBinary)


#: The configuration's defaults, which the factory's parameters default to (tests build
#: factories with a few of them given).
_DEFAULTS = Config()


class ShellyServerFactory(ServerFactory):
    """
    Builds device connections, which report to the service's L{DeviceRegistry}.

    @ivar registry: which connection speaks for which device, and the counters.
    @ivar clock: the registry's: the connections' timers run on it.
    @ivar id_pattern: what a device id must match, all of it (C{--id-pattern}); it must
        pass L{shellylog.rpc.SAFE_ID} too.
    """

    protocol = ShellyServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        registry: DeviceRegistry,
        channels: tuple[ChannelSpec, ...] = _DEFAULTS.channels,
        poll_interval: float = _DEFAULTS.poll,
        limits: Limits = _DEFAULTS.limits,
        admission: Admission = _DEFAULTS.admission,
        id_pattern: re.Pattern[str] = _DEFAULTS.id_pattern,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.clock: IReactorTime = registry.clock
        self.channels = channels
        self.poll_interval = poll_interval
        self.limits = limits
        self.admission = admission
        self.id_pattern = id_pattern
        #: What each connection's session allows.
        self.rules = Rules(max_rate=limits.max_rate, max_bytes_rate=limits.max_bytes_rate,
                           admission=admission, id_pattern=id_pattern, channels=channels)
        # max_connections is checked in onConnect, to count and log the refusal.
        self.setProtocolOptions(**protocol_options(limits.max_message))

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> ShellyServerProtocol:
        """A connection, with its session."""
        connection = super().buildProtocol(addr)
        assert isinstance(connection, ShellyServerProtocol)
        connection.session = Session(self.rules, self.registry, connection)
        return connection

    @staticmethod
    def address_of(connection: ShellyServerProtocol) -> str:
        """The IP address (or, for other transports, the address) of C{connection}'s peer."""
        assert connection.transport is not None
        peer = connection.transport.getPeer()
        return str(getattr(peer, "host", peer))


#: The close code and reason devices get when the server stops (RFC 6455: going away).
CLOSE_GOING_AWAY = 1001
STOPPING = "server stopping"


class CloseOnStop(Service):
    """
    When the service stops, closes every device connection with 1001 (going away) and
    waits, at most C{timeout} seconds, until all are closed: so the close frames reach the
    devices before the process exits, instead of a dropped socket (1006).
    """

    def __init__(self, registry: DeviceRegistry, clock: IReactorTime,
                 timeout: float = 5.0) -> None:
        self.registry = registry
        self.clock = clock
        self.timeout = timeout

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closing = self.registry.close_all(CLOSE_GOING_AWAY, STOPPING)
        closing.addTimeout(self.timeout, self.clock)

        def late(failure: Failure) -> None:
            failure.trap(defer.TimeoutError)
            log.warn("{count} connections were still open {timeout} s after the stop began",
                     event="close_timeout", count=len(self.registry.open_connections),
                     timeout=self.timeout)

        def summarize(_: None) -> None:
            # What the budgets held back until now, before the process ends.
            self.registry.log_budget.flush()
            self.registry.access_budget.flush()

        return closing.addErrback(late).addCallback(summarize)
