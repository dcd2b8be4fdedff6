"""
Running shellylog for real: in child processes (the environment that lets a child import
the same shellylog as the tests, the command line that starts twistd with it, and
L{TwistdProcess}, which watches one), or as a service started in this process on a real
port; and listening on a real port of this process's own.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import sysconfig
from typing import Any, cast

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import shellylog
from shellylog.protocol import ShellyServerFactory
from shellylog.tap import Options, makeService
from shellylog.web import DeviceSocketResource
from tests.support.tools import faketime_library

# twistd's own entry point, run by this interpreter: no script on PATH needed.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def child_environment() -> dict[str, str]:
    """
    This process's environment, for a child that imports shellylog from where this process
    did: the installed package, or else a source tree, put first on its path.
    """
    env = dict(os.environ)
    source = os.path.realpath(os.path.dirname(os.path.dirname(shellylog.__file__)))
    installed = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
    if source not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in [source, env.get("PYTHONPATH", "")] if p)
    return env


async def start_service(case: TestCase, args: list[str]) -> tuple[MultiService, int]:
    """
    Build the service from C{twistd shellylog ARGS} (with a C{--port} of port 0), start it
    in this process, and return it with the port it listens on. It is stopped at cleanup.
    """
    options = Options()
    options.parseOptions(args)
    service = makeService(options.config)
    assert isinstance(service, MultiService)
    (listener,) = [s for s in service if isinstance(s, StreamServerEndpointService)]
    listening: Deferred[int] = Deferred()

    def bound(port: IListeningPort) -> IListeningPort:
        listening.callback(cast(IPv4Address, port.getHost()).port)
        return port  # stopService closes the port it gets from this Deferred

    service.startService()

    async def stop() -> None:
        if service.running:
            await service.stopService()

    case.addCleanup(stop)
    assert listener._waitingForPort is not None
    listener._waitingForPort.addCallback(bound)
    return service, await listening


def listen_local(factory: Factory[Any]) -> tuple[IListeningPort, int]:
    """
    Listen with C{factory} on a free port of 127.0.0.1, on the real reactor: the listening
    port and its number. (C{listenTCP} is typed for a C{ServerFactory} of protocols that
    know their factory, which no L{Site} is: hence the cast.)
    """
    port = reactor.listenTCP(0, cast(ServerFactory, factory), interface="127.0.0.1")
    return port, cast(IPv4Address, port.getHost()).port

def device_factory(service: MultiService) -> ShellyServerFactory:
    """The devices' WebSocket factory of a service built by C{makeService}."""
    (listener,) = [s for s in service if isinstance(s, StreamServerEndpointService)]
    resource = listener.factory.resource.getStaticEntity(b"ws")
    assert isinstance(resource, DeviceSocketResource), resource
    assert isinstance(resource.factory, ShellyServerFactory), resource.factory
    return resource.factory


def client_factory(
    url: str, protocol: type[WebSocketClientProtocol], protocols: list[str] | None = None
) -> WebSocketClientFactory:
    """
    An Autobahn client factory for C{url} on the real reactor. Its close timers are long:
    Autobahn's fire at the whole second after now + delay, so its default of 1 s can fire
    at once, and a clean close on a busy machine would count as dropped (1006).
    """
    factory = WebSocketClientFactory(url, protocols=protocols or [], reactor=reactor)
    factory.protocol = protocol
    factory.setProtocolOptions(closeHandshakeTimeout=10, serverConnectionDropTimeout=10)
    return factory


class RealReactorTestCase(TestCase):
    """
    A test on the real reactor and real sockets: Autobahn's timers run on the reactor
    (other tests run them on a Clock), and C{self.folder} and C{self.csv} are fresh.
    """

    def setUp(self) -> None:
        txaio.use_twisted()
        self.patch(txaio.config, "loop", reactor)  # type: ignore[attr-defined]
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.csv = os.path.join(self.folder, "power.csv")


class OutputProcess(ProcessProtocol):
    """A child process: everything it printed (both streams), and its end."""

    def __init__(self) -> None:
        self.output = bytearray()
        # Fired with the reason (not errbacked): ProcessDone or ProcessTerminated.
        self.ended: Deferred[BaseException] = Deferred()

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        assert value is not None
        self.ended.callback(value)


class TwistdProcess(OutputProcess):
    """A twistd child: its output, the port it listens on, and its end."""

    def __init__(self) -> None:
        super().__init__()
        self.listening: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        if not self.listening.called:
            # Up to the line's end: output may arrive with a number cut in two.
            # "DeviceSite (PROXY) starting on" behind a haproxy: port.
            found = re.search(rb"Site (?:\(PROXY\) )?starting on (\d+)\r?\n", self.output)
            if found:
                self.listening.callback(int(found.group(1)))

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(
                RuntimeError(f"twistd ended before it listened:\n{self.text()}")
            )
        super().processEnded(reason)

    async def terminate(self) -> None:
        """SIGTERM, as systemd stops a service; the child must end cleanly."""
        assert self.transport is not None
        self.transport.signalProcess("TERM")
        reason = await self.ended
        # twistd exits 0, or (newer Twisted) ends by the signal it stopped on.
        if isinstance(reason, ProcessTerminated):
            if reason.signal != signal.SIGTERM:
                raise AssertionError(f"ended by {reason}:\n{self.text()}")
        elif not isinstance(reason, ProcessDone):
            raise AssertionError(f"ended by {reason}:\n{self.text()}")

    async def kill(self) -> None:
        """After a failure: end the child, if it still runs."""
        if not self.ended.called:
            assert self.transport is not None
            self.transport.signalProcess("KILL")
        await self.ended


def spawn_twistd(
    case: TestCase, folder: str, args: list[str], faketime: str | None = None
) -> TwistdProcess:
    """Start C{twistd -n shellylog ARGS} in C{folder}; under libfaketime if asked."""
    env = child_environment()
    if faketime is not None:
        env["LD_PRELOAD"] = faketime_library()
        env["FAKETIME"] = faketime
    argv = [*TWISTD, "-n", "--pidfile=", "shellylog", "--port", "tcp:0:interface=127.0.0.1", *args]
    child = TwistdProcess()
    reactor.spawnProcess(child, sys.executable, argv, env=env, path=folder)
    case.addCleanup(child.kill)
    return child


async def wait_for(predicate: Any, seconds: float, what: str) -> None:
    """Poll C{predicate} every 0.1 s of real time until true; fail after C{seconds}."""
    for _ in range(int(seconds * 10)):
        if predicate():
            return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


def csv_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
