"""
C{--web-auth} against tools shellylog did not write: password files made by Apache's
C{htpasswd} (Debian package C{apache2-utils}), a real C{twistd -n shellylog} asked by C{curl}
and sent SIGHUP, a device's WebSocket beside it, the README's Prometheus scrape block checked
by C{promtool} and scraped by a real C{prometheus} server, and the systemd override of the
README passed by C{systemd-analyze verify}.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

from tests.support.devices import DEVICE, FULL_STATUS, FakeDevice
from tests.support.processes import (
    RealReactorTestCase,
    TwistdProcess,
    client_factory,
    spawn_twistd,
    wait_for,
)
from tests.support.tools import missing, tool

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.rst"
UNITS = ROOT / "contrib" / "systemd"
TOKEN = "device-token-0123"


def htpasswd(*args: str) -> None:
    """Run Apache's C{htpasswd ARGS} (or skip, or in CI fail, without it)."""
    result = subprocess.run([tool("htpasswd", "apache2-utils"), *args], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def readme() -> str:
    if not README.is_file():
        missing("no README.rst: not a source tree")
    return README.read_text(encoding="utf-8")


def scrape_block(text: str) -> str:
    """The README's literal block of C{prometheus.yml} with C{basic_auth}."""
    blocks = [b for b in re.findall(r"::\n\n((?:    .*\n|\n)+)", text) if "basic_auth:" in b]
    assert len(blocks) == 1, f"README.rst should have one scrape block with basic_auth: {blocks}"
    return "\n".join(line[4:] for line in blocks[0].splitlines()).strip() + "\n"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return cast(int, s.getsockname()[1])


class ServerTests(RealReactorTestCase):
    """A real twistd with C{--web-auth}, asked by curl."""

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.curl_path = tool("curl")
        self.passwords = os.path.join(self.folder, "htpasswd")
        htpasswd("-B", "-C", "4", "-b", "-c", self.passwords, "alice", "first password")
        htpasswd("-5", "-b", self.passwords, "prometheus", "scrape-secret")

    async def start(self) -> tuple[TwistdProcess, int]:
        child = spawn_twistd(self, self.folder, [
            "--csv", self.csv, "--poll", "0", "--token", TOKEN, "--web-auth", self.passwords,
        ])
        port = await child.listening
        return child, port

    async def curl(self, port: int, path: str, *args: str) -> tuple[int, bytes]:
        """C{curl ARGS http://127.0.0.1:PORT/PATH}: the status code and the body."""
        out, err, code = await getProcessOutputAndValue(
            self.curl_path, ["-s", "-w", "\n%{http_code}", *args, f"http://127.0.0.1:{port}{path}"],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, err)
        body, _, status = out.rpartition(b"\n")
        return int(status), body

    def test_curl(self) -> Deferred[None]:
        return ensureDeferred(self._curl())

    async def _curl(self) -> None:
        child, port = await self.start()
        # Without credentials: 401 and the challenge, nothing of the page.
        for path in ("/status", "/metrics", "/status?offset=0"):
            status, body = await self.curl(port, path, "-i")
            self.assertEqual(status, 401, body)
            self.assertIn(b'\r\nWWW-Authenticate: basic realm="shellylog"\r\n', body)
            self.assertNotIn(b"options", body)
        # The health check stays open; curl -f gets ok.
        status, body = await self.curl(port, "/", "-f")
        self.assertEqual((status, body.splitlines()[0]), (200, b"ok"))
        # Right passwords, of both schemes.
        status, body = await self.curl(port, "/status", "-u", "alice:first password")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["server"]["options"]["web-auth"], self.passwords)
        # Wrong ones.
        for credentials in ("alice:first passworD", "mallory:first password", "alice:"):
            status, _ = await self.curl(port, "/status", "-u", credentials)
            self.assertEqual(status, 401, credentials)
        # Not Basic credentials at all.
        status, _ = await self.curl(port, "/status", "-H", "Authorization: Basic !!!")
        self.assertEqual(status, 401)

        # The devices' WebSocket stays open, behind its own token.
        factory = client_factory(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", FakeDevice,
                                 ["json-rpc"])
        device = cast(FakeDevice, await TCP4ClientEndpoint(reactor, "127.0.0.1", port)
                      .connect(factory))
        self.addCleanup(self.disconnect, device)
        await device.opened
        device.send(FULL_STATUS)
        await device.sync()

        status, body = await self.curl(port, "/metrics", "-u", "prometheus:scrape-secret")
        self.assertEqual(status, 200, body)
        self.assertIn(b'\nshellylog_frames_rejected_total{reason="web_auth"} 4.0\n', body)
        self.assertIn(b"\nshellylog_connected_devices 1.0\n", body)
        # /status is built at most once a second: the one of the first request, then a new one.
        document: dict[str, Any] = {}
        for _ in range(50):
            status, body = await self.curl(port, "/status", "-u", "alice:first password")
            document = json.loads(body)
            if document["server"]["rejected"]:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(document["server"]["rejected"], {"web_auth": 4})
        self.assertEqual([d["device_id"] for d in document["devices"]], [DEVICE])

        # Each refusal logged, with the user name tried and never the password.
        log = child.text()
        self.assertEqual(log.count("refused web credentials from 127.0.0.1:"), 4, log)
        self.assertIn("for user -: malformed Basic credentials", log)
        self.assertIn("for user mallory: wrong user name or password", log)
        self.assertNotIn("first passworD", log)
        device.sendClose(code=1000)
        await device.closed
        await child.terminate()

    def test_sighup(self) -> Deferred[None]:
        return ensureDeferred(self._sighup())

    async def _sighup(self) -> None:
        child, port = await self.start()
        self.assertEqual((await self.curl(port, "/status", "-u", "alice:first password"))[0],
                         200)
        # A changed password, and a new user: from the next request after SIGHUP.
        htpasswd("-B", "-C", "4", "-b", self.passwords, "alice", "second password")
        htpasswd("-B", "-C", "4", "-b", self.passwords, "bob", "bobs password")
        self.assertEqual((await self.curl(port, "/status", "-u", "alice:first password"))[0],
                         200)
        assert child.transport is not None
        child.transport.signalProcess("HUP")
        await wait_for(lambda: "--web-auth: re-read" in child.text(), 10, "the reload")
        for credentials, status in (("alice:first password", 401),
                                    ("alice:second password", 200),
                                    ("bob:bobs password", 200)):
            self.assertEqual((await self.curl(port, "/metrics", "-u", credentials))[0], status,
                             credentials)

        # An MD5 line: refused with an error, the users read before kept, still serving.
        htpasswd("-m", "-b", self.passwords, "carol", "md5 password")
        child.transport.signalProcess("HUP")
        await wait_for(lambda: "--web-auth: kept the" in child.text(), 10, "the failed reload")
        self.assertIn("line 4: MD5 ($apr1$, htpasswd -m) is refused as weak", child.text())
        self.assertEqual((await self.curl(port, "/status", "-u", "alice:second password"))[0],
                         200)
        self.assertEqual((await self.curl(port, "/status", "-u", "carol:md5 password"))[0], 401)
        self.assertEqual((await self.curl(port, "/", "-f"))[0], 200)
        await child.terminate()

    def test_refused_at_start(self) -> Deferred[None]:
        return ensureDeferred(self._refused_at_start())

    async def _refused_at_start(self) -> None:
        htpasswd("-s", "-b", self.passwords, "dave", "sha1 password")
        child = spawn_twistd(self, self.folder, ["--csv", self.csv, "--web-auth",
                                                  self.passwords])
        with self.assertRaises(RuntimeError):
            await child.listening
        await child.ended
        self.assertIn(f"--web-auth: {self.passwords}: line 3: SHA-1 ({{SHA}}, htpasswd -s) "
                      "is refused as weak", child.text())

    async def disconnect(self, device: FakeDevice) -> None:
        """After a failure: drop the device's connection, if it is still open."""
        if not device.closed.called:
            cast(ITCPTransport, device.transport).abortConnection()
        await device.closed


