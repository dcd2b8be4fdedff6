"""
The one door to Autobahn's and Twisted's internals.

Everything shellylog does that is not Autobahn's or Twisted's public API lives here, so that
an upgrade has one module to check. Each name below is relied on, and each has a contract
test in C{tests/wire/test_internals.py} that fails on an Autobahn (or Twisted) that changed it:

Autobahn, C{autobahn.websocket.protocol}:

- C{WebSocketServerProtocol.CONFIG_ATTRS}, and that a new connection copies an option from its
  factory only when it lacks the attribute (C{_connectionMade}): L{ServerFactory} gives
  its connections a class that holds the options.
- C{current_frame} (its C{mask}) and C{current_frame_masker.pointer()}, and that
  C{onFrameData} gets the payload still masked when C{applyMask=False}:
  L{ServerProtocol.onFrameData} unmasks it with L{shellylog.framing.unmask}.
- C{onMessageEnd} with C{message_data}, C{message_is_binary} and C{failedByMe}:
  L{ServerProtocol.onMessageEnd} hands the message to C{onMessage} without Autobahn's
  observer event per message.
- C{onMessageFrameBegin}, which Autobahn calls for each frame of a message, after it
  added the message's previous frame to C{message_data} (one entry per frame),
  C{failedByMe} and C{_fail_connection(code, reason)}, which sets C{failedByMe} so that
  nothing more of the message is kept:
  L{ServerProtocol.onMessageFrameBegin} fails a message of more than L{MAX_FRAGMENTS}
  frames with 1009.
- C{sendCloseFrame(code, reasonUtf8, isReply)}, C{state} and C{STATE_OPEN}:
  L{ServerProtocol.close_with} sends codes (1001, 1003, 1008) that C{sendClose} refuses.
- C{failedByMe} and C{localCloseCode}: L{ServerProtocol.failure_code}, the code with which
  Autobahn failed a connection itself (1002, 1009).
- C{onAutoPingTimeout}: L{ServerProtocol.ping_timed_out} is called from it.
- The module-level C{pformat} and C{hltype}, used for debug lines, and C{Timings.__str__},
  which calls C{pformat}: L{install_process_patches}.
- C{log}, the class's logger, which Autobahn's code calls as C{self.log}: each
  L{ServerProtocol} has its own (L{QuietLogger}), whose info lines and warnings pass
  L{ServerProtocol.may_log} first.

Twisted:

- C{HTTPChannel._networkProducer}: L{release_http_channel}.
- C{HTTPChannel.allHeadersReceived}, C{length}, C{requests} and C{persistent}: that
  C{allHeadersReceived} is called once a request's headers are in, with C{length} the
  C{Content-Length} (C{None} for chunked) and before any byte of the body is read or
  C{Request.gotLength} makes its content file; that a C{length} of 0 there has the
  request rendered at once; that C{persistent} False closes the connection after the
  answer: L{HeadersFirstChannel}.
- C{HTTPChannel._log}, the logger of its timeouts (C{Timing out client}):
  L{quiet_http_channel}.

The compression policy is stated here too (L{decline_compression}): shellylog never accepts
C{permessage-deflate}. Devices never offer it, and a compressed message could hide its real
size from C{--max-message}; a client that offers it gets its C{101} without the extension.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast

import autobahn.websocket.protocol as _autobahn_protocol
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from shellylog.framing import unmask


def decline_compression(offers: list[Any]) -> None:
    """Autobahn's C{perMessageCompressionAccept}: accept no offer, ever."""
    return None


def protocol_options(max_message: int) -> dict[str, Any]:
    """
    Autobahn's options for shellylog's device connections, with C{max_message} bytes the
    largest message (and frame) accepted.
    """
    return {
        # No HTML page for a plain GET /ws: a clear HTTP error instead.
        "webStatus": False,
        # Origins are checked before Autobahn sees the handshake (shellylog.handshake,
        # --allow-origin); Autobahn's own check must admit every origin, null included.
        # Its setProtocolOptions resets allowNullOrigin to False unless it is given, each call.
        "allowedOrigins": ["*"],
        "allowNullOrigin": True,
        # Close codes must reach the peer as close frames, not as a dropped socket.
        "failByDrop": False,
        "openHandshakeTimeout": 5,
        # How long a peer has to answer our close frame. Autobahn's timers fire at the
        # whole second that follows now + delay, truncated: its default of 1 s can fire
        # at once, and a device that answers in a few milliseconds is dropped (1006).
        # 3 s means 2 to 3 s, under CloseOnStop's 5 s.
        "closeHandshakeTimeout": 3,
        # A ping every 30 s; a peer silent for 60 s (30 s after an unanswered ping) is
        # dropped.
        "autoPingInterval": 30,
        "autoPingTimeout": 30,
        # Autobahn's default (True) takes any data frame as the answer to a ping, so a peer
        # that sends a fragment every 25 s but never reads would be kept for ever: only
        # the pong counts.
        "autoPingRestartOnAnyTraffic": False,
        "perMessageCompressionAccept": decline_compression,
        # Both done by ServerProtocol, more cheaply (see onFrameData, and the protocol's
        # onMessage, which decodes with Python's strict codec).
        "applyMask": False,
        "utf8validateIncoming": False,
        "maxMessagePayloadSize": max_message,
        "maxFramePayloadSize": max_message,
    }


