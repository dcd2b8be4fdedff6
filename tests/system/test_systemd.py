"""
The systemd units in C{contrib/systemd}: they agree with each other and with shellylog's
options, C{systemd-analyze} accepts them and rates their sandboxing, and socket activation
through Twisted's C{systemd:} endpoint works end to end.

The end-to-end test runs C{systemd-socket-activate} as the socket unit would: it listens,
waits for the first connection, and only then starts twistd, which adopts the listening
socket by its name (C{FileDescriptorName=}) and serves the connection that was waiting.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from shellylog.config import Config
from shellylog.tap import DESCRIPTOR_MARGIN
from tests.support.devices import DEVICE, FULL_STATUS, FakeDevice
from tests.support.processes import (
    TWISTD,
    RealReactorTestCase,
    TwistdProcess,
    child_environment,
    client_factory,
)
from tests.support.realtime import minute_now, minute_start, room_in_minute
from tests.support.tools import missing, tool

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
SOCKET_SERVICE = "shellylog.service"
SOCKET = "shellylog.socket"
LISTEN_SERVICE = "shellylog-listen.service"
# Where README.rst installs shellylog, and so where the units run it from.
INSTALLED_TWISTD = "/opt/shellylog/bin/twistd"
# systemd-analyze security: "OK" goes up to 2.0 (then MEDIUM, EXPOSED, UNSAFE).
MOST_EXPOSURE = 2.0


Unit = dict[str, list[tuple[str, str]]]


def units_folder() -> Path:
    """C{contrib/systemd} of the source tree, or skip (tests run from an installed copy)."""
    if not (UNITS / SOCKET_SERVICE).is_file():
        missing(f"no unit files in {UNITS}: not a source tree")
    return UNITS


def read_unit(name: str) -> Unit:
    """The C{key=value} lines of a unit file, by section, in order (keys may repeat)."""
    unit: Unit = {}
    section: list[tuple[str, str]] = []
    for raw in (units_folder() / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], [])
            continue
        assert not line.endswith("\\"), f"{name}: continuation lines are not parsed: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not a key=value line: {raw!r}"
        section.append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    """The one value of C{key}, which must be set exactly once."""
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= set {len(found)} times: {found}"
    return found[0]


def option(command: list[str], name: str) -> str:
    """The value given to C{name} (C{--port}, C{--csv}) in a command line."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    raise AssertionError(f"{name} not in {command}")


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("systemd-analyze", "systemd"), "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )


