"""
README.rst's nginx recipe, run for real: the C{location /ws} block exactly as the README
gives it, in a minimal nginx.conf of the test's own, in front of a real shellylog, with a real
WebSocket client playing the device through it.

The block is read from the README of the source tree (the test skips, or fails in CI, when
there is none), so a change to the README's recipe is what gets tested. Its one change: the
upstream port (see L{with_upstream}).
"""

from __future__ import annotations

import json
import os
import re
import socket
import textwrap
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError, ProcessDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from tests.support.devices import (
    DEVICE,
    FULL_STATUS,
    HEADER,
    PARTIAL_STATUS,
    ROW_VALUES,
    FakeDevice,
)
from tests.support.processes import (
    TWISTD,
    OutputProcess,
    RealReactorTestCase,
    TwistdProcess,
    child_environment,
    client_factory,
    device_factory,
    start_service,
)
from tests.support.realtime import minute_now, minute_start, room_in_minute
from tests.support.tools import missing, tool

T = TypeVar("T")

README = Path(__file__).resolve().parents[2] / "README.rst"
# The upstream the README's block proxies to: shellylog on its default port, on loopback.
README_UPSTREAM = "127.0.0.1:5000"
# nginx's access log, in a format of the test's own: who connected (the device's address as
# nginx saw it), what it asked, the answer, and where nginx sent it.
ACCESS_FORMAT = "'$remote_addr:$remote_port \"$request\" $status upstream=$upstream_addr'"
ACCESS_LINE = re.compile(
    r'^(?P<client>\S+):(?P<client_port>\d+) "(?P<request>[^"]*)" (?P<status>\d{3}) '
    r"upstream=(?P<upstream>\S*)$"
)
# Seconds nginx may take to listen, and to exit after SIGTERM.
NGINX_START = 10.0
NGINX_STOP = 10.0


def readme_literal_blocks(text: str) -> list[tuple[str, str]]:
    """
    Every literal block of an reStructuredText C{text} (a paragraph that ends with C{::},
    then the indented lines after it), as (the paragraph, the block dedented).
    """
    lines = text.splitlines()
    blocks: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::") or line[:1].isspace():
            continue
        start = i
        while start > 0 and lines[start - 1].strip() and not lines[start - 1][:1].isspace():
            start -= 1
        paragraph = " ".join(part.strip() for part in lines[start : i + 1])
        body: list[str] = []
        for following in lines[i + 1 :]:
            if following.strip() and not following[:1].isspace():
                break
            body.append(following)
        block = textwrap.dedent("\n".join(body)).strip("\n")
        if block:
            blocks.append((paragraph, block + "\n"))
    return blocks


def readme_location_block(text: str) -> str:
    """
    The nginx C{location /ws { ... }} block of README.rst's C{text}: the literal block after
    the paragraph that mentions nginx, exactly as given. Fails when there is not exactly one.
    """
    found = [
        block
        for paragraph, block in readme_literal_blocks(text)
        if "nginx" in paragraph and re.match(r"location\s+/ws\s*\{", block)
    ]
    if len(found) != 1:
        raise AssertionError(
            "README.rst should have exactly one literal block 'location /ws { ... }' after a "
            f"paragraph that mentions nginx; found {len(found)}: {found!r}"
        )
    block = found[0]
    if not block.rstrip().endswith("}"):
        raise AssertionError(f"README.rst's nginx block does not end with '}}':\n{block}")
    return block


def with_upstream(block: str, port: int) -> str:
    """
    The README's C{block} with C{proxy_pass} sent to C{127.0.0.1:port} in place of the
    README's C{127.0.0.1:5000}: the only change made to it. The test's shellylog listens on
    a port the system picks (port 5000 may be taken, and tests run side by side), and this
    is the address the README tells users to adapt if they run shellylog elsewhere.
    """
    pattern = re.compile(rf"^(\s*proxy_pass\s+http://){re.escape(README_UPSTREAM)}(/?;)", re.M)
    changed, count = pattern.subn(rf"\g<1>127.0.0.1:{port}\g<2>", block)
    if count != 1:
        raise AssertionError(
            f"README.rst's nginx block should have one 'proxy_pass http://{README_UPSTREAM};'"
            f"; found {count}:\n{block}"
        )
    return changed