#: Frames (fragments) one message may arrive in. Devices send every message in one frame;
#: Autobahn keeps a list entry per fragment, so a message of many tiny fragments would
#: cost several times its bytes (about 5.5 MiB for 256 KiB in 2-byte fragments).
MAX_FRAGMENTS = 64

#: The close code for a message of too many fragments: 1009, "message too big" (RFC 6455
#: section 7.4.1: too big to process), as for a message over C{--max-message}: the limit
#: is on the size of the message, counted in pieces. Not 1008, which says nothing of size.
CLOSE_TOO_MANY_FRAGMENTS = 1009

#: Autobahn's defaults for the options with which shellylog takes work over from it: a
#: server that does not subclass L{ServerProtocol} must set them back to these.
TAKEN_OVER = {"applyMask": True, "utf8validateIncoming": True}


class QuietLogger:
    """
    Another library's logger for one connection, C{owner}, whose info lines and warnings
    are logged only when C{owner.may_log()} says so: what a peer can make Autobahn or
    Twisted log, once per connection, must not flood the log when a thousand peers do it.
    Everything else (debug, errors, failures) passes as it is. The owner is held weakly,
    so that the connection, which holds its logger, is freed without the cycle collector.
    """

    __slots__ = ("_inner", "_owner", "_shared")

    def __init__(self, inner: Any, owner: Any) -> None:
        self._inner = inner
        self._owner = weakref.ref(owner)
        # txaio's logger (Autobahn's) is one for all connections: it binds to none.
        self._shared = not isinstance(inner, Logger)

    def _logger(self) -> Any:
        inner, owner = self._inner, self._owner()
        if isinstance(inner, Logger) and owner is not None:
            # As read from the connection: the namespace its class gives, and the
            # connection as the source of the event, as without us.
            return inner.__get__(owner, type(owner))
        return inner

    def _allowed(self) -> bool:
        owner = self._owner()
        return owner is None or bool(owner.may_log())

    def info(self, *args: Any, **kwargs: Any) -> None:
        if self._allowed():
            self._logger().info(*args, **kwargs)

    def warn(self, *args: Any, **kwargs: Any) -> None:
        if self._allowed():
            self._logger().warn(*args, **kwargs)

    # Autobahn logs debug lines for every frame: passed on without a detour
    # (through __getattr__ each would cost half a microsecond more per frame).
    def debug(self, *args: Any, **kwargs: Any) -> None:
        (self._inner if self._shared else self._logger()).debug(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger(), name)


def quiet_http_channel(channel: HTTPChannel) -> None:
    """
    Twisted's lines about C{channel} (its timeouts) are logged only when its C{may_log()}
    says so.
    """
    channel._log = QuietLogger(HTTPChannel._log, channel)  # type: ignore[assignment]


class ServerProtocol(WebSocketServerProtocol):
    """
    Autobahn's server protocol with shellylog's uses of its internals, each behind a
    method of its own. Subclasses use only these and Autobahn's public API.
    """

    def __init__(self) -> None:
        super().__init__()
        # Autobahn's own lines about this connection (a refused handshake, a failed
        # connection) pass may_log.
        self.log = QuietLogger(WebSocketServerProtocol.log, self)

    def may_log(self) -> bool:
        """Whether Autobahn may log an info line or a warning about this connection now."""
        return True

    def onFrameData(self, payload: bytes) -> bool | None:
        # The factory turns Autobahn's unmasking off (applyMask=False): it builds a masker
        # object per frame, which costs more than all else it does for a small frame.
        # Unmasked here instead, control frames included, before Autobahn reads them.
        frame = self.current_frame
        if payload and frame is not None and frame.mask:
            offset = self.current_frame_masker.pointer() - len(payload)
            # Autobahn annotates the mask as str; it holds the header's four bytes.
            payload = unmask(payload, cast(bytes, frame.mask), offset)
        return super().onFrameData(payload)

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        # message_data holds one entry per frame of the message before this one.
        if len(self.message_data) >= MAX_FRAGMENTS and not self.failedByMe:
            # Let go of what the message holds at once, not when the close completes;
            # once failedByMe is set, Autobahn keeps nothing more of it.
            self.message_data = []
            self.too_many_fragments()
            self._fail_connection(CLOSE_TOO_MANY_FRAGMENTS,
                                  f"more than {MAX_FRAGMENTS} fragments in a message")

    def too_many_fragments(self) -> None:
        """A message came in more than L{MAX_FRAGMENTS} frames; the connection fails next."""

    def onMessageEnd(self) -> None:
        # Autobahn's own also fires a "message" event to observers, a Deferred for every
        # message and about a quarter of its cost per frame; nothing observes it here.
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]  # as Autobahn does

    def onAutoPingTimeout(self) -> None:
        self.ping_timed_out()
        super().onAutoPingTimeout()

    def ping_timed_out(self) -> None:
        """The peer did not answer a ping in time; the connection is dropped next."""

    def close_with(self, code: int, reason: str) -> bool:
        """
        Begin a close with C{code}, any code RFC 6455 allows an endpoint to send (Autobahn's
        C{sendClose} refuses 1001, 1003 and 1008). Returns whether the connection was open.
        """
        if self.state != self.STATE_OPEN:
            return False
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8"), isReply=False)
        return True

    def failure_code(self) -> int | None:
        """The close code with which Autobahn itself failed this connection, if it did."""
        if self.failedByMe:
            return cast(int | None, self.localCloseCode)
        return None


