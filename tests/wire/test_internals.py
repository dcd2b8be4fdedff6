"""
Contract tests for L{shellylog.internals}, the one door to Autobahn's and Twisted's
internals: one test (or more) for each private name its docstring lists. Each fails on an
Autobahn or Twisted that changed what shellylog relies on.
"""

from __future__ import annotations

import gc
import glob
import inspect
import io
import json
import os
import pprint
import tempfile
import weakref
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer
from autobahn.websocket.protocol import Timings
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from shellylog import internals
from shellylog.admission import Admission, TokenRule
from shellylog.config import Limits
from shellylog.internals import (
    TAKEN_OVER,
    ProcessPatches,
    ServerProtocol,
    decline_compression,
    protocol_options,
)
from shellylog.protocol import ShellyServerProtocol
from tests.support.frames import DEVICE
from tests.support.logs import capture_log
from tests.support.wire import Connection, Harness

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def masked_frame(payload: bytes, mask: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """A client frame with C{mask}, built here and not by Autobahn (small payloads only)."""
    assert len(payload) < 126
    key = mask * (len(payload) // 4 + 1)
    body = bytes(b ^ k for b, k in zip(payload, key, strict=False))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + body


def feed(connection: Connection, data: bytes) -> None:
    """Give the server C{data} one byte per read: frames arrive in pieces at every offset."""
    for i in range(len(data)):
        connection.server.dataReceived(data[i : i + 1])
    connection.flush()



def option(protocol: object, name: str) -> Any:
    """
    An Autobahn protocol option: C{setProtocolOptions} puts it on the protocol's class,
    where no type declares it.
    """
    return getattr(protocol, name)


def autobahn_global(name: str) -> Any:
    """
    A module-level name of C{autobahn.websocket.protocol}, the very one Autobahn calls (and
    the process patches replace); the module imports it, so it exports none of them.
    """
    return vars(autobahn_protocol)[name]


class SocketLikeTransport(StringTransport):
    """A L{StringTransport} with the C{protocol} attribute a socket's transport has."""

    protocol: object = None

class OptionsClassTests(SynchronousTestCase):
    """
    C{CONFIG_ATTRS}, and Autobahn copying an option into a connection only when the
    connection lacks it: the options live on a class per factory.
    """

    def test_our_options_are_autobahns(self) -> None:
        names = set(WebSocketServerProtocol.CONFIG_ATTRS)
        self.assertLessEqual(set(protocol_options(1024)), names)
        self.assertLessEqual(set(TAKEN_OVER), names)

    def test_not_copied_into_connections(self) -> None:
        small = Harness(self, limits=Limits(max_message=1000))
        large = Harness(self, limits=Limits(max_message=5000))
        _client, one = small.connect_ws("/ws")
        _client, other = large.connect_ws("/ws")
        for connection, size in [(one, 1000), (other, 5000)]:
            server = connection.server
            self.assertEqual(set(vars(server)) & set(server.CONFIG_ATTRS), set())
            self.assertEqual(option(server, "maxMessagePayloadSize"), size)
            self.assertEqual(option(server, "autoPingInterval"), 30)
            self.assertIs(option(server, "applyMask"), False)

    def test_options_set_later_reach_new_connections(self) -> None:
        harness = Harness(self)
        harness.factory.setProtocolOptions(autoPingInterval=7, allowNullOrigin=True)
        _client, connection = harness.connect_ws("/ws")
        self.assertEqual(option(connection.server, "autoPingInterval"), 7)
        self.assertEqual(option(connection.server, "autoPingTimeout"), 30)

    def test_function_option_stays_a_function(self) -> None:
        """
        A function stored on a class as it is becomes a method: Autobahn then calls it with
        the connection as well as the offers, and every offer of compression failed.
        """
        harness = Harness(self)
        _client, connection = harness.connect_ws("/ws")
        accept = option(connection.server, "perMessageCompressionAccept")
        self.assertIsNone(accept([PerMessageDeflateOffer()]))
        self.assertIs(type(connection.server).__dict__["perMessageCompressionAccept"].__func__,
                      decline_compression)


class CompressionDeclinedTests(SynchronousTestCase):
    """A client that offers C{permessage-deflate} gets its 101 without the extension."""

    def test_autobahn_client_offering_deflate(self) -> None:
        harness = Harness(self)
        events = capture_log(self)
        client, connection = harness.connect_ws(
            "/ws", protocols=["json-rpc"],
            offers=[PerMessageDeflateOffer(), PerMessageDeflateOffer(accept_max_window_bits=True)],
        )
        self.assertTrue(client.opened)
        assert client.response is not None
        self.assertNotIn("sec-websocket-extensions", client.response.headers)
        self.assertEqual(connection.server.websocket_extensions_in_use, [])
        # Served as any device: the bootstrap requests came, a frame is taken.
        self.assertEqual([m["method"] for m in client.json_messages()],
                         ["NotifyStatus", "Shelly.GetStatus"])
        client.send_json({"src": DEVICE, "method": "NotifyStatus",
                          "params": {"switch:0": {"apower": 5.5}}})
        connection.flush()
        self.assertEqual(harness.sink.readings_calls[-1][1][0].apower, 5.5)
        self.assertEqual([e for e in events if e.get("isError") or e.get("log_failure")], [])

    def test_raw_offer_with_parameters(self) -> None:
        harness = Harness(self)
        raw, _connection = harness.connect_raw(
            UPGRADE
            + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
            b"permessage-deflate; server_no_context_takeover\r\n\r\n"
        )
        self.assertEqual(raw.status_line, b"HTTP/1.1 101 Switching Protocols")
        self.assertNotIn(b"sec-websocket-extensions", raw.headers)


class UnmaskingTests(SynchronousTestCase):
    """
    With C{applyMask=False}, C{onFrameData} gets masked payload; C{current_frame.mask} and
    C{current_frame_masker.pointer()} say how to unmask it.
    """

    def setUp(self) -> None:
        self.harness = Harness(self)
        self.client, self.connection = self.harness.connect_ws("/ws")

    def test_byte_by_byte_and_fragmented(self) -> None:
        text = json.dumps({"src": DEVICE, "method": "NotifyStatus",
                           "params": {"switch:1": {"apower": 42.5}}})
        first = masked_frame(text[:7].encode(), b"\x01\x02\x03\x04", fin=False)
        rest = masked_frame(text[7:].encode(), b"\xa0\x0b\xfc\x7d", opcode=0)
        feed(self.connection, first + rest)
        self.assertEqual(self.harness.sink.readings_calls[-1][1][1].apower, 42.5)
        self.assertEqual(self.harness.registry.rejected, {})

    def test_ping_answered_with_its_payload(self) -> None:
        pongs: list[bytes] = []

        def pong(payload: bytes) -> None:
            pongs.append(payload)

        self.client.onPong = pong  # type: ignore[method-assign]
        feed(self.connection, masked_frame(b"are you there?", b"\x5a\x17\x00\xe1", opcode=9))
        self.assertEqual(pongs, [b"are you there?"])

    def test_close_code_read_unmasked(self) -> None:
        feed(self.connection, masked_frame(b"\x03\xe8bye", b"\x99\x88\x77\x66", opcode=8))
        self.assertEqual(self.connection.server.remoteCloseCode, 1000)
        self.assertEqual(self.connection.server.remoteCloseReason, "bye")


class MessageEndTests(SynchronousTestCase):
    """C{onMessageEnd}, C{message_data}, C{message_is_binary}, C{failedByMe}."""

    def setUp(self) -> None:
        self.harness = Harness(self)
        self.client, self.connection = self.harness.connect_ws("/ws")
        self.got: list[tuple[bytes, bool]] = []
        self.connection.server.onMessage = (  # type: ignore[method-assign]
            lambda payload, isBinary: self.got.append((payload, isBinary))
        )

    def test_whole_message_once_without_observer_event(self) -> None:
        fired: list[object] = []
        self.connection.server.on("message", lambda *a, **k: fired.append(a))
        feed(self.connection, masked_frame(b"ab", b"\x01\x02\x03\x04", fin=False)
             + masked_frame(b"cd", b"\x05\x06\x07\x08", opcode=0))
        feed(self.connection, masked_frame(b"\x00\xff", b"\x01\x01\x01\x01", opcode=2))
        self.assertEqual(self.got, [(b"abcd", False), (b"\x00\xff", True)])
        self.assertEqual(fired, [])
        self.assertIsNone(self.connection.server.message_data)

    def test_nothing_after_autobahn_failed_the_connection(self) -> None:
        harness = Harness(self, limits=Limits(max_message=1024))
        client, connection = harness.connect_ws("/ws")
        got: list[bytes] = []
        connection.server.onMessage = (  # type: ignore[method-assign]
            lambda payload, isBinary: got.append(payload)
        )
        client.sendMessage(b"x" * 2000)
        connection.flush()
        self.assertEqual(got, [])
        self.assertEqual(connection.server.failure_code(), 1009)


class FragmentLimitTests(SynchronousTestCase):
    """
    C{onMessageFrameBegin} per frame, with C{message_data} holding one entry per frame
    before it; C{_fail_connection}
    sets C{failedByMe}, after which Autobahn keeps nothing of the message in
    C{message_data} and hands none of it on.
    """

    def setUp(self) -> None:
        self.harness = Harness(self)
        self.client, self.connection = self.harness.connect_ws("/ws")
        server = self.connection.server
        self.got: list[bytes] = []
        self.calls: list[int] = []
        server.onMessage = (  # type: ignore[method-assign]
            lambda payload, isBinary: self.got.append(payload)
        )
        server.too_many_fragments = (  # type: ignore[method-assign]
            lambda: self.calls.append(len(server.message_data))
        )

    def message(self, fragments: int, finished: bool = True) -> bytes:
        mask = b"\x01\x02\x03\x04"
        frames = [masked_frame(b"a", mask, opcode=1 if i == 0 else 0,
                               fin=finished and i == fragments - 1)
                  for i in range(fragments)]
        return b"".join(frames)

    def test_message_data_holds_the_frames_before(self) -> None:
        server = self.connection.server
        seen: list[int] = []
        begin = type(server).onMessageFrameBegin

        def recording(length: int) -> None:
            seen.append(len(server.message_data))
            begin(server, length)

        server.onMessageFrameBegin = recording  # type: ignore[method-assign]
        feed(self.connection, self.message(3))
        self.assertEqual(seen, [0, 1, 2])
        self.assertEqual(self.got, [b"aaa"])

    def test_limit_is_64(self) -> None:
        self.assertEqual(internals.MAX_FRAGMENTS, 64)

    def test_at_the_limit_per_message(self) -> None:
        feed(self.connection, self.message(64) + self.message(64))
        self.assertEqual(self.got, [b"a" * 64, b"a" * 64])
        self.assertEqual(self.calls, [])
        self.assertIsNone(self.connection.server.failure_code())

    def test_over_the_limit(self) -> None:
        feed(self.connection, self.message(65, finished=False))
        server = self.connection.server
        self.assertEqual(self.calls, [0])
        self.assertEqual(server.failure_code(), 1009)
        self.assertEqual(server.message_data, [])
        feed(self.connection, self.message(10, finished=False)[7:] + masked_frame(
            b"z", b"\x01\x02\x03\x04", opcode=0))
        self.assertEqual(self.got, [])
        self.assertEqual(self.calls, [0])
        self.assertIn(server.message_data, ([], None))
        self.assertEqual(self.client.closed, (True, 1009, "more than 64 fragments in a message"))


class CloseTests(SynchronousTestCase):
    """C{sendCloseFrame}, C{state}, C{STATE_OPEN}, C{failedByMe}, C{localCloseCode}."""

    def setUp(self) -> None:
        self.harness = Harness(self)
        self.client, self.connection = self.harness.connect_ws("/ws")

    def test_close_with_a_code_sendclose_refuses(self) -> None:
        server = self.connection.server
        self.assertTrue(server.close_with(1008, "policy"))
        self.assertFalse(server.close_with(1003, "again"))
        self.connection.flush()
        self.assertEqual(self.client.closed, (True, 1008, "policy"))
        self.assertIsNone(server.failure_code())

    def test_failure_code_of_a_peer_close(self) -> None:
        self.client.sendClose(1000, "bye")
        self.connection.flush()
        self.assertIsNone(self.connection.server.failure_code())

    def test_failure_code_of_a_protocol_error(self) -> None:
        # A control frame without FIN: Autobahn fails the connection itself with 1002.
        feed(self.connection, masked_frame(b"x", b"\x01\x02\x03\x04", opcode=9, fin=False))
        self.assertEqual(self.connection.server.failure_code(), 1002)


class PingTimeoutTests(SynchronousTestCase):
    """C{onAutoPingTimeout} calls L{ServerProtocol.ping_timed_out}."""

    def test_called_once_for_a_silent_peer(self) -> None:
        harness = Harness(self)
        client, connection = harness.connect_ws("/ws")
        calls: list[float] = []
        connection.server.ping_timed_out = (  # type: ignore[method-assign]
            lambda: calls.append(harness.clock.seconds())
        )
        # Named, so that the 30 s deadline for a device id does not end it first.
        client.send_json({"src": DEVICE, "method": "NotifyEvent", "params": {}})
        connection.flush()
        client.dataReceived = lambda data: None  # type: ignore[method-assign]
        harness.advance(120)
        self.assertEqual(calls, [60.0])


class HttpChannelTests(SynchronousTestCase):
    """C{HTTPChannel._networkProducer}: released after the upgrade."""

    def test_http_side_let_go_after_the_upgrade(self) -> None:
        """Once upgraded, nothing holds on to the HTTP channel and its request."""
        harness = Harness(self)
        # A StringTransport, unlike iosim's, is a push producer: the HTTP channel registers
        # with it as a real socket's channel does.
        transport = SocketLikeTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4321))
        channel = harness.site.buildProtocol(transport.getPeer())
        assert channel is not None
        transport.protocol = channel
        channel.makeConnection(transport)
        self.assertIs(transport.producer, channel)
        channel.dataReceived(UPGRADE + b"\r\n")
        self.assertIn(b"101 Switching Protocols", transport.value())
        self.assertIsInstance(transport.protocol, ShellyServerProtocol)
        # The WebSocket took the channel's place as the transport's producer (backpressure).
        self.assertIs(transport.producer, transport.protocol)
        self.assertTrue(transport.streaming)
        gone = weakref.ref(channel)
        del channel
        gc.collect()
        self.assertIsNone(gone())


