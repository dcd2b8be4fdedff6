"""
The Prometheus side, with Prometheus' own C{promtool} (Debian package C{prometheus}):
C{contrib/prometheus/alerts.yml} is a valid rule file and its alerts fire at their edges on
fixture series (C{tests/system/prometheus/alerts_test.yml}); and what the real server's
C{/metrics} serves, scraped over HTTP on the real reactor, passes C{promtool check metrics}.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, readBody

from tests.support.devices import FULL_STATUS, FakeDevice
from tests.support.processes import RealReactorTestCase, client_factory, start_service
from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "tests" / "system" / "prometheus" / "alerts_test.yml"


def promtool(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run C{promtool ARGS} (or skip, or in CI fail, without it)."""
    return subprocess.run(
        [tool("promtool", package="prometheus"), *args], input=stdin.decode("utf-8"),
        capture_output=True, text=True, timeout=60, check=False,
    )


class AlertRulesTests(SynchronousTestCase):
    """The rule file users take as it is."""

    def test_check_rules(self) -> None:
        result = promtool("check", "rules", str(ALERTS))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS: 5 rules found", result.stdout)

    def test_rule_tests(self) -> None:
        """Each alert fires at its limit, not a step before, and ends when it should."""
        result = promtool("test", "rules", str(ALERTS_TEST))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)

    def test_every_alert_tested(self) -> None:
        alerts = {line.split(":", 1)[1].strip() for line in ALERTS.read_text().splitlines()
                  if line.strip().startswith("- alert:")}
        tested = {line.split(":", 1)[1].strip()
                  for line in ALERTS_TEST.read_text().splitlines()
                  if line.strip().startswith("alertname:")}
        self.assertEqual(len(alerts), 5)
        self.assertEqual(tested, alerts)


class CheckMetricsTests(RealReactorTestCase):
    """C{promtool check metrics} on what the real server serves at C{/metrics}."""

    timeout = 30

    def test_scrape_passes(self) -> Deferred[None]:
        return ensureDeferred(self._scrape())

    async def _scrape(self) -> None:
        tool("promtool", package="prometheus")
        service, port = await start_service(self, [
            "--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0",
        ])
        factory = client_factory(f"ws://127.0.0.1:{port}/ws", FakeDevice, ["json-rpc"])
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        device = cast(FakeDevice, await endpoint.connect(factory))
        self.addCleanup(self.disconnect, device)
        await device.opened
        device.send(FULL_STATUS)
        await device.sync()

        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{port}/metrics".encode())
        body = await readBody(response)
        self.assertEqual(response.code, 200)
        # Every kind of series is in it: the counters, and a channel's.
        self.assertIn(b"\nshellylog_rows_written_total{", body)
        self.assertIn(b"\nshellylog_channel_power_watts{", body)
        self.assertIn(b"\nshellylog_channel_energy_watthours_total{", body)
        self.assertIn(b"\nshellylog_device_connected{", body)
        result = promtool("check", "metrics", stdin=body)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))

        device.sendClose(code=1000)
        self.assertTrue(await device.closed)
        await service.stopService()

    async def disconnect(self, device: FakeDevice) -> None:
        """After a failure: drop the device's connection, if it is still open."""
        if not device.closed.called:
            cast(ITCPTransport, device.transport).abortConnection()
        await device.closed
