"""
End-to-end tests: the real server on a real local socket, and a real WebSocket client
playing the device.

One test builds the service in-process with L{makeService}, the other runs
C{twistd -n shellylog} as a child process and stops it with SIGTERM. Both check minute-log
rule 6: the minute in progress at a clean stop gets its row.

Rows are per minute and the clock here is the real one, so before the device reports, each
test makes sure that the current minute has a few seconds left: what it sends and the stop
then fall in one minute, and exactly one row is expected.
"""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime, timezone
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.python.runtime import platform
from twisted.web.client import Agent, readBody

from tests.support.processes import (
    TWISTD,
    RealReactorTestCase,
    child_environment,
    client_factory,
    start_service,
)

DEVICE = "shellyplus1pm-aabbccddeeff"
HEADER = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh"
# The row's values: apower from the partial update, the rest from the full status.
ROW_VALUES = f"{DEVICE},0,460.5,230.1,1.9,100.0"

FULL_STATUS: dict[str, Any] = {
    "src": DEVICE,
    "dst": "ws",
    "method": "NotifyFullStatus",
    "params": {
        "ts": 5.01,
        "switch:0": {
            "id": 0,
            "source": "init",
            "output": True,
            "apower": 450,
            "voltage": 230.1,
            "current": 1.9,
            "aenergy": {"total": 100.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1764403200},
            "temperature": {"tC": 41.2, "tF": 106.2},
        },
        "sys": {"mac": "AABBCCDDEEFF", "unixtime": None, "uptime": 4},
        "ws": {"connected": True},
    },
}
PARTIAL_STATUS: dict[str, Any] = {
    "src": DEVICE,
    "dst": "ws",
    "method": "NotifyStatus",
    "params": {"ts": 6.2, "switch:0": {"id": 0, "apower": 460.5}},
}

# The seconds the exchange and the stop may take, at most, in one minute.
MINUTE_ROOM = 5.0