class OriginNeutralTests(SynchronousTestCase):
    """
    C{allowedOrigins} and C{allowNullOrigin}: with L{protocol_options}, Autobahn's own
    origin check admits every origin, so that C{--allow-origin} (checked before Autobahn
    sees the handshake) alone decides.
    """

    def test_any_origin_upgraded_by_autobahn(self) -> None:
        harness = Harness(self)
        for origin in [b"null", b"https://evil.example", b"http://192.0.2.5:8080"]:
            with self.subTest(origin=origin):
                transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4321))
                protocol = harness.factory.buildProtocol(transport.getPeer())
                assert protocol is not None
                protocol.makeConnection(transport)
                protocol.dataReceived(UPGRADE + b"Origin: " + origin + b"\r\n\r\n")
                self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "),
                                transport.value())


class BodyChannel(internals.HeadersFirstChannel):
    """Records what Twisted tells L{internals.HeadersFirstChannel}."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: list[int | None] = []
        self.announced: list[Request] = []

    def allHeadersReceived(self) -> None:
        self.lengths.append(self.length)
        super().allHeadersReceived()

    def body_announced(self, request: Request) -> None:
        self.announced.append(request)


class Page(Resource):
    """Answers C{ok}, and keeps the content each request had when it was rendered."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.contents: list[bytes] = []

    def render_GET(self, request: Request) -> bytes:
        assert request.content is not None
        self.contents.append(request.content.read())
        return b"ok"

    render_POST = render_GET


