"""
The rules of one device connection, without Autobahn: the time it has to name its device,
the frames and bytes a minute it may send, the binding of the connection to its device,
and what each decoded frame does.

The WebSocket protocol (L{shellylog.protocol.ShellyServerProtocol}) drives a L{Session}:
it hands it every message and tells it when the connection opens and ends; the session
answers through a L{Link} (send a request, close) and reports to the L{DeviceRegistry}.
Time is the registry's clock, so a test drives a session with a L{Link} of its own and a
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Protocol

from attrs import define, field, frozen
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from shellylog.admission import Admission
from shellylog.channels import ChannelSelection, ChannelSpec
from shellylog.registry import Connection, DeviceRecord, DeviceRegistry
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
from shellylog.status import DeviceStatus

# The namespace these lines had when the protocol held these rules: filters keep working.
log = Logger(namespace="shellylog.protocol")

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

# WebSocket close codes (RFC 6455, section 7.4.1).
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008

#: The method labels frames are counted under; anything else a device sends is "other".
KNOWN_METHODS = {"notifystatus", "notifyfullstatus", "notifyevent"}


def printable(value: object, limit: int = 80) -> str:
    """A peer-supplied value made safe for a log line: escaped and cut short."""
    text = value if isinstance(value, str) else repr(value)
    return ascii(text[:limit])


class Link(Connection, Protocol):
    """What a session needs of its connection, besides what the registry needs."""

    def send_text(self, text: str) -> None:
        """Send one text message to the device."""


@frozen
class Rules:
    """
    What every connection of one server allows and keeps, shared by all its sessions.

    @ivar max_rate: frames per minute (beyond: dropped; beyond twice that: closed).
    @ivar max_bytes_rate: bytes of messages per minute (likewise).
    @ivar admission: which devices a connection's token admits.
    @ivar id_pattern: what a device id must match, all of it (C{--id-pattern}).
    @ivar channels: the channels logged, as C{--channels} gives them (rule 8).
    """

    max_rate: int = 600
    max_bytes_rate: int = 1024 * 1024
    admission: Admission = field(factory=Admission)
    id_pattern: re.Pattern[str] = DEVICE_ID
    channels: tuple[ChannelSpec, ...] = (0, 1, 2, 3)
    #: The channels logged, and the components each connection keeps for them.
    selection: ChannelSelection = field(init=False)

    @selection.default
    def _selection(self) -> ChannelSelection:
        return ChannelSelection.from_specs(self.channels)


@define(eq=False)
class Session:
    """
    One device connection's rules and state.

    @ivar rules: what the server allows each connection.
    @ivar registry: where the connection binds to its device and is counted.
    @ivar link: the connection: how to answer the device and close it.
    @ivar admitted: the device-id globs the connection's token admits.
    @ivar device_id: the device the connection speaks for, once a frame named it.
    @ivar status: the device's known status.
    @ivar rejected: frames dropped on this connection, by reason.
    """

    rules: Rules
    registry: DeviceRegistry
    link: Link
    admitted: tuple[str, ...] = ()
    device_id: str | None = field(default=None, init=False)
    status: DeviceStatus = field(factory=DeviceStatus, init=False)
    rejected: Counter[str] = field(factory=Counter, init=False)
    outstanding: dict[int | str, str] = field(factory=dict, init=False)
    _next_id: int = field(default=1, init=False)
    _window_start: float = field(default=0.0, init=False)
    _window_frames: int = field(default=0, init=False)
    _window_bytes: int = field(default=0, init=False)
    _record: DeviceRecord | None = field(default=None, init=False)
    _name_timer: IDelayedCall | None = field(default=None, init=False)
    _errors: int = field(default=0, init=False)

    # -- life cycle --------------------------------------------------------------------

    def opened(self) -> None:
        """The WebSocket opened: count it, start the name timer, ask for the status."""
        self.status = DeviceStatus(selection=self.rules.selection)
        self.registry.opened(self.link)
        self._name_timer = self.registry.clock.callLater(NAME_TIMEOUT, self._nameless)
        self.send_request(ENABLE_NOTIFY, {"enable": True})
        self.send_request(GET_STATUS)

    def stop_timer(self) -> None:
        """The connection is closing: it need not name its device any more."""
        if self._name_timer is not None and self._name_timer.active():
            self._name_timer.cancel()
        self._name_timer = None

    def ended(self, code: int | None) -> None:
        """
        The connection closed (with C{code}): summarize what it had rejected, and end its
        device unless a newer connection replaced it.
        """
        total = sum(self.rejected.values())
        if total:
            self.registry.log_budget.warn(
                log,
                "{total} frames from {peer} ({device}) were rejected: {reasons}",
                event="frames_rejected_summary",
                total=total,
                peer=self.link.peer,
                device=self.device_id,
                reasons=dict(self.rejected),
            )
        if self.device_id is not None:
            registry = self.registry
            # A connection replaced by a newer one of its device does not end the device.
            current = registry.is_current(self.link)
            registry.unbind(self.link)
            if current:
                log.info(
                    "device {device} disconnected ({peer}, code {code})",
                    event="device_disconnected",
                    device=self.device_id,
                    peer=self.link.peer,
                    code=code,
                )

    def _nameless(self) -> None:
        self._name_timer = None
        if self.device_id is None:
            self.registry.rejected["no_device"] += 1
            self.close(CLOSE_POLICY_VIOLATION, "no device id")

    def close(self, code: int, reason: str) -> None:
        """Close the connection with C{code}, and log it if it was open."""
        if self.link.close_with(code, reason):
            self.registry.log_budget.warn(
                log, "closing {peer} ({device}) with {code}: {why}", event="connection_closed",
                peer=self.link.peer, device=self.device_id, code=code, why=reason)

    # -- requests ----------------------------------------------------------------------

    def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send one JSON-RPC request to the device; return its id."""
        request_id = self._next_id
        self._next_id += 1
        if len(self.outstanding) >= MAX_OUTSTANDING:
            del self.outstanding[next(iter(self.outstanding))]
        self.outstanding[request_id] = method
        self.link.send_text(encode_request(request_id, method, params))
        return request_id

    # -- frames in ---------------------------------------------------------------------

    def received(self, payload: bytes, is_binary: bool) -> None:
        """One message from the device. Nothing it holds raises out of here."""
        try:
            now = self.registry.clock.seconds()
            if self._record is not None:
                self._record.frames += 1
                self._record.last_frame_at = now
            if not self._within_rate(now, len(payload)):
                return
            if is_binary:
                if self.rejected["binary"] + 1 >= MAX_BINARY:
                    self.close(CLOSE_UNSUPPORTED_DATA, "binary frames")
                raise FrameError("binary", "binary frame; devices send text")
            try:
                # Autobahn's own UTF-8 check is off (utf8validateIncoming=False): the
                # codec checks as strictly, at a fraction of the cost per message.
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self.registry.rejected["bad_utf8"] += 1
                self.close(CLOSE_INVALID_PAYLOAD, "invalid UTF-8")
                return
            self._handle(decode_frame(text))
        except FrameError as e:
            self._reject(e.reason, e.detail)
        except Exception:
            self._reject("internal", "unexpected error")
            if (self.rejected["internal"] == 1
                    and self.registry.log_budget.allow("frame_failed")):
                log.failure("unexpected error on a frame from {peer}", event="frame_failed",
                            peer=self.link.peer, device=self.device_id)

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
        rules = self.rules
        # The checks stay inline: every frame passes them; only a frame over a limit pays
        # for a call.
        if self._window_frames > rules.max_rate:
            return self._over(self._window_frames, rules.max_rate, "rate_limited", "frames")
        if self._window_bytes > rules.max_bytes_rate:
            return self._over(self._window_bytes, rules.max_bytes_rate, "byte_rate_limited",
                              "bytes")
        return True

    def _over(self, count: int, limit: int, reason: str, unit: str) -> bool:
        """C{count} C{unit} this minute is over C{limit}: drop the frame; past twice, close."""
        self._reject(reason, f"more than {limit} {unit} a minute")
        if count > 2 * limit:
            self.close(CLOSE_POLICY_VIOLATION, f"too many {unit}")
        return False

    def _reject(self, reason: str, detail: str) -> None:
        self.registry.rejected[reason] += 1
        self.rejected[reason] += 1
        # One warning per reason and connection: a flood must not flood the log.
        if self.rejected[reason] == 1:
            self.registry.log_budget.warn(
                log,
                "dropped a frame from {peer} ({device}): {detail}",
                event="frame_rejected",
                peer=self.link.peer,
                device=self.device_id,
                reason=reason,
                detail=detail,
            )

    def _handle(self, frame: Frame) -> None:
        src = frame.src
        # The usual frame is from the bound device, whose id was checked when it bound.
        if src != self.device_id:
            self._bind(src)
        received = self.registry.received
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
        if not is_safe_id(src, self.rules.id_pattern):
            raise FrameError("bad_src", f"src {printable(src)} is not a device id "
                             "(--id-pattern)")
        if self.device_id is None:
            if not self.rules.admission.may_log(src, self.admitted):
                self.close(CLOSE_POLICY_VIOLATION, "device not allowed")
                raise FrameError("not_allowed", f"device {src} is not allowed here")
            self.device_id = src
            self.stop_timer()
            self._record = self.registry.bind(self.link)
            self._record.frames += 1
            self._record.last_frame_at = self.registry.clock.seconds()
            log.info("device {device} connected from {peer}", event="device_connected",
                     device=src, peer=self.link.peer)
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
        method = self.outstanding.pop(frame.id, None)
        if method == GET_STATUS:
            if not isinstance(frame.result, dict):
                raise FrameError("bad_result", "Shelly.GetStatus result is not an object")
            self.status.replace(status_params(frame.result))
            self._emit()

    def _error(self, frame: ErrorResponse) -> None:
        method = self.outstanding.pop(frame.id, None) if frame.id is not None else None
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
        self.registry.log_budget.warn(
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
        registry = self.registry
        if registry.devices.get(self.device_id) is not self.link:
            # Replaced by a newer connection of the device and closing: what still
            # arrives here is stale and must not reach the new connection's readings.
            return
        values = self.status.current()
        if values:
            registry.sink.readings(self.device_id, values)