class UnitFileTests(SynchronousTestCase):
    """The units' settings, read from the files."""

    def test_socket_named_for_the_endpoint(self) -> None:
        """
        The service adopts the socket unit's descriptor by the name the socket gives it,
        and the address family the endpoint expects is the socket's: IPv4.
        """
        sock = read_unit(SOCKET)
        service = read_unit(SOCKET_SERVICE)
        self.assertEqual(value(sock, "Socket", "FileDescriptorName"), "shellylog")
        self.assertEqual(value(sock, "Socket", "Service"), SOCKET_SERVICE)
        self.assertEqual(value(sock, "Socket", "ListenStream"), "0.0.0.0:5000")
        self.assertEqual(values(sock, "Install", "WantedBy"), ["sockets.target"])
        command = value(service, "Service", "ExecStart").split()
        self.assertEqual(option(command, "--port"), "systemd:domain=INET:name=shellylog")
        self.assertIn(SOCKET, value(service, "Unit", "Requires").split())
        self.assertIn(SOCKET, value(service, "Unit", "After").split())

    def test_listen_variant_same_port(self) -> None:
        """The plain variant listens on the socket unit's port, and excludes the other."""
        sock = read_unit(SOCKET)
        listen = read_unit(LISTEN_SERVICE)
        port = value(sock, "Socket", "ListenStream").rpartition(":")[2]
        command = value(listen, "Service", "ExecStart").split()
        self.assertEqual(option(command, "--port"), f"tcp:{port}")
        self.assertEqual(set(value(listen, "Unit", "Conflicts").split()), {SOCKET, SOCKET_SERVICE})
        self.assertEqual(values(listen, "Install", "WantedBy"), ["multi-user.target"])

    def test_command_and_state(self) -> None:
        """
        Both services run the installed twistd in the foreground with no pid file, restart
        it on failure, and write the CSV into their state directory.
        """
        for name in (SOCKET_SERVICE, LISTEN_SERVICE):
            unit = read_unit(name)
            command = value(unit, "Service", "ExecStart").split()
            self.assertEqual(
                command[:4], [INSTALLED_TWISTD, "--nodaemon", "--pidfile=", "shellylog"], name
            )
            self.assertEqual(value(unit, "Service", "Restart"), "on-failure", name)
            self.assertEqual(value(unit, "Service", "DynamicUser"), "yes", name)
            state = value(unit, "Service", "StateDirectory")
            csv = option(command, "--csv")
            self.assertEqual(os.path.dirname(csv), f"/var/lib/{state}", name)

    def test_variants_share_the_sandbox(self) -> None:
        """
        The two services differ only in how they get their port: the socket-activated one
        also has no network of its own.
        """
        differ = {"ExecStart", "PrivateNetwork"}
        socket_side = read_unit(SOCKET_SERVICE)["Service"]
        listen_side = read_unit(LISTEN_SERVICE)["Service"]
        self.assertEqual(
            [kv for kv in socket_side if kv[0] not in differ],
            [kv for kv in listen_side if kv[0] not in differ],
        )
        self.assertEqual(values(read_unit(SOCKET_SERVICE), "Service", "PrivateNetwork"), ["yes"])

    def test_open_file_limit(self) -> None:
        """
        Both services may open a descriptor for each of the default --max-connections and
        the margin shellylog checks for at start: LimitNOFILE= sets the soft limit (the
        first of C{soft:hard}) at least that high, and the hard limit no lower.
        """
        needed = Config().limits.max_connections + DESCRIPTOR_MARGIN
        for name in (SOCKET_SERVICE, LISTEN_SERVICE):
            soft, _, hard = value(read_unit(name), "Service", "LimitNOFILE").partition(":")
            self.assertGreaterEqual(int(soft), needed, name)
            self.assertGreaterEqual(int(hard or soft), int(soft), name)

    def test_readme_installs_where_units_run(self) -> None:
        """README.rst installs into the venv whose twistd the units run."""
        readme = ROOT / "README.rst"
        if not readme.is_file():
            missing("no README.rst: not a source tree")
        text = readme.read_text(encoding="utf-8")
        venv = os.path.dirname(os.path.dirname(INSTALLED_TWISTD))
        for step in (f"python3 -m venv {venv}", f"{venv}/bin/python -c"):  # the plugin cache
            self.assertTrue(step in text, f"README.rst does not show {step!r}")

    def test_verify(self) -> None:
        """
        C{systemd-analyze verify} finds nothing to say about the units. It checks that
        ExecStart's program exists: a copy of the units runs the twistd next to this Python.
        """
        folder = units_folder()
        twistd = Path(sys.executable).parent / "twistd"
        program = str(twistd) if os.access(twistd, os.X_OK) else sys.executable
        copy = Path(self.mktemp())
        copy.mkdir(parents=True)
        names = [SOCKET, SOCKET_SERVICE, LISTEN_SERVICE]
        for name in names:
            text = (folder / name).read_text(encoding="utf-8")
            (copy / name).write_text(text.replace(INSTALLED_TWISTD, program), encoding="utf-8")
        result = systemd_analyze("verify", *(str((copy / n).resolve()) for n in names))
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)

    def assertExposure(self, name: str) -> None:
        """C{systemd-analyze security --offline=true} rates the unit "OK" or better."""
        path = units_folder() / name
        result = systemd_analyze("security", "--offline=true", str(path))
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        found = re.search(
            rf"Overall exposure level for {re.escape(name)}: (\d+(?:\.\d+)?) (\w+)", output
        )
        assert found is not None, output
        level = float(found.group(1))
        self.assertLessEqual(level, MOST_EXPOSURE, output)
        self.assertIn(found.group(2), ("OK", "SAFE"), output)

    def test_security_socket_service(self) -> None:
        self.assertExposure(SOCKET_SERVICE)

    def test_security_listen_service(self) -> None:
        self.assertExposure(LISTEN_SERVICE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, just now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ActivatedTwistd(TwistdProcess):
    """C{systemd-socket-activate}, and the twistd it becomes: also when it listens."""

    def __init__(self) -> None:
        super().__init__()
        self.bound: Deferred[None] = Deferred()

    def _check_bound(self) -> None:
        if not self.bound.called and re.search(rb"Listening on \S+ as \d+\.", self.output):
            self.bound.callback(None)

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        self._check_bound()

    def errReceived(self, data: bytes) -> None:
        super().errReceived(data)
        self._check_bound()

    def processEnded(self, reason: Failure) -> None:
        if not self.bound.called:
            self.bound.errback(RuntimeError(f"ended before it listened:\n{self.text()}"))
        super().processEnded(reason)


class SocketActivationTests(RealReactorTestCase):
    """What shellylog.socket and shellylog.service do, with systemd-socket-activate."""

    timeout = 60
    # twistd starts only once the device's connection waits for it: its start-up counts
    # against the WebSocket opening handshake.
    handshake_timeout = 30

    def setUp(self) -> None:
        self.socket_activate = tool("systemd-socket-activate", "systemd")
        super().setUp()

    def test_adopts_named_socket(self) -> Deferred[None]:
        """
        Started on the first connection with the socket named C{shellylog}, twistd serves
        that connection on the inherited socket, takes the device's report and writes its
        row when SIGTERM stops it.
        """
        return ensureDeferred(self._adopts_named_socket())

    async def _adopts_named_socket(self) -> None:
        port = free_port()
        args = [
            self.socket_activate,
            "--fdname=shellylog",
            "-l",
            f"127.0.0.1:{port}",
            *TWISTD,
            "-n",
            "--pidfile=",
            "shellylog",
            "--port",
            "systemd:domain=INET:name=shellylog",
            "--csv",
            self.csv,
            "--poll",
            "0",
        ]
        child = ActivatedTwistd()
        reactor.spawnProcess(
            child, self.socket_activate, args, env=child_environment(), path=self.folder
        )
        self.addCleanup(child.kill)
        await child.bound
        self.assertFalse(child.listening.called, "twistd started before any connection")

        try:
            device = await self.connect_device(port)
            # The server's first frame: twistd runs and serves the connection that waited.
            await device.messages(1)
        except Exception as e:
            raise AssertionError(f"{e}; the child's output:\n{child.text()}") from e
        # It listens on the inherited socket (same process, same port), not one of its own.
        self.assertEqual(await child.listening, port)

        await room_in_minute()
        first = minute_now()
        device.send(FULL_STATUS)
        await device.sync()

        await child.terminate()
        last = minute_now()
        await device.closed

        with open(self.csv, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, f"expected the header and one row, got {lines!r}")
        stamp, device_id, channel, apower = lines[1].split(",")[:4]
        self.assertEqual((device_id, channel, apower), (DEVICE, "0", "450"), lines[1])
        minutes = {minute_start(m) for m in range(first, last + 1)}
        self.assertIn(stamp, minutes, f"{stamp} is not a minute start of the test's window")

    async def connect_device(self, port: int) -> FakeDevice:
        """Connect a device to C{/ws}; return once the WebSocket is open."""
        factory = client_factory(f"ws://127.0.0.1:{port}/ws", FakeDevice, ["json-rpc"])
        factory.setProtocolOptions(openHandshakeTimeout=self.handshake_timeout)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        device = cast(FakeDevice, await endpoint.connect(factory))
        self.addCleanup(self.disconnect, device)
        await device.opened
        return device

    async def disconnect(self, device: FakeDevice) -> None:
        """After a failure: drop the device's connection, if it is still open."""
        if not device.closed.called:
            cast(ITCPTransport, device.transport).abortConnection()
        await device.closed