class HeadersFirstTests(SynchronousTestCase):
    """
    C{HTTPChannel.allHeadersReceived}, C{length}, C{requests} and C{persistent}, with a
    plain Twisted site: a request that announces a body is rendered from its headers, no
    content file is made for its body and none of it is read, and the connection is
    closed after the answer.
    """

    def setUp(self) -> None:
        self.spooled: list[object] = []

        def temporary_file(*args: object, **kwargs: object) -> io.BytesIO:
            self.spooled.append(args)
            return io.BytesIO()

        self.patch(tempfile, "TemporaryFile", temporary_file)
        self.page = Page()
        # Its request timeout on a clock of its own, not on the global reactor.
        site = Site(self.page, reactor=Clock())
        site.protocol = BodyChannel  # type: ignore[assignment]
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4321))
        channel = site.buildProtocol(self.transport.getPeer())
        assert isinstance(channel, BodyChannel)
        self.channel = channel
        channel.makeConnection(self.transport)

    def send(self, head: bytes, body: bytes = b"") -> None:
        self.channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)

    def assert_rendered_at_once(self) -> None:
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK"),
                        self.transport.value())
        self.assertTrue(self.transport.value().endswith(b"ok"), self.transport.value())
        self.assertNotIn(b"100 Continue", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.channel.announced), 1)
        self.assertEqual(self.page.contents, [b""])
        self.assertEqual(self.spooled, [])

    def test_content_length(self) -> None:
        self.send(b"Content-Length: 100000000000\r\nExpect: 100-continue\r\n", b"x" * 1000)
        self.assertEqual(self.channel.lengths, [100000000000])
        self.assert_rendered_at_once()

    def test_chunked(self) -> None:
        self.send(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n")
        self.assertEqual(self.channel.lengths, [None])
        self.assert_rendered_at_once()

    def test_no_body(self) -> None:
        self.send(b"Content-Length: 0\r\n")
        self.assertEqual(self.channel.lengths, [0])
        self.assertEqual(self.channel.announced, [])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertFalse(self.transport.disconnecting)


class QuietLoggerTests(SynchronousTestCase):
    """
    Autobahn's C{log} and C{HTTPChannel._log}: the lines they write about a peer's
    connection pass the peers' warnings budget (C{--max-warnings}).
    """

    def lines_of(self, events: list[LogEvent], namespace: str) -> list[str]:
        return [formatEvent(e) for e in events
                if str(e.get("log_namespace", "")).startswith(namespace)
                and e.get("log_level") in (LogLevel.info, LogLevel.warn)]

    def refused_token(self, max_warnings: int) -> tuple[list[str], Harness]:
        events = capture_log(self)
        harness = Harness(self, limits=Limits(max_warnings=max_warnings),
                          admission=Admission(tokens=(TokenRule("s3cret", ("*",)),)))
        harness.connect_raw(UPGRADE + b"\r\n")
        return self.lines_of(events, "autobahn"), harness

    def test_autobahn_lines_within_the_budget(self) -> None:
        lines, harness = self.refused_token(60)
        # Autobahn writes these through the connection's own logger ...
        self.assertTrue(any("missing or wrong token" in line for line in lines), lines)
        self.assertNotIn("autobahn", harness.registry.log_budget.suppressed_total)

    def test_autobahn_lines_past_the_budget(self) -> None:
        lines, harness = self.refused_token(0)
        # ... so that none is written once the budget is spent; they are counted.
        self.assertEqual(lines, [])
        self.assertGreaterEqual(harness.registry.log_budget.suppressed_total["autobahn"], 1)

    def timed_out(self, max_warnings: int) -> tuple[list[LogEvent], Harness]:
        events = capture_log(self)
        harness = Harness(self, limits=Limits(max_warnings=max_warnings))
        raw, _ = harness.connect_raw(b"GET / HTTP/1.1\r\n")
        harness.advance(6)
        self.assertTrue(raw.lost)
        return [e for e in events if "Timing out" in str(e.get("log_format"))], harness

    def test_twisted_timeout_line_within_the_budget(self) -> None:
        (event,), harness = self.timed_out(60)
        # As Twisted logs it without shellylog: in the channel's class's namespace.
        self.assertEqual(event["log_namespace"], "shellylog.web.RequestChannel")
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertTrue(formatEvent(event).startswith("Timing out client: "))
        self.assertEqual(harness.registry.log_budget.suppressed_total, {})

    def test_twisted_timeout_line_past_the_budget(self) -> None:
        lines, harness = self.timed_out(0)
        self.assertEqual(lines, [])
        self.assertEqual(harness.registry.log_budget.suppressed_total,
                         {"request_timeout": 1, "twisted.web": 1})

    def test_connections_freed_without_the_cycle_collector(self) -> None:
        """The logger holds its connection weakly: no reference cycle through it."""
        gc.disable()
        self.addCleanup(gc.enable)
        connection = ShellyServerProtocol()
        gone = weakref.ref(connection)
        del connection
        self.assertIsNone(gone())


class ProcessPatchesTests(SynchronousTestCase):
    """The module-level C{pformat} and C{hltype}, and C{Timings.__str__}."""

    def setUp(self) -> None:
        self.calls: list[object] = []

        def counting(value: object) -> str:
            self.calls.append(value)
            return pprint.pformat(value)

        # Whatever an earlier test left there, start from a function that counts, and put
        # back what was there after the test.
        self.patch(autobahn_protocol, "pformat", counting)
        self.patch(autobahn_protocol, "hltype", autobahn_global("hltype"))
        self.patch(Timings, "__str__", inspect.unwrap(Timings.__str__))

    def test_autobahn_uses_them(self) -> None:
        source = inspect.getsource(autobahn_protocol)
        self.assertIn("attrs=pformat(configAttrLog)", source)
        self.assertIn("func=hltype(self._connectionMade)", source)
        self.assertIn("return pformat(self._timings)", inspect.getsource(Timings.__str__))

    def test_not_applied_by_a_constructor(self) -> None:
        harness = Harness(self)
        harness.connect_ws("/ws")
        self.assertFalse(hasattr(autobahn_global("pformat"), "__wrapped__"))
        self.assertNotEqual(self.calls, [])  # formatted at once, as Autobahn does

    def test_applied_when_the_service_starts(self) -> None:
        service = ProcessPatches()
        service.startService()
        self.assertTrue(service.running)
        self.assertTrue(hasattr(autobahn_global("pformat"), "__wrapped__"))

    def test_connection_formats_nothing(self) -> None:
        internals.install_process_patches()
        harness = Harness(self)
        for _ in range(3):
            client, _connection = harness.connect_ws("/ws")
            self.assertTrue(client.opened)
        self.assertEqual(self.calls, [])

    def test_same_text_when_read(self) -> None:
        internals.install_process_patches()
        value = [("autoPingInterval", 30, "ShellyServerFactory")] * 5
        lazy = autobahn_global("pformat")(value)
        self.assertEqual(self.calls, [])
        self.assertEqual(str(lazy), pprint.pformat(value))
        self.assertEqual(f"\n{lazy}", "\n" + pprint.pformat(value))
        # As a log observer formats Autobahn's line.
        self.assertEqual(formatEvent({"log_format": "\n{attrs}", "attrs": lazy}),
                         "\n" + pprint.pformat(value))
        self.assertEqual(len(self.calls), 1)  # formatted once, however often read

    def test_once_per_process(self) -> None:
        internals.install_process_patches()
        wrapped, timings = autobahn_global("pformat"), Timings.__str__
        internals.install_process_patches()
        self.assertIs(autobahn_global("pformat"), wrapped)
        self.assertIs(Timings.__str__, timings)

    def test_timings_still_text(self) -> None:
        """Autobahn's C{trackTimings}: C{str()} of its timings must stay a str."""
        internals.install_process_patches()
        timings = Timings()
        timings.track("onOpen")
        text = str(timings)
        self.assertIs(type(text), str)
        self.assertIn("'onOpen'", text)


class OneDoorTests(SynchronousTestCase):
    """No other module of shellylog uses a name the door relies on."""

    PRIVATE = ("current_frame", "message_data", "message_is_binary", "failedByMe",
               "localCloseCode", "sendCloseFrame", "STATE_OPEN", "onAutoPingTimeout",
               "CONFIG_ATTRS", "_networkProducer", "pformat", "hltype", "Timings",
               "onFrameData", "onMessageEnd", "_raiseSynchronously", "_fail_connection",
               "onMessageFrameBegin", "allHeadersReceived", "allowNullOrigin", "allowedOrigins")

    def test_only_the_door(self) -> None:
        folder = os.path.dirname(internals.__file__)
        for path in sorted(glob.glob(os.path.join(folder, "**", "*.py"), recursive=True)):
            if os.path.samefile(path, internals.__file__):
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for name in self.PRIVATE:
                self.assertNotIn(name, text, f"{path} uses {name}")
        self.assertTrue(issubclass(ShellyServerProtocol, ServerProtocol))