class PrometheusTests(RealReactorTestCase):
    """The README's scrape block: valid for promtool, and scraping for a real Prometheus."""

    timeout = 90

    def write_config(self, target: str) -> str:
        """The README's block with C{target} and a password file; the config's path."""
        block = scrape_block(readme())
        self.assertIn('targets: ["HOST:5000"]', block)
        self.assertIn("password_file: /etc/prometheus/shellylog.password", block)
        password_file = os.path.join(self.folder, "shellylog.password")
        with open(password_file, "w", encoding="utf-8") as f:
            f.write("scrape-secret\n")
        text = (block.replace("HOST:5000", target)
                .replace("/etc/prometheus/shellylog.password", password_file))
        config = os.path.join(self.folder, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + text)
        return config

    def test_promtool_check_config(self) -> None:
        config = self.write_config("127.0.0.1:5000")
        result = subprocess.run([tool("promtool", "prometheus"), "check", "config", config],
                                capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout + result.stderr)

    def test_prometheus_scrapes(self) -> Deferred[None]:
        return ensureDeferred(self._prometheus_scrapes())

    async def _prometheus_scrapes(self) -> None:
        prometheus = tool("prometheus")
        passwords = os.path.join(self.folder, "htpasswd")
        htpasswd("-B", "-C", "4", "-b", "-c", passwords, "prometheus", "scrape-secret")
        child = spawn_twistd(self, self.folder, ["--csv", self.csv, "--poll", "0",
                                                 "--web-auth", passwords])
        port = await child.listening
        config = self.write_config(f"127.0.0.1:{port}")
        web = free_port()
        server = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{web}",
             f"--storage.tsdb.path={os.path.join(self.folder, 'tsdb')}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop() -> None:
            server.terminate()
            server.wait(30)

        self.addCleanup(stop)
        query = (f"http://127.0.0.1:{web}/api/v1/query?query="
                 "up%7Bjob%3D%22shellylog%22%7D")
        up: list[str] = []

        async def scraped() -> bool:
            out, _, code = await getProcessOutputAndValue(
                tool("curl"), ["-s", query], env=dict(os.environ), reactor=reactor)
            if code != 0:
                return False
            result = json.loads(out).get("data", {}).get("result", [])
            up[:] = [r["value"][1] for r in result]
            return up == ["1"]

        for _ in range(300):
            if await scraped():
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(up, ["1"], child.text())
        # Scraped with the password, and refused nothing.
        self.assertIn('"GET /metrics HTTP/1.1" 200', child.text())
        self.assertNotIn("refused web credentials", child.text())
        await child.terminate()


