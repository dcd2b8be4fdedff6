"""
Tests for L{shellylog.web}: the one site, its health page and where the WebSocket lives.

Everything goes through the real site built by L{build_site}: HTTP parsing by Twisted Web,
the upgrade by Autobahn, over an in-memory transport.
"""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.trial.unittest import SynchronousTestCase

from shellylog.protocol import ShellyServerProtocol
from tests.support.frames import DEVICE
from tests.support.wire import Harness, RawClient, raw_get, raw_upgrade


class HandshakePathTests(SynchronousTestCase):
    """The WebSocket is at exactly C{/ws} and C{/ws/}."""

    def assert_open(self, path: str) -> None:
        harness = Harness(self)
        client, connection = harness.connect_ws(path)
        self.assertTrue(client.opened)
        self.assertIsNone(client.closed)
        self.assertIsNotNone(client.response)
        self.assertIsInstance(connection.server, ShellyServerProtocol)
        self.assertEqual(connection.server.state, WebSocketProtocol.STATE_OPEN)
        # The open connection is ours: it sent its two bootstrap requests.
        self.assertEqual(len(client.messages), 2)

    def test_ws(self) -> None:
        self.assert_open("/ws")

    def test_ws_slash(self) -> None:
        self.assert_open("/ws/")

    def test_ws_with_query(self) -> None:
        """A secret in the query string does not move the path."""
        self.assert_open("/ws?token=s3cret")

    def assert_not_found(self, path: str) -> None:
        harness = Harness(self)
        # A real WebSocket client: refused, never opened, no server protocol.
        client, connection = harness.connect_ws(path)
        self.assertFalse(client.opened)
        self.assertIsNotNone(client.closed)
        assert client.closed is not None
        was_clean, _code, reason = client.closed
        self.assertFalse(was_clean)
        self.assertIn("404", reason or "")
        self.assertFalse(connection.upgraded)
        # The same as raw bytes: a plain 404, no 101, no upgrade headers.
        raw, raw_connection = harness.connect_raw(raw_upgrade(path.encode("ascii")))
        self.assertEqual(raw.status_line, b"HTTP/1.1 404 Not Found")
        self.assertNotIn(b"upgrade", raw.headers)
        self.assertNotIn(b"sec-websocket-accept", raw.headers)
        self.assertFalse(raw_connection.upgraded)
        self.assertEqual(harness.registry.devices, {})

    def test_ws_other(self) -> None:
        self.assert_not_found("/ws/other")

    def test_ws_slash_slash(self) -> None:
        self.assert_not_found("/ws//")

    def test_nope(self) -> None:
        self.assert_not_found("/nope")

    def test_wsx(self) -> None:
        self.assert_not_found("/wsx")


class SubprotocolTests(SynchronousTestCase):
    """C{json-rpc} is accepted when offered; offering nothing is fine too."""

    def test_json_rpc_offered(self) -> None:
        harness = Harness(self)
        client, connection = harness.connect_ws("/ws", protocols=["json-rpc"])
        self.assertTrue(client.opened)
        assert client.response is not None
        self.assertEqual(client.response.protocol, "json-rpc")
        self.assertEqual(connection.server.websocket_protocol_in_use, "json-rpc")

    def test_json_rpc_among_others(self) -> None:
        harness = Harness(self)
        client, _ = harness.connect_ws("/ws", protocols=["wamp.2.json", "json-rpc"])
        self.assertTrue(client.opened)
        assert client.response is not None
        self.assertEqual(client.response.protocol, "json-rpc")

    def test_none_offered(self) -> None:
        harness = Harness(self)
        client, connection = harness.connect_ws("/ws", protocols=[])
        self.assertTrue(client.opened)
        assert client.response is not None
        self.assertIsNone(client.response.protocol)
        self.assertIsNone(connection.server.websocket_protocol_in_use)
        self.assertEqual(len(client.json_messages()), 2)

    def test_raw_handshake_without_protocol(self) -> None:
        """The 101 to a device that offers no subprotocol names none."""
        harness = Harness(self)
        raw, connection = harness.connect_raw(raw_upgrade(b"/ws"))
        self.assertEqual(raw.status_line, b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(raw.headers[b"upgrade"].lower(), b"websocket")
        # RFC 6455's example key and its accept value.
        self.assertEqual(raw.headers[b"sec-websocket-accept"], b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertNotIn(b"sec-websocket-protocol", raw.headers)
        self.assertTrue(connection.upgraded)


class HealthTests(SynchronousTestCase):
    """C{GET /}: ok, devices, rows written; nothing else is allowed at C{/}."""

    def get_health(self, harness: Harness) -> RawClient:
        raw, _ = harness.connect_raw(raw_get(b"/"))
        return raw

    def test_idle(self) -> None:
        harness = Harness(self, rows_written=0)
        raw = self.get_health(harness)
        self.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        self.assertEqual(raw.headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(raw.headers[b"cache-control"], b"no-store")
        self.assertEqual(raw.body, b"ok\ndevices: 0\nrows_written: 0\n")

    def test_counts(self) -> None:
        harness = Harness(self, rows_written=1234)
        client, connection = harness.connect_ws("/ws")
        # Connected but not yet identified: not a device yet.
        self.assertEqual(self.get_health(harness).body, b"ok\ndevices: 0\nrows_written: 1234\n")
        client.send_json({"src": DEVICE, "dst": "ws", "method": "NotifyEvent", "params": {}})
        connection.flush()
        other, other_connection = harness.connect_ws("/ws/")
        other.send_json(
            {"src": "shellyplus1pm-001122334455", "method": "NotifyEvent", "params": {}}
        )
        other_connection.flush()
        harness.rows_written = 1240
        self.assertEqual(self.get_health(harness).body, b"ok\ndevices: 2\nrows_written: 1240\n")
        client.sendClose(code=1000)
        connection.flush()
        self.assertEqual(self.get_health(harness).body, b"ok\ndevices: 1\nrows_written: 1240\n")

    def test_post_root(self) -> None:
        harness = Harness(self)
        raw, _ = harness.connect_raw(raw_get(b"/", b"POST", b"Content-Length: 2\r\n") + b"{}")
        self.assertEqual(raw.status_line, b"HTTP/1.1 405 Method Not Allowed")
        allowed = {m.strip() for m in raw.headers[b"allow"].split(b",")}
        self.assertIn(b"GET", allowed)
        self.assertNotIn(b"POST", allowed)
        self.assertNotIn(b"ok\n", raw.body)

    def test_unknown_path_is_404(self) -> None:
        harness = Harness(self)
        raw, _ = harness.connect_raw(raw_get(b"/nope"))
        self.assertEqual(raw.status_line, b"HTTP/1.1 404 Not Found")
        self.assertNotIn(b"rows_written", raw.body)

    def test_no_tracebacks(self) -> None:
        harness = Harness(self)
        self.assertFalse(harness.site.displayTracebacks)
