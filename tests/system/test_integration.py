"""
Integration tests that need more than memory: TLS on a real socket, a real file system that
fills up, and real twistd processes whose clock runs ten times faster under libfaketime
(across a daylight-saving change, and through a C{kill -9} and a restart).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
from collections import Counter
from typing import Any, TypeVar, cast

from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, ITCPTransport
from twisted.internet.task import LoopingCall
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import IResource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from shellylog.csvlog import HEADER, parse_row_key
from shellylog.status import ChannelValues
from shellylog.tap import Options, makeService
from shellylog.tracker import ChannelTracker
from tests.support.certificates import make_certificate
from tests.support.devices import FULL_STATUS, FakeDevice
from tests.support.processes import (
    RealReactorTestCase,
    client_factory,
    csv_lines,
    spawn_twistd,
    start_service,
    wait_for,
)
from tests.support.tools import faketime_library, missing, root

T = TypeVar("T")


async def connect(case: TestCase, port: int, device: type[FakeDevice] = FakeDevice,
                  tls: IOpenSSLClientConnectionCreator | None = None) -> FakeDevice:
    """A device connected to C{/ws} (over TLS with C{tls}), once open."""
    scheme = "wss" if tls is not None else "ws"
    factory = client_factory(f"{scheme}://127.0.0.1:{port}/ws", device)
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    client = cast(FakeDevice, await endpoint.connect(factory))

    async def drop() -> None:
        if not client.closed.called:
            cast(ITCPTransport, client.transport).abortConnection()
        await client.closed

    case.addCleanup(drop)
    await client.opened
    return client


def read_rows(path: str) -> list[list[str]]:
    """The CSV's rows after its header, parsed by the csv module; checks the file's shape."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n"), f"torn last line: {text[-80:]!r}"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER.split(","), rows[0]
    for row in rows[1:]:
        assert len(row) == 7, row
    return rows[1:]


class TLSTests(RealReactorTestCase):
    """C{--port ssl:...} serves C{wss://}: a device over TLS gets its row."""

    timeout = 30

    def test_wss_device_gets_a_row(self) -> Deferred[None]:
        """A device on C{wss://}, trusting the server's self-signed certificate, gets its row."""
        return ensureDeferred(self._wss())

    async def _wss(self) -> None:
        key_path, cert_path, cert_pem = make_certificate(self.folder)
        csv_path = os.path.join(self.folder, "power.csv")
        service, port = await start_service(self, [
            "--port", f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
            "--csv", csv_path, "--poll", "0",
        ])

        trust = ssl.Certificate.loadPEM(cert_pem)
        tls = ssl.optionsForClientTLS("localhost", trustRoot=trust)
        device = await connect(self, port, tls=tls)
        self.assertTrue(device.transport is not None)
        await device.messages(2)
        device.send(FULL_STATUS)
        await device.sync()
        await service.stopService()
        rows = read_rows(csv_path)
        self.assertEqual([r[1:] for r in rows],
                         [["shellyplus1pm-aabbccddeeff", "0", "450", "230.1", "1.9", "100.0"]])
        self.assertTrue(await device.closed)
        self.assertEqual(device.close, (1001, "server stopping"))


