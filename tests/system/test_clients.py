"""
Third-party WebSocket clients, in their default configurations, against the real server.

Autobahn's client, which every other test uses, offers no compression; the Python
C{websockets} library and Node's C{ws} package offer C{permessage-deflate} by default, and
an offer once failed the handshake. Here each of them plays a device (the scripts in
C{tests/system/clients}, with no option that changes the library's defaults): it connects to the
service started in this process, answers the bootstrap requests with a fixture's full
status, sends one C{NotifyStatus}, and says on its first line of output what it offered,
what was negotiated and which requests it got. The service is then stopped (a clean stop
writes the minute in progress, minute-log rule 6), it closes the device's connection, and
the test checks the CSV rows, the handshake (no extension accepted), the requests, the
server's log and the client's exit.

Rows are per minute and the clock is the real one, so the client is started only when the
current minute has L{EXCHANGE_ROOM} seconds left: the whole exchange and the stop fall in
that minute, and exactly one row is expected.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from shellylog.csvlog import HEADER
from tests.support.certificates import make_certificate
from tests.support.client_plan import (
    DEFLATE,
    DEVICE,
    ROW_VALUES,
    device_plan,
)
from tests.support.logs import assert_clean_session, capture_log
from tests.support.processes import RealReactorTestCase, device_factory, start_service
from tests.support.realtime import minute_now, minute_start, room_in_minute
from tests.support.tools import node_ws
from tests.support.wire import device_connection

CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")


#: Seconds the client's start, its exchange and the stop may take, at most, in one minute.
EXCHANGE_ROOM = 10.0


class ClientProcess(ProcessProtocol):
    """
    A client script: its output lines, each one JSON document, and its end. C{first_line}
    fires with the first document, or fails if the client ends before it printed one.
    """

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.first_line: Deferred[dict[str, Any]] = Deferred()
        # Fired with the reason (not errbacked): ProcessDone or ProcessTerminated.
        self.ended: Deferred[BaseException] = Deferred()

    def output(self) -> str:
        """Everything the client wrote, for a failure message."""
        out = self.stdout.decode("utf-8", errors="replace")
        err = self.stderr.decode("utf-8", errors="replace")
        return f"stdout:\n{out}\nstderr:\n{err}"

    def lines(self) -> list[dict[str, Any]]:
        """The complete lines written so far, parsed."""
        return [json.loads(line) for line in bytes(self.stdout).splitlines(keepends=True)
                if line.endswith(b"\n")]

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        if not self.first_line.called and b"\n" in self.stdout:
            try:
                first = self.lines()[0]
            except ValueError as e:
                self.first_line.errback(AssertionError(f"not JSON: {e}\n{self.output()}"))
                return
            if "requests" not in first:
                # The client's closing line: the connection ended before the exchange did.
                self.first_line.errback(
                    AssertionError(f"the client closed before its exchange:\n{self.output()}")
                )
            else:
                self.first_line.callback(first)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        if not self.first_line.called:
            self.first_line.errback(
                AssertionError(f"the client ended before its first line:\n{self.output()}")
            )
        value = reason.value
        assert value is not None
        self.ended.callback(value)

    async def kill(self) -> None:
        """After a failure: end the client, if it still runs."""
        if not self.ended.called:
            assert self.transport is not None
            try:
                self.transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass  # exited; its pipes are still being closed
        await self.ended


class ClientTests(RealReactorTestCase):
    """
    Each third-party client, in its default configuration (compression offered), is
    answered without an extension and gets its device's row.
    """

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = capture_log(self)

    def test_websockets_ws(self) -> Deferred[None]:
        """Python's C{websockets}, defaults, on C{ws://}."""
        return ensureDeferred(self.python_device(tls=False, subprotocol=None))

    def test_websockets_wss(self) -> Deferred[None]:
        """
        Python's C{websockets}, defaults, on C{wss://} to an C{ssl:} port with a
        self-signed certificate, which the client trusts as a CA file.
        """
        return ensureDeferred(self.python_device(tls=True, subprotocol=None))

    def test_websockets_json_rpc_subprotocol(self) -> Deferred[None]:
        """Python's C{websockets}, defaults but for C{json-rpc} offered: it is selected."""
        return ensureDeferred(self.python_device(tls=False, subprotocol="json-rpc"))

    def test_node_ws(self) -> Deferred[None]:
        """Node's C{ws}, defaults, on C{ws://}."""
        return ensureDeferred(self.node_device(subprotocol=None))

    def test_node_ws_json_rpc_subprotocol(self) -> Deferred[None]:
        """Node's C{ws}, defaults but for C{json-rpc} offered: it is selected."""
        return ensureDeferred(self.node_device(subprotocol="json-rpc"))

    async def python_device(self, tls: bool, subprotocol: str | None) -> None:
        """Run C{clients/websockets_device.py} through the whole exchange and check it."""
        port = "tcp:0:interface=127.0.0.1"
        client_args: list[str] = []
        if tls:
            certificate = make_certificate(self.folder)
            port = (f"ssl:0:interface=127.0.0.1:privateKey={certificate.key_path}"
                    f":certKey={certificate.cert_path}")
            client_args = ["--cafile", certificate.cert_path]
        if subprotocol is not None:
            client_args += ["--subprotocol", subprotocol]
        script = os.path.join(CLIENTS, "websockets_device.py")
        seen = await self.exchange(
            scheme="wss" if tls else "ws", host="localhost" if tls else "127.0.0.1",
            port_description=port, executable=sys.executable,
            argv=[sys.executable, script], extra=client_args, env=dict(os.environ),
        )
        # websockets: the response's header, and the extensions in use.
        self.assertIsNone(seen["extensions_header"])
        self.assertEqual(seen["extensions"], [])
        self.assertEqual(seen["subprotocol"], subprotocol)

    async def node_device(self, subprotocol: str | None) -> None:
        """Run C{clients/ws_device.js} through the whole exchange and check it."""
        node, env = node_ws()
        extra = [] if subprotocol is None else ["--subprotocol", subprotocol]
        seen = await self.exchange(
            scheme="ws", host="127.0.0.1", port_description="tcp:0:interface=127.0.0.1",
            executable=node, argv=[node, os.path.join(CLIENTS, "ws_device.js")], extra=extra,
            env=env,
        )
        # ws: the response's header, and ws.extensions ("" for none).
        self.assertIsNone(seen["extensions_header"])
        self.assertEqual(seen["extensions"], "")
        self.assertEqual(seen["subprotocol"], subprotocol or "")

    async def exchange(self, scheme: str, host: str, port_description: str, executable: str,
                       argv: list[str], extra: list[str], env: dict[str, str]
                       ) -> dict[str, Any]:
        """
        Start the service on C{port_description}, let the client C{argv} play the device on
        C{scheme://host:PORT/ws}, stop the service, close the device's connection from the
        server's end, and check what all clients share: the client's offer, its requests,
        its close and exit, the server's end of the handshake, the CSV rows and the log.
        Returns what the client printed on its first line.
        """
        plan_path = os.path.join(self.folder, "plan.json")
        with open(plan_path, "w", encoding="utf-8") as f:
            json.dump(device_plan(), f)
        service, port = await start_service(
            self, ["--port", port_description, "--csv", self.csv, "--poll", "0"]
        )
        factory = device_factory(service)

        await room_in_minute(EXCHANGE_ROOM)
        first = minute_now()
        client = ClientProcess()
        url = f"{scheme}://{host}:{port}/ws"
        reactor.spawnProcess(client, executable, [*argv, url, plan_path, *extra], env=env,
                             path=self.folder)
        self.addCleanup(client.kill)
        seen = await client.first_line

        self.assertEqual(list(factory.registry.devices), [DEVICE])
        server = device_connection(factory.registry, DEVICE)
        self.assertEqual(server.websocket_extensions_in_use, [])
        # No --allow-origin: the library, as a device, sent no Origin (a page's would be 403).
        self.assertEqual(factory.registry.rejected, {})
        # The clean stop closes the device's connection (1001, going away) and writes the
        # minute in progress.
        await service.stopService()
        last = minute_now()
        self.assertEqual(last, first, f"the exchange took more than {EXCHANGE_ROOM} s")
        reason = await client.ended
        if not isinstance(reason, ProcessDone):
            code = reason.exitCode if isinstance(reason, ProcessTerminated) else None
            self.fail(f"the client ended with {reason} (exit {code}):\n{client.output()}")

        with open(self.csv, encoding="utf-8", newline="") as f:
            self.assertEqual(f.read().splitlines(),
                             [HEADER, f"{minute_start(first)},{ROW_VALUES}"])

        # The default offer was made, and declined; both bootstrap requests arrived.
        self.assertIsInstance(seen["offered_extensions"], str)
        self.assertTrue(seen["offered_extensions"].startswith(DEFLATE),
                        seen["offered_extensions"])
        requests = seen["requests"]
        self.assertEqual([r.get("method") for r in requests],
                         ["NotifyStatus", "Shelly.GetStatus"])
        for request in requests:
            self.assertEqual(request["src"], "shellylog")
            self.assertIsInstance(request["id"], int)
        self.assertEqual(client.lines()[1:],
                         [{"close_code": 1001, "close_reason": "server stopping",
                           "later_requests": []}])

        # A clean session: nothing failed, nothing was dropped or refused; the server saw
        # the device come, and go with the code it was closed with.
        assert_clean_session(self, self.events, DEVICE, 1001)
        return seen
