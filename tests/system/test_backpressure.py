"""
Backpressure over a real socket: a peer that sends pings and never reads the pongs costs
the server a bounded buffer, not memory growing with every ping.
"""

from __future__ import annotations

import base64
import os
import socket

import txaio
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from shellylog.protocol import ShellyServerFactory, ShellyServerProtocol
from shellylog.registry import DeviceRegistry
from shellylog.web import HealthResource, build_site
from tests.support.processes import listen_local
from tests.support.wire import FakeSink

txaio.use_twisted()

#: A masked ping with 125 bytes of payload; the server answers each with a 127-byte pong.
PING = bytes([0x89, 0x80 | 125]) + b"\x01\x02\x03\x04" + bytes(
    b ^ m for b, m in zip(b"x" * 125, b"\x01\x02\x03\x04" * 32, strict=False))
#: Pings the peer sends: about 4 MB of pongs, far beyond the kernel's buffers below.
PINGS = 32_000


def unread(transport: object) -> int:
    """Bytes a Twisted TCP transport holds because its peer has not read them."""
    data_buffer: bytes = transport.dataBuffer  # type: ignore[attr-defined]
    offset: int = transport.offset  # type: ignore[attr-defined]
    temp: int = transport._tempDataLen  # type: ignore[attr-defined]
    return len(data_buffer) - offset + temp


class Pinger(Protocol):
    """Upgrades, then sends PINGS pings and never reads anything again."""

    upgraded = False

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.getHandle().setsockopt(  # type: ignore[attr-defined]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.upgraded and b"\r\n\r\n" in data:
            assert data.startswith(b"HTTP/1.1 101 "), data
            self.upgraded = True
            self.transport.write(PING * PINGS)
            # And from now on it reads nothing.
            self.transport.pauseProducing()  # type: ignore[attr-defined]


class RealSocketTests(TestCase):
    timeout = 30

    def test_pinger_never_reading_stays_bounded(self) -> Deferred[None]:
        # Autobahn's own timers (pings, close handshakes) on a clock that never runs: they
        # play no part here, and would outlive the test.
        self.patch(txaio.config, "loop", task.Clock())  # type: ignore[attr-defined]
        registry = DeviceRegistry(sink=FakeSink(), clock=reactor)
        factory = ShellyServerFactory(registry)
        site = build_site(factory, registry, HealthResource(lambda: 0, lambda: 0), reactor)
        port, number = listen_local(site)
        self.addCleanup(port.stopListening)
        pingers: list[Pinger] = []

        class Factory(ClientFactory):
            def buildProtocol(self, addr: object) -> Pinger:
                pinger = Pinger()
                pingers.append(pinger)
                return pinger

        reactor.connectTCP("127.0.0.1", number, Factory())

        def disconnect() -> Deferred[list[None]]:
            closed = registry.close_all(1000, "")
            for connection in list(registry.open_connections):
                assert isinstance(connection, ShellyServerProtocol)
                connection.dropConnection(abort=True)
            return gatherResults([closed, *(p.lost for p in pingers)])

        self.addCleanup(disconnect)
        samples: list[int] = []
        done: Deferred[None] = Deferred()
        stable = [0]

        def sample() -> None:
            servers = [c for c in registry.open_connections
                       if isinstance(c, ShellyServerProtocol)]
            if not servers:
                return
            transport = servers[0].transport
            if samples == []:
                # The server's own kernel buffer small too, as on a busy box.
                transport.getHandle().setsockopt(  # type: ignore[union-attr]
                    socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            samples.append(unread(transport))
            if samples[-1] > 1024 * 1024:
                done.errback(AssertionError(f"{samples[-1]} bytes buffered for the peer"))
                return
            paused = bool(transport.producerPaused)  # type: ignore[union-attr]
            stable[0] = stable[0] + 1 if paused else 0
            if stable[0] >= 25:
                done.callback(None)

        loop = task.LoopingCall(sample)
        loop.start(0.02)
        self.addCleanup(loop.stop)

        def check(_: None) -> None:
            # Bounded by the transport's buffer (64 KiB) and the pongs of one read.
            self.assertLessEqual(max(samples), 200 * 1024, max(samples))

        return done.addCallback(check)