class ServerFactory(WebSocketServerFactory):
    """
    Autobahn's server factory, whose connections get a class that holds its options.

    Autobahn copies each of its forty-odd options from the factory into every new
    connection that lacks it, which makes each connection's C{__dict__} about 1.7 KiB
    larger; a connection whose class has them copies none.
    """

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        super().setProtocolOptions(**options)
        self.protocol = options_class(
            type(self).protocol, {name: getattr(self, name) for name in self.protocol.CONFIG_ATTRS}
        )


def options_class(base: type[Any], options: dict[str, Any]) -> type[Any]:
    """
    A subclass of C{base} that holds C{options} as class attributes. A function option
    (C{perMessageCompressionAccept}) stays a plain function: stored on a class as it is,
    it would become a method and be called with the connection as its first argument.
    """
    attributes: dict[str, Any] = {
        name: staticmethod(value) if callable(value) else value
        for name, value in options.items()
    }
    attributes |= {"__module__": base.__module__, "__doc__": base.__doc__}
    return type(base.__name__, (base,), attributes)


def release_http_channel(request: Request) -> None:
    """
    After a WebSocketResource took C{request}'s connection over, let go of the HTTP
    channel: it is still the transport's producer, keeping itself and the request (several
    KiB) alive for as long as the WebSocket stays open. Twisted does the same when it hands
    a connection to HTTP/2.
    """
    request.channel._networkProducer.unregisterProducer()  # type: ignore[attr-defined]


class HeadersFirstChannel(HTTPChannel):
    """
    Twisted's HTTP/1.1 channel, where a request that announces a body (C{Content-Length}
    above 0, or any C{Transfer-Encoding}) is rendered from its headers alone, and the
    connection closed after the answer: none of shellylog's pages takes a body, and Twisted
    would read the whole body first, a large one into a temporary file. Its body is never
    read or stored, no C{100 Continue} invites it, and L{body_announced} is told, so the
    answer can be a refusal.
    """

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        announced = self.length != 0 or request.requestHeaders.hasHeader(b"transfer-encoding")
        if announced:
            # Length 0: Twisted makes an empty in-memory content and renders the request
            # now, without waiting for (or reading) a byte of the body.
            self.length = 0
            request.requestHeaders.removeHeader(b"expect")
        super().allHeadersReceived()
        if announced:
            # Whatever of the body follows is never parsed as a next request.
            self.persistent = False
            self.body_announced(request)

    def body_announced(self, request: Request) -> None:
        """C{request} announced a body, which will not be read; it is rendered next."""


class _Lazy:
    """Text made by C{function(value)} when it is first needed."""

    __slots__ = ("_function", "_text", "_value")

    def __init__(self, function: Callable[[Any], str], value: object) -> None:
        self._function = function
        self._value = value
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._function(self._value)
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return str(self)


def _lazy(function: Callable[[Any], str]) -> Callable[[Any], _Lazy]:
    def lazy(value: object) -> _Lazy:
        return _Lazy(function, value)

    lazy.__wrapped__ = function  # type: ignore[attr-defined]
    return lazy


def install_process_patches() -> None:
    """
    Make Autobahn's per-connection debug formatting lazy, once per process.

    Autobahn formats a dump of its settings (C{pformat}) and highlighted names (C{hltype})
    for debug log lines on every connection, even when nothing records debug lines: about
    40% of the CPU a WebSocket handshake costs it. Both become functions that return
    objects which format themselves when turned into text, so a line nobody reads costs
    nothing and a line someone reads is the same as before. C{Timings.__str__} (Autobahn's
    C{trackTimings}) returns C{pformat(...)} and must return a real C{str}: it is wrapped to.
    """
    for name in ("pformat", "hltype"):
        function = getattr(_autobahn_protocol, name)
        if not hasattr(function, "__wrapped__"):
            setattr(_autobahn_protocol, name, _lazy(function))
    timings = _autobahn_protocol.Timings
    if not hasattr(timings.__str__, "__wrapped__"):
        original = timings.__str__

        def as_text(self: Any) -> str:
            return str(original(self))

        as_text.__wrapped__ = original  # type: ignore[attr-defined]
        timings.__str__ = as_text  # type: ignore[method-assign]


class ProcessPatches(Service):
    """Applies L{install_process_patches} when the service starts."""

    name = "autobahn-process-patches"

    def startService(self) -> None:
        install_process_patches()
        super().startService()