def read_readme_block() -> str:
    """The README's nginx block, or L{missing} when there is no source tree."""
    if not README.is_file():
        missing("no README.rst: not a source tree")
    return readme_location_block(README.read_text(encoding="utf-8"))


def quoted(path: str) -> str:
    """C{path} as a quoted nginx string."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_conf(folder: str, listen_port: int, block: str) -> str:
    """
    A minimal nginx.conf around C{block}: in the foreground, every file nginx writes in
    C{folder}, one server on C{127.0.0.1:listen_port}.
    """

    def inside(name: str) -> str:
        return quoted(os.path.join(folder, name))

    temp_paths = "\n".join(
        f"    {kind}_temp_path {inside(kind + '_temp')};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\n"
        f"pid {inside('nginx.pid')};\n"
        f"error_log {inside('error.log')} info;\n"
        "events {}\n"
        "http {\n"
        f"{temp_paths}\n"
        f"    log_format shellylog {ACCESS_FORMAT};\n"
        f"    access_log {inside('access.log')} shellylog;\n"
        "    server {\n"
        f"        listen 127.0.0.1:{listen_port};\n"
        f"{textwrap.indent(block, ' ' * 8)}"
        "    }\n"
        "}\n"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, just now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def observe(d: Deferred[T]) -> Deferred[T]:
    """A new Deferred with C{d}'s result; C{d} goes on with it unchanged."""
    copy: Deferred[T] = Deferred()

    def pass_on(result: T | Failure) -> T | Failure:
        if not copy.called:  # else it timed out (was cancelled) already
            if isinstance(result, Failure):
                copy.errback(result)
            else:
                copy.callback(result)
        return result

    d.addBoth(pass_on)
    return copy


async def within(d: Deferred[T], seconds: float, what: str) -> T:
    """C{d}'s result, or an AssertionError naming C{what} if it takes over C{seconds}."""

    def late(result: object, timeout: float) -> T:
        raise AssertionError(f"{what}: nothing after {timeout} s")

    return await observe(d).addTimeout(seconds, reactor, onTimeoutCancel=late)


class NginxProcess(OutputProcess):
    """nginx's master process: its output and its end."""


