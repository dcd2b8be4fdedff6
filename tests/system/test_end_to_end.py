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

from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.python.runtime import platform
from twisted.web.client import Agent, readBody

from tests.support.devices import (
    FULL_STATUS,
    HEADER,
    PARTIAL_STATUS,
    ROW_VALUES,
    FakeDevice,
)
from tests.support.processes import (
    TWISTD,
    RealReactorTestCase,
    TwistdProcess,
    child_environment,
    client_factory,
    start_service,
)
from tests.support.realtime import minute_now, minute_start, room_in_minute


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