class FullDiskTests(SynchronousTestCase):
    """
    A real, small file system that fills up: rows wait, C{GET /} says 503 and why, and
    once there is room every row is written, in order, with no torn line.
    """

    def setUp(self) -> None:
        root()
        self.mount = os.path.abspath(self.mktemp())
        os.makedirs(self.mount)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", self.mount],
                              capture_output=True)
        if done.returncode != 0:
            missing(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mount], check=False)

    def health(self, root: IResource) -> tuple[int, str]:
        request = DummyRequest([b""])
        resource = root.getChildWithDefault(b"", request)
        body = resource.render(request)
        return request.responseCode or 200, body.decode()

    def fill(self) -> str:
        filler = os.path.join(self.mount, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        return filler

    def test_disk_full_then_freed(self) -> None:
        clock = MemoryReactorClock()
        clock.advance(1_800_000_000 + 10)
        csv_path = os.path.join(self.mount, "power.csv")
        options = Options()
        options.parseOptions(["--csv", csv_path, "--port", "tcp:5000", "--max-carry", "0"])
        service = makeService(options.config, reactor=clock)
        service.startService()
        self.addCleanup(service.stopService)
        site = clock.tcpServers[0][1]
        assert isinstance(site, Site), site
        root = site.resource
        tracker: ChannelTracker = root.getStaticEntity(b"ws").factory.registry.sink

        def report(count: int) -> None:
            for n in range(count):
                tracker.readings(f"pump-{n:03d}", {0: ChannelValues(450.5, 230.1, 1.9, 10.0)})

        report(100)
        clock.advance(50)  # the tick at the minute's end writes 100 rows
        self.assertEqual(self.health(root)[0], 200)
        filler = self.fill()
        report(100)
        clock.advance(60)
        code, body = self.health(root)
        self.assertEqual(code, 503)
        self.assertIn("No space left on device", body)
        self.assertIn("rows_pending: 100", body)
        self.assertEqual(len(read_rows(csv_path)), 100)
        report(100)
        clock.advance(60)
        self.assertIn("rows_pending: 200", self.health(root)[1])
        os.unlink(filler)
        clock.advance(60)
        self.assertEqual(self.health(root), (200, "ok\ndevices: 0\nrows_written: 300\n"))
        rows = read_rows(csv_path)
        self.assertEqual(len(rows), 300)
        keys = [parse_row_key(",".join(r)) for r in rows]
        self.assertEqual(keys, sorted(keys))
        self.flushLoggedErrors()


class FastClockTests(RealReactorTestCase):
    """A real twistd whose clock runs ten times faster: minute ticks in seconds."""

    timeout = 120

    def setUp(self) -> None:
        faketime_library()
        super().setUp()

    def test_ticks_across_spring_forward_in_berlin(self) -> Deferred[None]:
        """
        The minute tick writes each completed minute while the server runs; local time
        jumps from 01:59+01:00 to 03:00+02:00 with no gap and no repeat.
        """
        return ensureDeferred(self._dst())

    async def _dst(self) -> None:
        child = spawn_twistd(
            self, self.folder,
            ["--csv", self.csv, "--tz", "Europe/Berlin", "--poll", "0", "--max-carry", "5"],
            faketime="@2026-03-29 00:58:20 x10",
        )
        port = await child.listening
        device = await connect(self, port)
        await device.messages(2)
        device.send(FULL_STATUS)
        await device.sync()
        await wait_for(lambda: len(csv_lines(self.csv)) >= 4, 40, "three ticks")
        # Written by ticks while running, not by the stop.
        self.assertEqual(csv_lines(self.csv)[1:4], [
            "2026-03-29T01:58:00+01:00,shellyplus1pm-aabbccddeeff,0,450,230.1,1.9,100.0",
            "2026-03-29T01:59:00+01:00,shellyplus1pm-aabbccddeeff,0,450,230.1,1.9,100.0",
            "2026-03-29T03:00:00+02:00,shellyplus1pm-aabbccddeeff,0,450,230.1,1.9,100.0",
        ])
        await child.terminate()
        await device.closed

    def test_kill_9_and_restart(self) -> Deferred[None]:
        """
        C{kill -9} in the middle of traffic from many devices, power lost mid-line, then a
        restart (its clock starting over, minutes behind the file): the CSV parses, has no
        torn line and no (device, channel, minute) twice, and the restart says what it cut.
        """
        return ensureDeferred(self._kill_9())

    async def _kill_9(self) -> None:
        args = ["--csv", self.csv, "--poll", "0", "--max-carry", "2", "--channels", "0,1"]
        faketime = "@2026-06-01 11:59:30 x10"
        first = spawn_twistd(self, self.folder, args, faketime=faketime)
        devices = await self.traffic(await first.listening, count=20)
        await wait_for(lambda: len(csv_lines(self.csv)) > 80, 60, "two minutes of rows")
        assert first.transport is not None
        first.transport.signalProcess("KILL")
        reason = await first.ended
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual(cast(ProcessTerminated, reason).signal, signal.SIGKILL)
        for device in devices:
            await device.closed
        with open(self.csv, "ab") as f:
            f.write(b"2026-06-01T12:0")  # power lost in the middle of a line

        second = spawn_twistd(self, self.folder, args, faketime=faketime)
        port = await second.listening
        before = len(csv_lines(self.csv))
        devices = await self.traffic(port, count=20)
        await wait_for(lambda: len(csv_lines(self.csv)) > before + 40, 60, "rows after restart")
        await second.terminate()
        self.assertIn("torn line", second.text())
        self.assertIn("2026-06-01T12:0", second.text())
        rows = read_rows(self.csv)
        keys = Counter((r[0], r[1], r[2]) for r in rows)
        self.assertEqual([k for k, n in keys.items() if n > 1], [])
        self.assertEqual(len({r[1] for r in rows}), 20)

    async def traffic(self, port: int, count: int) -> list[FakeDevice]:
        """C{count} devices, each reporting two busy channels, changing every report."""
        devices = [await connect(self, port) for _ in range(count)]
        for n, device in enumerate(devices):
            status: dict[str, Any] = {
                "src": f"shellypro4pm-{n:012x}", "dst": "ws", "method": "NotifyFullStatus",
                "params": {f"switch:{c}": {"id": c, "apower": 100.0 + n, "voltage": 230.0,
                                           "current": 0.5, "aenergy": {"total": 1.0}}
                           for c in (0, 1)},
            }
            device.send(status)

        steps = iter(range(1_000_000))

        def report() -> None:
            step = next(steps)
            for n, device in enumerate(devices):
                if device.state == device.STATE_OPEN:
                    device.send({"src": f"shellypro4pm-{n:012x}", "method": "NotifyStatus",
                                 "params": {"switch:0": {"apower": 100.0 + step % 50}}})

        reporter = LoopingCall(report)
        reporter.start(0.1)
        def stop_reporting(result: T) -> T:
            if reporter.running:
                reporter.stop()
            return result

        self.addCleanup(stop_reporting, None)
        for device in devices:
            device.closed.addBoth(stop_reporting)
        return devices