def minute_now() -> int:
    """The current UTC epoch minute."""
    return int(reactor.seconds() // 60)


def minute_start(minute: int) -> str:
    """The row timestamp of C{minute} in UTC (minute-log rule 7)."""
    return datetime.fromtimestamp(minute * 60, timezone.utc).isoformat()


async def room_in_minute(seconds: float = MINUTE_ROOM) -> None:
    """Return once at least C{seconds} are left in the current minute."""
    left = 60 - reactor.seconds() % 60
    if left < seconds:
        await deferLater(reactor, left + 0.05, lambda: None)


class FakeDevice(WebSocketClientProtocol):
    """The device end of the outbound WebSocket."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[bool] = Deferred()
        #: The code and reason the connection closed with.
        self.close: tuple[int | None, str | None] | None = None
        self.received: list[dict[str, Any]] = []
        self._wanted: list[tuple[int, Deferred[list[dict[str, Any]]]]] = []
        self._pongs: list[Deferred[bytes]] = []

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.append(json.loads(payload))
        ready = [(n, d) for n, d in self._wanted if len(self.received) >= n]
        self._wanted = [(n, d) for n, d in self._wanted if len(self.received) < n]
        for n, d in ready:
            d.callback(self.received[:n])

    def onPong(self, payload: bytes) -> None:
        if self._pongs:
            self._pongs.pop(0).callback(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(RuntimeError(f"WebSocket not opened: {code} {reason}"))
        if not self.closed.called:
            self.close = (code, reason)
            self.closed.callback(wasClean)

    def messages(self, count: int) -> Deferred[list[dict[str, Any]]]:
        """The first C{count} messages from the server, once they arrived."""
        d: Deferred[list[dict[str, Any]]] = Deferred()
        if len(self.received) >= count:
            d.callback(self.received[:count])
        else:
            self._wanted.append((count, d))
        return d

    def send(self, frame: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(frame).encode("utf-8"))

    def sync(self) -> Deferred[bytes]:
        """
        Ping the server: it handles a connection's frames in order, so once the pong is
        back, every frame sent before the ping has been processed.
        """
        d: Deferred[bytes] = Deferred()
        self._pongs.append(d)
        self.sendPing(b"sync")
        return d


class EndToEndTests(RealReactorTestCase):
    """A device connects, reports power, and the server stops cleanly."""

    timeout = 30

    async def connect_device(self, port: int) -> FakeDevice:
        """Connect a device to C{/ws} offering C{json-rpc}; return once it is open."""
        factory = client_factory(f"ws://127.0.0.1:{port}/ws", FakeDevice, ["json-rpc"])
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        device = cast(FakeDevice, await endpoint.connect(factory))
        self.addCleanup(self.disconnect, device)
        await device.opened
        self.assertEqual(device.websocket_protocol_in_use, "json-rpc")
        return device

    async def disconnect(self, device: FakeDevice) -> None:
        """After a failure: drop the device's connection, if it is still open."""
        if not device.closed.called:
            cast(ITCPTransport, device.transport).abortConnection()
        await device.closed

    async def report_power(self, device: FakeDevice, port: int) -> None:
        """
        Take the server's bootstrap requests, send a full and a partial status, and wait
        until the server has them.
        """
        bootstrap = await device.messages(2)
        self.assertEqual(
            [m.get("method") for m in bootstrap], ["NotifyStatus", "Shelly.GetStatus"]
        )
        for request in bootstrap:
            self.assertEqual(request["src"], "shellylog")
            self.assertIsInstance(request["id"], int)
        device.send(FULL_STATUS)
        device.send(PARTIAL_STATUS)
        await device.sync()
        # --poll 0: nothing but the bootstrap requests, and notifications get no answer.
        self.assertEqual(device.received, bootstrap)
        code, body = await self.get_health(port)
        self.assertEqual(code, 200)
        lines = body.splitlines()
        self.assertEqual(lines[0], "ok")
        self.assertIn("devices: 1", lines)
        self.assertIn("rows_written: 0", lines)

    async def get_health(self, port: int) -> tuple[int, str]:
        """C{GET /}: the status code and the body."""
        agent = Agent(reactor)
        response = await agent.request(b"GET", f"http://127.0.0.1:{port}/".encode("ascii"))
        body = await readBody(response)
        return response.code, body.decode("utf-8")

    def assertOneRow(self, first_minute: int, last_minute: int) -> None:
        """
        The CSV holds the header and exactly the row of the measured minute: one row whose
        timestamp is the start of a minute between C{first_minute} and C{last_minute}.
        """
        with open(self.csv, encoding="utf-8", newline="") as f:
            text = f.read()
        self.assertTrue(text.endswith("\n"), repr(text))
        lines = text.splitlines()
        self.assertEqual(len(lines), 2, f"expected the header and one row, got {text!r}")
        self.assertEqual(lines[0], HEADER)
        stamp, _, values = lines[1].partition(",")
        self.assertEqual(values, ROW_VALUES)
        self.assertTrue(stamp.endswith("+00:00"), stamp)
        minutes = {minute_start(m): m for m in range(first_minute, last_minute + 1)}
        self.assertIn(stamp, minutes, f"{stamp} is not a minute start of the test's window")

    def test_service_stop_writes_minute_in_progress(self) -> Deferred[None]:
        """
        Built from parsed options and started in-process, the service takes a device on
        C{/ws}, shows it on C{/}, and writes the measured minute when it stops (rule 6).
        """
        return ensureDeferred(self._service_stop())

    async def _service_stop(self) -> None:
        service, port = await start_service(
            self, ["--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0"]
        )

        device = await self.connect_device(port)
        await room_in_minute()
        first = minute_now()
        await self.report_power(device, port)

        await service.stopService()
        last = minute_now()
        self.assertFalse(service.running)
        self.assertOneRow(first, last)

        # The device was told: the server is going away.
        self.assertTrue(await device.closed)
        self.assertEqual(device.close, (1001, "server stopping"))

    def test_twistd_sigterm_writes_minute_in_progress(self) -> Deferred[None]:
        """
        C{twistd -n shellylog} takes a device on C{/ws}, shows it on C{/}, and on SIGTERM
        writes the measured minute before it exits (rule 6).
        """
        return ensureDeferred(self._twistd_sigterm())

    if platform.isWindows():
        test_twistd_sigterm_writes_minute_in_progress.skip = (  # type: ignore[attr-defined]
            "needs POSIX signals"
        )

    async def _twistd_sigterm(self) -> None:
        # The child imports shellylog from where this process did (child_environment).
        # Its working directory is the test's own folder, so nothing depends on where the
        # tests are run from.
        env = child_environment()
        args = [
            *TWISTD,
            "-n",
            "--pidfile=",
            "shellylog",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--csv",
            self.csv,
            "--poll",
            "0",
        ]
        child = TwistdProcess()
        reactor.spawnProcess(child, TWISTD[0], args, env=env, path=self.folder)
        self.addCleanup(child.kill)

        port = await child.listening
        device = await self.connect_device(port)
        await room_in_minute()
        first = minute_now()
        await self.report_power(device, port)

        await child.terminate()
        last = minute_now()
        self.assertOneRow(first, last)
        # The server told the device it was going away before it exited.
        self.assertTrue(await device.closed)
        self.assertEqual(device.close, (1001, "server stopping"))


class TwistdProcess(ProcessProtocol):
    """A twistd child: its output, the port it listens on, and its end."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.listening: Deferred[int] = Deferred()
        # Fired with the reason (not errbacked): ProcessDone or ProcessTerminated.
        self.ended: Deferred[BaseException] = Deferred()

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.listening.called:
            # Up to the line's end: output may arrive with a number cut in two.
            found = re.search(rb"Site starting on (\d+)\r?\n", self.output)
            if found:
                self.listening.callback(int(found.group(1)))

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(
                RuntimeError(f"twistd ended before it listened:\n{self.text()}")
            )
        value = reason.value
        assert value is not None
        self.ended.callback(value)

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