class Nginx:
    """An nginx of the test's own in C{folder}, proxying the README's block to C{upstream}."""

    def __init__(self, program: str, folder: str, upstream: int, block: str) -> None:
        self.program = program
        self.folder = folder
        self.port = free_port()
        self.conf = os.path.join(folder, "nginx.conf")
        self.error_log = os.path.join(folder, "error.log")
        self.access_log = os.path.join(folder, "access.log")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(nginx_conf(folder, self.port, with_upstream(block, upstream)))
        self.process = NginxProcess()

    def arguments(self, *extra: str) -> list[str]:
        """nginx's command line: this configuration, prefix and error log, and C{extra}."""
        return ["-c", self.conf, "-p", self.folder + os.sep, "-e", self.error_log, *extra]

    def errors(self) -> str:
        """nginx's output and its error log, to explain a failure."""
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as f:
                log = f.read()
        except FileNotFoundError:
            log = "(no error log)"
        output = self.process.output.decode("utf-8", errors="replace")
        return f"output:\n{output}\nerror log:\n{log}"

    async def check(self) -> str:
        """C{nginx -t}: the configuration must pass; returns what nginx said."""
        result: tuple[bytes, bytes, int] = await getProcessOutputAndValue(
            self.program, self.arguments("-t"), env=dict(os.environ), path=self.folder
        )
        out, err, code = result
        said = (out + err).decode("utf-8", errors="replace")
        if code != 0:
            with open(self.conf, encoding="utf-8") as f:
                conf = f.read()
            raise AssertionError(f"nginx -t failed ({code}):\n{said}\nnginx.conf:\n{conf}")
        return said

    async def start(self, case: TestCase) -> None:
        """Start nginx, stopped at C{case}'s cleanup; return once it accepts connections."""
        reactor.spawnProcess(
            self.process, self.program, [self.program, *self.arguments()],
            env=dict(os.environ), path=self.folder,
        )
        case.addCleanup(self.stop)
        pid = self.process.transport.pid if self.process.transport else None
        deadline = reactor.seconds() + NGINX_START
        while True:
            if self.process.ended.called:
                raise AssertionError(f"nginx exited before it listened\n{self.errors()}")
            # The pid file is written once the port is bound: the port is this nginx's.
            if self.pid_file() == pid and await self.accepts():
                return
            if reactor.seconds() > deadline:
                raise AssertionError(f"nginx not listening after {NGINX_START} s\n"
                                     f"{self.errors()}")
            await deferLater(reactor, 0.05, lambda: None)

    def pid_file(self) -> int | None:
        """The pid in nginx's pid file, if it has written it."""
        try:
            with open(os.path.join(self.folder, "nginx.pid"), encoding="ascii") as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    async def accepts(self) -> bool:
        """Whether nginx's port takes a TCP connection (closed again at once)."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=2)
        try:
            probe = await connectProtocol(endpoint, Protocol())
        except ConnectionRefusedError:
            return False
        assert probe.transport is not None
        probe.transport.loseConnection()
        return True

    async def stop(self) -> BaseException:
        """SIGTERM (nginx's fast shutdown, which does not wait for open tunnels)."""
        if not self.process.ended.called:
            assert self.process.transport is not None
            self.process.transport.signalProcess("TERM")
        try:
            return await within(self.process.ended, NGINX_STOP, "nginx's exit after SIGTERM")
        except AssertionError:
            if not self.process.ended.called:
                assert self.process.transport is not None
                self.process.transport.signalProcess("KILL")
            await self.process.ended
            raise

    def access_lines(self) -> list[dict[str, str]]:
        """nginx's access log so far, each line parsed."""
        try:
            with open(self.access_log, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        parsed = []
        for line in text.splitlines():
            found = ACCESS_LINE.match(line)
            if found is None:
                raise AssertionError(f"access log line not in the test's format: {line!r}")
            parsed.append(found.groupdict())
        return parsed

    async def logged(self, request: str, seconds: float = 10.0) -> dict[str, str]:
        """
        The access log line of C{request}. nginx writes it when the request ends, for a
        WebSocket when its tunnel closes: poll for it.
        """
        deadline = reactor.seconds() + seconds
        while True:
            lines = [line for line in self.access_lines() if line["request"] == request]
            if lines:
                assert len(lines) == 1, lines
                return lines[0]
            if reactor.seconds() > deadline:
                raise AssertionError(
                    f"no {request!r} in nginx's access log: {self.access_lines()!r}"
                )
            await deferLater(reactor, 0.05, lambda: None)


class PingCountingDevice(FakeDevice):
    """A device that counts the server's pings (and answers them, as Autobahn does)."""

    def __init__(self) -> None:
        super().__init__()
        self.pings: list[bytes] = []
        self._ping_waiters: list[tuple[int, Deferred[None]]] = []

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)  # sends the pong
        self.pings.append(payload)
        ready = [d for n, d in self._ping_waiters if len(self.pings) >= n]
        self._ping_waiters = [(n, d) for n, d in self._ping_waiters if len(self.pings) < n]
        for d in ready:
            d.callback(None)

    def pinged(self, count: int) -> Deferred[None]:
        """Fires once the server has pinged C{count} times."""
        d: Deferred[None] = Deferred()
        if len(self.pings) >= count:
            d.callback(None)
        else:
            self._ping_waiters.append((count, d))
        return d


class ReadmeBlockTests(SynchronousTestCase):
    """What the tests below take from README.rst, and how."""

    def test_block_found(self) -> None:
        """README.rst has the block, with the upstream the tests replace."""
        block = read_readme_block()
        self.assertTrue(block.startswith("location /ws {"), block)
        self.assertIn(f"proxy_pass http://{README_UPSTREAM};", block)
        self.assertIn("127.0.0.1:4321;", with_upstream(block, 4321))
        self.assertNotIn(README_UPSTREAM, with_upstream(block, 4321))

    def test_extraction(self) -> None:
        """The literal block after the paragraph that names nginx, dedented, as it is."""
        text = (
            "Some text::\n\n    location /ws { not this one; }\n\n"
            "Behind a proxy such as nginx::\n\n"
            "    location /ws {\n        proxy_pass http://127.0.0.1:5000;\n    }\n\n"
            "After.\n"
        )
        self.assertEqual(
            readme_location_block(text),
            "location /ws {\n    proxy_pass http://127.0.0.1:5000;\n}\n",
        )

    def test_missing_block_fails(self) -> None:
        """No block after a paragraph that names nginx: a clear failure."""
        error = self.assertRaises(
            AssertionError, readme_location_block, "Use nginx.\n\n    location /ws {}\n"
        )
        self.assertIn("exactly one literal block", str(error))
        error = self.assertRaises(
            AssertionError, with_upstream, "location /ws {\n    proxy_pass http://x:1;\n}\n", 1
        )
        self.assertIn("proxy_pass", str(error))


class NginxTests(RealReactorTestCase):
    """A device reaches shellylog through nginx configured as README.rst says."""

    timeout = 30

    def setUp(self) -> None:
        self.nginx_program = tool("nginx")
        self.block = read_readme_block()
        super().setUp()

    async def start_nginx(self, upstream: int) -> Nginx:
        """nginx with the README's block, in front of shellylog on C{upstream}; running."""
        folder = os.path.join(self.folder, "nginx")
        os.makedirs(folder)
        nginx = Nginx(self.nginx_program, folder, upstream, self.block)
        said = await nginx.check()
        self.assertIn("test is successful", said)
        await nginx.start(self)
        return nginx

    async def connect(self, port: int, device: type[FakeDevice] = FakeDevice) -> FakeDevice:
        """A device connected to C{ws://127.0.0.1:PORT/ws}, offering C{json-rpc}; open."""
        factory = client_factory(f"ws://127.0.0.1:{port}/ws", device, ["json-rpc"])
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = cast(FakeDevice, await endpoint.connect(factory))

        async def drop() -> None:
            if not client.closed.called:
                cast(ITCPTransport, client.transport).abortConnection()
            await client.closed

        self.addCleanup(drop)
        await within(client.opened, 10, "the WebSocket handshake through nginx")
        self.assertEqual(client.websocket_protocol_in_use, "json-rpc")
        return client

    async def get(self, port: int, path: str) -> tuple[int, dict[str, list[str]], str]:
        """C{GET path} on C{127.0.0.1:port}: the status code, the headers and the body."""
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{port}{path}".encode("ascii")
        )
        body = (await readBody(response)).decode("utf-8", errors="replace")
        headers = {
            k.decode("ascii").lower(): [v.decode("latin-1") for v in vs]
            for k, vs in response.headers.getAllRawHeaders()
        }
        return response.code, headers, body

    async def status(self, port: int) -> dict[str, Any]:
        """shellylog's C{/status}, asked directly (the README's block does not proxy it)."""
        code, _, body = await self.get(port, "/status")
        self.assertEqual(code, 200, body)
        report: dict[str, Any] = json.loads(body)
        return report

    def assertRows(self, rows: list[str], first_minute: int, last_minute: int) -> None:
        """The CSV is the header and exactly C{rows} (values after the timestamp), in one
        minute between C{first_minute} and C{last_minute}."""
        with open(self.csv, encoding="utf-8", newline="") as f:
            text = f.read()
        self.assertTrue(text.endswith("\n"), repr(text))
        lines = text.splitlines()
        self.assertEqual(lines[0], HEADER)
        self.assertEqual([line.partition(",")[2] for line in lines[1:]], rows, text)
        minutes = {minute_start(m) for m in range(first_minute, last_minute + 1)}
        for line in lines[1:]:
            self.assertIn(line.partition(",")[0], minutes, f"not a minute of the test: {line}")

    def test_device_through_readme_block(self) -> Deferred[None]:
        """
        A device connects through nginx to C{/ws}, reports a channel above the threshold
        and an update; shellylog sees nginx as its peer, nginx logs the upgrade (101), and
        the stop writes the minute's row. C{GET /} through nginx is nginx's own answer: the
        README's block proxies C{/ws} only, so the health page is on shellylog's port.
        """
        return ensureDeferred(self._device_through_readme_block())

    async def _device_through_readme_block(self) -> None:
        service, port = await start_service(
            self, ["--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0"]
        )
        nginx = await self.start_nginx(port)
        device = await self.connect(nginx.port)
        device_port = cast(ITCPTransport, device.transport).getHost().port

        await room_in_minute()
        first = minute_now()
        bootstrap = await within(device.messages(2), 10, "the bootstrap requests")
        self.assertEqual(
            [m.get("method") for m in bootstrap], ["NotifyStatus", "Shelly.GetStatus"]
        )
        device.send(FULL_STATUS)
        device.send(PARTIAL_STATUS)
        await within(device.sync(), 10, "the pong through nginx")
        self.assertEqual(device.received, bootstrap)

        # shellylog's view: one device, connected from loopback, through nginx's socket.
        report = await self.status(port)
        (record,) = report["devices"]
        self.assertEqual(record["device_id"], DEVICE)
        self.assertTrue(record["connected"])
        self.assertEqual(record["frames_received"], 2)
        self.assertRegex(record["peer"], r"^tcp4:127\.0\.0\.1:\d+$")
        channel = record["channels"]["0"]
        self.assertEqual((channel["apower_W"], channel["active"]), (460.5, True))

        # The README's block covers /ws alone: / and /status through nginx are nginx's own
        # answers (its static files: 404 with none there, or 403 when nginx runs as root and
        # its worker, as nobody, may not enter the test's private temp folder), not
        # shellylog's; shellylog's health page answers on its own port, as the README says.
        for path, not_shellylog in (("/", "devices:"), ("/status", DEVICE)):
            code, headers, body = await self.get(nginx.port, path)
            self.assertIn(code, (403, 404), body)
            self.assertTrue(headers["server"][0].startswith("nginx"), headers)
            self.assertNotIn(not_shellylog, body)
        code, _, body = await self.get(port, "/")
        self.assertEqual((code, body), (200, "ok\ndevices: 1\nrows_written: 0\n"))

        await service.stopService()
        last = minute_now()
        self.assertRows([ROW_VALUES], first, last)

        # The stop closed the device's connection (1001, going away), and the close
        # handshake went through nginx both ways.
        self.assertTrue(await within(device.closed, 10, "the close handshake through nginx"))
        self.assertEqual(device.close, (1001, "server stopping"))

        # nginx logs the upgrade when its tunnel ends: the device's connection, 101, sent to
        # shellylog's port; and the two requests for pages it answered itself.
        line = await nginx.logged("GET /ws HTTP/1.1")
        self.assertEqual(
            (line["client"], line["client_port"], line["status"], line["upstream"]),
            ("127.0.0.1", str(device_port), "101", f"127.0.0.1:{port}"),
        )
        for path in ("/", "/status"):
            line = await nginx.logged(f"GET {path} HTTP/1.1")
            self.assertIn(line["status"], ("403", "404"))
            self.assertEqual(line["upstream"], "-")  # not proxied

    def test_frames_keep_connection_and_stop_closes_it(self) -> Deferred[None]:
        """
        Through nginx, a device that keeps sending frames stays on one connection, each
        frame handled in order (a ping after it comes back); when twistd stops (SIGTERM),
        nginx ends the device's connection at once, and the minute's row is written.
        """
        return ensureDeferred(self._frames_keep_connection())

    async def _frames_keep_connection(self) -> None:
        child = TwistdProcess()
        args = [*TWISTD, "-n", "--pidfile=", "shellylog", "--port", "tcp:0:interface=127.0.0.1",
                "--csv", self.csv, "--poll", "0"]
        reactor.spawnProcess(child, TWISTD[0], args, env=child_environment(), path=self.folder)
        self.addCleanup(child.kill)
        port = await child.listening
        nginx = await self.start_nginx(port)
        device = await self.connect(nginx.port)
        await within(device.messages(2), 10, "the bootstrap requests")

        await room_in_minute(15)
        first = minute_now()
        device.send(FULL_STATUS)
        powers = [451.5, 452, 453.25, 454, 455, 456.5]
        for apower in powers:
            await deferLater(reactor, 0.2, lambda: None)  # pacing, not waiting on anything
            device.send({
                "src": DEVICE, "dst": "ws", "method": "NotifyStatus",
                "params": {"switch:0": {"id": 0, "apower": apower}},
            })
            await within(device.sync(), 10, "the pong through nginx")
            self.assertEqual(device.state, device.STATE_OPEN)
            self.assertFalse(device.closed.called)

        report = await self.status(port)
        (record,) = report["devices"]
        self.assertEqual(
            (record["connected"], record["reconnects"], record["frames_received"]),
            (True, 0, 1 + len(powers)),
        )
        self.assertEqual(record["channels"]["0"]["apower_W"], powers[-1])

        await child.terminate()
        last = minute_now()
        # twistd's stop closes the device's connection with 1001 (going away), through
        # nginx: closed, not left hanging, and told why.
        self.assertTrue(await within(device.closed, 5,
                                     "the device's connection to close when shellylog stops"))
        self.assertEqual(device.close, (1001, "server stopping"))
        self.assertEqual(device.state, device.STATE_CLOSED)
        self.assertFalse(nginx.process.ended.called, "nginx itself must keep running")
        self.assertRows([f"{DEVICE},0,{powers[-1]},230.1,1.9,100.0"], first, last)
        line = await nginx.logged("GET /ws HTTP/1.1")
        self.assertEqual((line["status"], line["upstream"]), ("101", f"127.0.0.1:{port}"))
        self.assertIsInstance(await nginx.stop(), ProcessDone)

    def test_server_pings_cross_nginx(self) -> Deferred[None]:
        """
        shellylog's keep-alive pings (every 30 s; here every half second) reach the device
        through nginx and its pongs come back: Autobahn sends the next ping only after the
        last one's pong, and a ping left unanswered for 3 s would drop the connection.
        """
        return ensureDeferred(self._server_pings())

    async def _server_pings(self) -> None:
        service, port = await start_service(
            self, ["--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0"]
        )
        factory = device_factory(service)
        factory.setProtocolOptions(autoPingInterval=0.5, autoPingTimeout=3, allowNullOrigin=True)
        nginx = await self.start_nginx(port)
        device = cast(PingCountingDevice, await self.connect(nginx.port, PingCountingDevice))
        await within(device.messages(2), 10, "the bootstrap requests")
        device.send(FULL_STATUS)
        await within(device.sync(), 10, "the pong through nginx")

        # Silent from here on: only pongs keep the connection.
        await within(device.pinged(4), 15, "four pings from shellylog through nginx")
        self.assertEqual(len(set(device.pings)), len(device.pings))  # each ping its own
        self.assertEqual(device.state, device.STATE_OPEN)
        report = await self.status(port)
        (record,) = report["devices"]
        self.assertTrue(record["connected"])
        self.assertEqual(report["server"]["connected_devices"], 1)

        device.sendClose(code=1000)
        self.assertTrue(await within(device.closed, 10, "the close handshake through nginx"))

