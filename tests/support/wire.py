"""
The real site over in-memory transports: a recording sink, a recording WebSocket client, a
raw TCP client and the raw requests it sends, and a way to connect a client to the site
(HTTP upgrade included).

Nothing here touches the network or the real reactor: bytes move with
L{twisted.test.iosim.IOPump}; every timer (ours, Twisted Web's and Autobahn's, which runs
on C{txaio.config.loop}) runs on one L{Clock}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from shellylog.admission import Admission
from shellylog.config import Limits
from shellylog.protocol import ShellyServerFactory, ShellyServerProtocol
from shellylog.registry import DeviceRegistry
from shellylog.status import ChannelValues
from shellylog.web import HealthResource, build_site

txaio.use_twisted()


def step_clock(clock: Clock, seconds: float, step: float, flush: Callable[[], None]) -> None:
    """
    Let C{seconds} pass on C{clock} in C{step}s, calling C{flush} before and after each:
    one big jump would fire a ping and its timeout in the same advance.
    """
    flush()
    passed = 0.0
    while passed < seconds:
        delta = min(step, seconds - passed)
        clock.advance(delta)
        passed += delta
        flush()


def raw_get(path: bytes, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    """A plain HTTP request for C{path}, as raw bytes."""
    return (
        method + b" " + path + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1:5000\r\n"
        b"Connection: close\r\n" + extra + b"\r\n"
    )


def raw_upgrade(path: bytes) -> bytes:
    """A WebSocket opening handshake as a device sends it."""
    return (
        b"GET " + path + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1:5000\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


@attrs.define
class FakeSink:
    """Records what the protocol hands the tracker, in order."""

    calls: list[tuple[str, str, dict[int, ChannelValues] | None]] = attrs.field(factory=list)

    def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
        self.calls.append(("readings", device_id, dict(values)))

    def disconnected(self, device_id: str) -> None:
        self.calls.append(("disconnected", device_id, None))

    def forget(self, device_id: str) -> bool:
        self.calls.append(("forget", device_id, None))
        return True

    @property
    def readings_calls(self) -> list[tuple[str, dict[int, ChannelValues]]]:
        return [(d, v) for kind, d, v in self.calls if kind == "readings" and v is not None]

    @property
    def disconnected_calls(self) -> list[str]:
        return [d for kind, d, _ in self.calls if kind == "disconnected"]


class RecordingClient(WebSocketClientProtocol):
    """A WebSocket client that remembers everything that happens to it."""

    def __init__(self) -> None:
        super().__init__()
        self.response: ConnectionResponse | None = None
        self.opened = False
        self.messages: list[tuple[bytes, bool]] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onConnect(self, response: ConnectionResponse) -> None:
        self.response = response

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def json_messages(self) -> list[Any]:
        """Every text message received so far, parsed."""
        return [json.loads(payload) for payload, binary in self.messages if not binary]

    def send_json(self, obj: object) -> None:
        self.sendMessage(json.dumps(obj).encode("utf-8"))

    def send_text(self, text: str | bytes) -> None:
        self.sendMessage(text.encode("utf-8") if isinstance(text, str) else text)


class RawClient(Protocol):
    """A plain TCP client: sends nothing by itself, keeps every byte it gets."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True

    @property
    def status_line(self) -> bytes:
        return self.received.split(b"\r\n", 1)[0]

    @property
    def headers(self) -> dict[bytes, bytes]:
        head = self.received.split(b"\r\n\r\n", 1)[0]
        out: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            out[name.strip().lower()] = value.strip()
        return out

    @property
    def body(self) -> bytes:
        return self.received.split(b"\r\n\r\n", 1)[1]


