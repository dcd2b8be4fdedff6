"""
The device side of the WebSocket: handshake, bootstrap requests, polling, frames in.

Each connection keeps its device's known status and hands the channel values of every
update to a L{ReadingSink} (the tracker). Nothing a device sends raises out of here: an
unusable frame is dropped, logged and counted, and the connection carries on.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from attrs import frozen
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from shellylog.admission import Admission
from shellylog.internals import ServerFactory, ServerProtocol, protocol_options
from shellylog.logbudget import PER_MINUTE
from shellylog.registry import DeviceRecord, DeviceRegistry
from shellylog.rpc import (
    DEVICE_ID,
    ErrorResponse,
    Frame,
    FrameError,
    Notification,
    Response,
    decode_frame,
    encode_request,
    is_safe_id,
    status_params,
)
from shellylog.status import DeviceStatus, switch_key

log = Logger(namespace="shellylog.protocol")

SUBPROTOCOL = "json-rpc"
GET_STATUS = "Shelly.GetStatus"
ENABLE_NOTIFY = "NotifyStatus"
# Answers we still wait for, per connection; a device that never answers must not grow it.
MAX_OUTSTANDING = 64
# Binary frames tolerated on one connection before it is closed: devices never send any.
MAX_BINARY = 10
# Error answers of a device logged per connection; the rest are only counted.
MAX_ERRORS_LOGGED = 3
RATE_WINDOW = 60.0
#: Seconds a connection has, from its open, to name its device (a frame with a valid src);
#: a nameless one would hold a connection slot for nothing.
NAME_TIMEOUT = 30.0
#: Seconds a peer may leave more than the transport's buffer (Twisted's C{bufferSize},
#: 64 KiB) of what we sent unread before it is dropped.
BACKPRESSURE_TIMEOUT = 30.0

# WebSocket close codes (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008

#: Close codes Autobahn sends when it fails a connection itself, and the reason that is
#: counted under.
AUTOBAHN_FAILURES = {1002: "protocol_error", 1009: "too_big"}


#: The method labels frames are counted under; anything else a device sends is "other".
KNOWN_METHODS = {"notifystatus", "notifyfullstatus", "notifyevent"}


@frozen
class Limits:
    """
    What one peer may cost us.

    @ivar max_message: bytes in one WebSocket message (larger: closed with 1009).
    @ivar max_rate: frames per minute per connection (beyond: dropped; beyond twice
        that: closed with 1008).
    @ivar max_connections: open WebSocket connections (beyond: HTTP 503 at the handshake).
    @ivar max_bytes_rate: bytes of messages per minute per connection (beyond: dropped;
        beyond twice that: closed with 1008). A device sends its full status (about
        4 KiB) once a minute and deltas of a few hundred bytes: far less than 1 MiB.
    @ivar max_per_address: open WebSocket connections from one IP address (beyond: HTTP
        503 at the handshake), so that one host cannot take every slot.
    @ivar max_devices: device records kept (for C{/status}, with the tracker's state);
        beyond it, those of devices that left longest ago are forgotten first.
    @ivar max_warnings: warnings peers may cause per minute, all connections together
        (beyond: counted, and summarized once a minute; see L{shellylog.logbudget.LogBudget}).

    The last two are the registry's to apply: L{shellylog.tap.makeService} hands them to
    the L{DeviceRegistry} it makes.
    """

    max_message: int = 256 * 1024
    max_rate: int = 600
    max_connections: int = 10000
    max_bytes_rate: int = 1024 * 1024
    max_per_address: int = 200
    max_devices: int = 20000
    max_warnings: int = PER_MINUTE


def printable(value: object, limit: int = 80) -> str:
    """A peer-supplied value made safe for a log line: escaped and cut short."""
    text = value if isinstance(value, str) else repr(value)
    return ascii(text[:limit])


class ShellyServerProtocol(ServerProtocol):
    """One device's WebSocket connection."""

    factory: ShellyServerFactory
    # Why shellylog itself failed the connection, if it did: counted at the close. A class
    # default, so that a connection pays for it only when it is set.
    _failure: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.device_id: str | None = None
        # Made again in onOpen, with the factory's logged channels (not known here yet).
        self.status = DeviceStatus()
        self._next_id = 1
        self._outstanding: dict[int | str, str] = {}
        self._poller: LoopingCall | None = None
        self.rejected: Counter[str] = Counter()
        # The device-id globs this connection's token admits.
        self._admitted: tuple[str, ...] = ()
        self._window_start = 0.0
        self._window_frames = 0
        self._window_bytes = 0
        self._record: DeviceRecord | None = None
        self._opened = False
        # The peer's IP address, once it is counted in the registry's per_address.
        self._address: str | None = None
        self._name_timer: IDelayedCall | None = None
        self._stalled_timer: IDelayedCall | None = None
        self._errors = 0

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
        self._admitted = admitted
        if SUBPROTOCOL in request.protocols:
            return SUBPROTOCOL
        return None

    def onOpen(self) -> None:
        # No log line per open socket: "device connected" follows with its first frame.
        self._opened = True
        self.status = DeviceStatus(keys=self.factory.component_keys)
        self.factory.registry.opened(self)
        self._name_timer = self.factory.clock.callLater(NAME_TIMEOUT, self._nameless)
        self.send_request(ENABLE_NOTIFY, {"enable": True})
        self.send_request(GET_STATUS)
        interval = self.factory.poll_interval
        if interval > 0:
            self._poller = LoopingCall(self.send_request, GET_STATUS)
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

    def _nameless(self) -> None:
        self._name_timer = None
        if self.device_id is None:
            self.factory.registry.rejected["no_device"] += 1
            self._close(CLOSE_POLICY_VIOLATION, "no device id")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._cancel_stalled()
        if self._name_timer is not None and self._name_timer.active():
            self._name_timer.cancel()
        self._name_timer = None
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
        total = sum(self.rejected.values())
        if total:
            self.factory.registry.log_budget.warn(
                log,
                "{total} frames from {peer} ({device}) were rejected: {reasons}",
                event="frames_rejected_summary",
                total=total,
                peer=self.peer,
                device=self.device_id,
                reasons=dict(self.rejected),
            )
        if self.device_id is not None:
            # A connection replaced by a newer one of its device does not end the device.
            registry = self.factory.registry
            current = registry.is_current(self)
            registry.unbind(self)
            if current:
                log.info(
                    "device {device} disconnected ({peer}, code {code})",
                    event="device_disconnected",
                    device=self.device_id,
                    peer=self.peer,
                    code=code,
                )

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

    # -- requests ----------------------------------------------------------------------

    def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send one JSON-RPC request to the device; return its id."""
        request_id = self._next_id
        self._next_id += 1
        if len(self._outstanding) >= MAX_OUTSTANDING:
            del self._outstanding[next(iter(self._outstanding))]
        self._outstanding[request_id] = method
        self.sendMessage(encode_request(request_id, method, params).encode("utf-8"))
        return request_id

    # -- frames in ---------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            now = self.factory.clock.seconds()
            if self._record is not None:
                self._record.frames += 1
                self._record.last_frame_at = now
            if not self._within_rate(now, len(payload)):
                return
            if isBinary:
                if self.rejected["binary"] + 1 >= MAX_BINARY:
                    self._close(CLOSE_UNSUPPORTED_DATA, "binary frames")
                raise FrameError("binary", "binary frame; devices send text")
            try:
                # Autobahn's own UTF-8 check is off (utf8validateIncoming=False): the
                # codec checks as strictly, at a fraction of the cost per message.
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self.factory.registry.rejected["bad_utf8"] += 1
                self._close(CLOSE_INVALID_PAYLOAD, "invalid UTF-8")
                return
            self._handle(decode_frame(text))
        except FrameError as e:
            self._reject(e.reason, e.detail)
        except Exception:
            self._reject("internal", "unexpected error")
            if (self.rejected["internal"] == 1
                    and self.factory.registry.log_budget.allow("frame_failed")):
                log.failure("unexpected error on a frame from {peer}", event="frame_failed",
                            peer=self.peer, device=self.device_id)

    def _within_rate(self, now: float, size: int) -> bool:
        """
        Count a frame of C{size} bytes in this minute's window; drop it, or close, past
        the frames or the bytes a minute allowed. Dropped frames count too: a peer that
        keeps sending past the limit is closed.
        """
        if not 0 <= now - self._window_start < RATE_WINDOW:
            self._window_start, self._window_frames, self._window_bytes = now, 0, 0
        self._window_frames += 1
        self._window_bytes += size
        limits = self.factory.limits
        # The checks stay inline: every frame passes them; only a frame over a limit pays
        # for a call.
        if self._window_frames > limits.max_rate:
            return self._over(self._window_frames, limits.max_rate, "rate_limited", "frames")
        if self._window_bytes > limits.max_bytes_rate:
            return self._over(self._window_bytes, limits.max_bytes_rate, "byte_rate_limited",
                              "bytes")
        return True

    def _over(self, count: int, limit: int, reason: str, unit: str) -> bool:
        """C{count} C{unit} this minute is over C{limit}: drop the frame; past twice, close."""
        self._reject(reason, f"more than {limit} {unit} a minute")
        if count > 2 * limit:
            self._close(CLOSE_POLICY_VIOLATION, f"too many {unit}")
        return False

    def _close(self, code: int, reason: str) -> None:
        if self.close_with(code, reason):
            self.factory.registry.log_budget.warn(
                log, "closing {peer} ({device}) with {code}: {why}", event="connection_closed",
                peer=self.peer, device=self.device_id, code=code, why=reason)

    def _reject(self, reason: str, detail: str) -> None:
        self.factory.registry.rejected[reason] += 1
        self.rejected[reason] += 1
        # One warning per reason and connection: a flood must not flood the log.
        if self.rejected[reason] == 1:
            self.factory.registry.log_budget.warn(
                log,
                "dropped a frame from {peer} ({device}): {detail}",
                event="frame_rejected",
                peer=self.peer,
                device=self.device_id,
                reason=reason,
                detail=detail,
            )

    def _handle(self, frame: Frame) -> None:
        src = frame.src
        # The usual frame is from the bound device, whose id was checked when it bound.
        if src != self.device_id:
            self._bind(src)
        received = self.factory.registry.received
        if isinstance(frame, Notification):
            kind = frame.kind
            received[kind if kind in KNOWN_METHODS else "other"] += 1
            self._notification(frame, kind)
        elif isinstance(frame, Response):
            received["response"] += 1
            self._response(frame)
        else:
            received["error"] += 1
            self._error(frame)

    def _bind(self, src: str) -> None:
        """A frame's C{src} is not the bound device: bind it if this is the first."""
        if not is_safe_id(src, self.factory.id_pattern):
            raise FrameError("bad_src", f"src {printable(src)} is not a device id "
                             "(--id-pattern)")
        if self.device_id is None:
            if not self.factory.admission.may_log(src, self._admitted):
                self._close(CLOSE_POLICY_VIOLATION, "device not allowed")
                raise FrameError("not_allowed", f"device {src} is not allowed here")
            self.device_id = src
            if self._name_timer is not None and self._name_timer.active():
                self._name_timer.cancel()
            self._name_timer = None
            self._record = self.factory.registry.bind(self)
            self._record.frames += 1
            self._record.last_frame_at = self.factory.clock.seconds()
            log.info("device {device} connected from {peer}", event="device_connected",
                     device=src, peer=self.peer)
        else:
            raise FrameError("src_mismatch", f"src {src} on a connection of {self.device_id}")

    def _notification(self, frame: Notification, kind: str) -> None:
        if kind == "notifystatus":
            self.status.merge(status_params(frame.params))
            self._emit()
        elif kind == "notifyfullstatus":
            self.status.replace(status_params(frame.params))
            self._emit()
        # Anything else (NotifyEvent, ...) is counted in the registry's received, and not
        # logged: twistd writes debug lines too, and a fleet sends events all day.

    def _response(self, frame: Response) -> None:
        method = self._outstanding.pop(frame.id, None)
        if method == GET_STATUS:
            if not isinstance(frame.result, dict):
                raise FrameError("bad_result", "Shelly.GetStatus result is not an object")
            self.status.replace(status_params(frame.result))
            self._emit()

    def _error(self, frame: ErrorResponse) -> None:
        method = self._outstanding.pop(frame.id, None) if frame.id is not None else None
        if method == ENABLE_NOTIFY:
            # Real firmware has no such method; the original collector sent it anyway.
            return
        # A few per connection: a peer may send error answers without end (each one is
        # counted in the registry's received all the same).
        self._errors += 1
        if self._errors > MAX_ERRORS_LOGGED:
            return
        last = ""
        if self._errors == MAX_ERRORS_LOGGED:
            last = " (further errors on this connection are not logged)"
        # Not "message": that key belongs to legacy (twisted.python.log) events, and a
        # legacy observer blanks it for every observer after it.
        self.factory.registry.log_budget.warn(
            log,
            "{device} answered {method} with error {code}: {error_message}" + last,
            event="device_error",
            device=self.device_id,
            method=method,
            code=printable(frame.code),
            error_message=printable(frame.message, 200),
        )

    def _emit(self) -> None:
        assert self.device_id is not None
        registry = self.factory.registry
        if registry.devices.get(self.device_id) is not self:
            # Replaced by a newer connection of the device and closing: what still
            # arrives here is stale and must not reach the new connection's readings.
            return
        values = self.status.values_for(self.factory.channel_keys)
        if values:
            registry.sink.readings(self.device_id, values)


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
        channels: tuple[int, ...] = (0, 1, 2, 3),
        poll_interval: float = 60.0,
        limits: Limits | None = None,
        admission: Admission | None = None,
        id_pattern: re.Pattern[str] = DEVICE_ID,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.clock: IReactorTime = registry.clock
        self.channels = channels
        self.channel_keys = tuple((channel, switch_key(channel)) for channel in channels)
        #: The components each connection keeps of its device's status.
        self.component_keys = frozenset(key for _, key in self.channel_keys)
        self.poll_interval = poll_interval
        self.limits = limits = limits or Limits()
        self.admission = admission or Admission()
        self.id_pattern = id_pattern
        # max_connections is checked in onConnect, to count and log the refusal.
        self.setProtocolOptions(**protocol_options(limits.max_message))

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