class SystemdTests(SynchronousTestCase):
    """The README's credential override, in each contrib unit, passes systemd-analyze verify."""

    def test_verify_with_credential(self) -> None:
        analyze = tool("systemd-analyze", "systemd")
        text = readme()
        self.assertIn("LoadCredential=web-auth:/etc/shellylog/htpasswd\n", text)
        self.assertIn(" --web-auth ${CREDENTIALS_DIRECTORY}/web-auth\n", text)
        twistd = Path(sys.executable).parent / "twistd"
        program = str(twistd) if os.access(twistd, os.X_OK) else sys.executable
        copy = Path(self.mktemp())
        copy.mkdir(parents=True)
        names = ["shellylog.socket", "shellylog.service", "shellylog-listen.service"]
        for name in names:
            unit = (UNITS / name).read_text(encoding="utf-8")
            if name.endswith(".service"):
                # The unit's own commented lines, taken in: the credential, the command.
                (credential,) = re.findall(r"^#   (LoadCredential=.*)$", unit, re.M)
                (command,) = re.findall(r"^#   (ExecStart=.*--web-auth .*)$", unit, re.M)
                found = re.search(r"^ExecStart=.*$", unit, re.M)
                assert found is not None, name
                unit = unit[:found.start()] + command + "\n" + credential + unit[found.end():]
                self.assertIn("--web-auth ${CREDENTIALS_DIRECTORY}/web-auth", unit)
            (copy / name).write_text(unit.replace("/opt/shellylog/bin/twistd", program),
                                     encoding="utf-8")
        result = subprocess.run(
            [analyze, "--no-pager", "verify", *(str((copy / n).resolve()) for n in names)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "SYSTEMD_COLORS": "0"}, check=False)
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)