@attrs.define
class Connection:
    """One client connected to the site, and the pump that moves its bytes."""

    client: Any
    client_transport: FakeTransport
    server_transport: FakeTransport
    pump: IOPump
    clock: Clock

    @property
    def server(self) -> ShellyServerProtocol:
        """The server's WebSocket protocol (it took the transport over from HTTP)."""
        protocol = self.server_transport.protocol
        assert isinstance(protocol, ShellyServerProtocol), protocol
        return protocol

    @property
    def upgraded(self) -> bool:
        return isinstance(self.server_transport.protocol, ShellyServerProtocol)

    def flush(self) -> None:
        self.pump.flush()

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Let C{seconds} pass in C{step}s, moving all bytes after each step."""
        step_clock(self.clock, seconds, step, self.flush)


class BufferedTransport(FakeTransport):
    """
    The server's side of a connection as a real TCP transport (Twisted's
    C{abstract.FileDescriptor}) treats a streaming producer: what the peer has not read
    waits in a buffer, and once it holds more than C{bufferSize} bytes the producer is
    paused, and resumed when the buffer is empty again. While the transport is paused
    (C{pauseProducing}), what the peer sends waits, unread.

    @ivar peer_reads: whether the peer reads what is sent to it.
    """

    bufferSize = 2**16
    peer_reads = True
    reading = True
    producer_paused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unread: list[bytes] = []

    @property
    def buffered(self) -> int:
        """Bytes sent that the peer has not read."""
        return sum(len(chunk) for chunk in self.stream)

    def write(self, data: bytes) -> None:
        super().write(data)
        if (self.producer is not None and self.streamingProducer
                and not self.producer_paused and self.buffered > self.bufferSize):
            self.producer_paused = True
            self.producer.pauseProducing()

    def getOutBuffer(self) -> bytes | None:
        if not self.peer_reads:
            return None
        data: bytes | None = super().getOutBuffer()
        if self.producer_paused and self.producer is not None:
            self.producer_paused = False
            self.producer.resumeProducing()
        return data

    def bufferReceived(self, buf: Any) -> None:
        if not self.reading:
            self.unread.append(buf)
        else:
            super().bufferReceived(buf)

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True
        unread, self.unread = self.unread, []
        for buf in unread:
            self.bufferReceived(buf)


class Harness:
    """The real site with a L{ShellyServerFactory}, all on one L{Clock}."""

    def __init__(
        self,
        case: SynchronousTestCase,
        *,
        poll_interval: float = 60.0,
        channels: tuple[int, ...] = (0, 1, 2, 3),
        rows_written: int = 0,
        limits: Limits | None = None,
        admission: Admission | None = None,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        self.clock = Clock()
        # Autobahn's handshake, ping and close timers.
        case.patch(txaio.config, "loop", self.clock)  # type: ignore[attr-defined]
        self.sink = FakeSink()
        self.rows_written = rows_written
        kept = limits or Limits()
        self.registry = DeviceRegistry(sink=self.sink, clock=self.clock,
                                       max_devices=kept.max_devices,
                                       max_warnings=kept.max_warnings)
        self.factory = ShellyServerFactory(
            self.registry,
            channels=channels,
            poll_interval=poll_interval,
            limits=kept,
            admission=admission or Admission(),
        )
        self.health = HealthResource(
            devices=lambda: len(self.factory.registry.devices),
            rows_written=lambda: self.rows_written,
        )
        # Twisted Web's own timeouts run on the clock too.
        self.site: Site = build_site(self.factory, self.registry, self.health, self.clock,
                                     allowed_origins=allowed_origins)
        self._port = 40000
        #: The address the next clients connect from.
        self.client_host = "192.0.2.7"
        #: The class of the server's side of the next connections.
        self.server_transport_class: type[FakeTransport] = FakeTransport
        #: Every connection made, in order.
        self.connections: list[Connection] = []

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Let C{seconds} pass in C{step}s, moving the bytes of every connection after each."""
        step_clock(self.clock, seconds, step, self.flush)

    def flush(self) -> None:
        """Move the bytes of every connection until all are quiet."""
        for connection in self.connections:
            connection.flush()

    def _connect(self, client: Protocol, client_transport_protocol: Protocol) -> Connection:
        self._port += 1
        server_addr = IPv4Address("TCP", "127.0.0.1", 5000)
        client_addr = IPv4Address("TCP", self.client_host, self._port)
        server = self.site.buildProtocol(client_addr)
        assert server is not None
        server_transport = self.server_transport_class(
            server, isServer=True, hostAddress=server_addr, peerAddress=client_addr
        )
        client_transport = FakeTransport(
            client_transport_protocol,
            isServer=False,
            hostAddress=client_addr,
            peerAddress=server_addr,
        )
        server.makeConnection(server_transport)
        client.makeConnection(client_transport)
        pump = IOPump(client, server, client_transport, server_transport, False, clock=self.clock)
        connection = Connection(client, client_transport, server_transport, pump, self.clock)
        self.connections.append(connection)
        connection.flush()
        return connection

    def connect_ws(
        self, path: str = "/ws", protocols: list[str] | None = None,
        offers: list[Any] | None = None,
    ) -> tuple[RecordingClient, Connection]:
        """
        Connect a real Autobahn client to C{path}, offering C{offers} of compression;
        pump until quiet.
        """
        client_factory = WebSocketClientFactory(
            url=f"ws://127.0.0.1:5000{path}", protocols=protocols or [], reactor=self.clock
        )
        if offers:
            client_factory.setProtocolOptions(perMessageCompressionOffers=offers)
        client_factory.protocol = RecordingClient
        client = client_factory.buildProtocol(None)
        assert isinstance(client, RecordingClient)
        return client, self._connect(client, client)

    def connect_raw(self, request: bytes) -> tuple[RawClient, Connection]:
        """Send C{request} as raw bytes; pump until quiet."""
        client = RawClient()
        connection = self._connect(client, client)
        connection.client_transport.write(request)
        connection.flush()
        return client, connection




def device_connection(registry: DeviceRegistry, device_id: str) -> ShellyServerProtocol:
    """The WebSocket connection that speaks for C{device_id} (the registry types it loosely)."""
    connection = registry.devices[device_id]
    assert isinstance(connection, ShellyServerProtocol), connection
    return connection
