"""
C{/metrics} once over HTTP on the real reactor, as Prometheus scrapes it (prometheus_client's
Twisted resource renders in the reactor's thread pool), and C{/status} beside it.
"""

from __future__ import annotations

import json
from typing import cast

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.web.client import Agent, readBody

from tests.support.devices import DEVICE, FULL_STATUS, FakeDevice
from tests.support.processes import RealReactorTestCase, client_factory, start_service


class MetricsOverHttpTests(RealReactorTestCase):
    """The real service on a real port: C{/metrics} and C{/status} over HTTP."""

    timeout = 30

    def test_scrape(self) -> Deferred[None]:
        return ensureDeferred(self._scrape())

    async def get(self, port: int, path: str) -> tuple[int, bytes, bytes]:
        """C{GET path}: the status, the content type and the body."""
        agent = Agent(reactor)
        response = await agent.request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
        body = await readBody(response)
        (content_type,) = response.headers.getRawHeaders(b"content-type")
        return response.code, content_type, body

    async def _scrape(self) -> None:
        service, port = await start_service(
            self, ["--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0"]
        )

        code, content_type, body = await self.get(port, "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(content_type.startswith(b"text/plain"), content_type)
        self.assertIn(b"\nshellylog_connected_devices 0.0\n", body)

        # A device connects and reports; the next scrape shows it.
        factory = client_factory(f"ws://127.0.0.1:{port}/ws", FakeDevice, ["json-rpc"])
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        device = cast(FakeDevice, await endpoint.connect(factory))
        self.addCleanup(self.disconnect, device)
        await device.opened
        device.send(FULL_STATUS)
        await device.sync()

        code, content_type, body = await self.get(port, "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(content_type.startswith(b"text/plain"), content_type)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode("utf-8"))
            for s in f.samples
        }
        self.assertEqual(samples[("shellylog_connected_devices", ())], 1)
        self.assertEqual(samples[("shellylog_connections_opened_total", ())], 1)
        self.assertEqual(
            samples[("shellylog_frames_received_total", (("method", "notifyfullstatus"),))], 1
        )

        code, content_type, body = await self.get(port, "/status")
        self.assertEqual((code, content_type), (200, b"application/json"))
        status = json.loads(body)
        (shown,) = status["devices"]
        self.assertEqual(shown["device_id"], DEVICE)
        self.assertTrue(shown["connected"])
        self.assertEqual(shown["channels"]["0"]["apower_W"], 450)
        self.assertEqual(status["server"]["connected_devices"], 1)
        self.assertEqual(status["server"]["options"]["csv"], self.csv)

        device.sendClose(code=1000)
        self.assertTrue(await device.closed)
        await service.stopService()

    def test_channel_metrics(self) -> Deferred[None]:
        """
        The channel's series are served over HTTP with C{--channel-metrics on} (the
        default), and not with C{off}.
        """
        return ensureDeferred(self._channel_metrics())

    async def _channel_metrics(self) -> None:
        for setting, shown in (("on", True), ("off", False)):
            service, port = await start_service(self, [
                "--port", "tcp:0:interface=127.0.0.1", "--csv", self.csv, "--poll", "0",
                "--channel-metrics", setting,
            ])
            factory = client_factory(f"ws://127.0.0.1:{port}/ws", FakeDevice, ["json-rpc"])
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            device = cast(FakeDevice, await endpoint.connect(factory))
            self.addCleanup(self.disconnect, device)
            await device.opened
            device.send(FULL_STATUS)
            await device.sync()
            code, _, body = await self.get(port, "/metrics")
            self.assertEqual(code, 200)
            self.assertIn(b"\nshellylog_connected_devices 1.0\n", body)
            line = (f'\nshellylog_channel_power_watts{{channel="0",device="{DEVICE}"}} 450.0\n'
                    .encode())
            self.assertEqual(line in body, shown, setting)
            self.assertEqual(b"shellylog_channel_" in body, shown, setting)
            device.sendClose(code=1000)
            self.assertTrue(await device.closed)
            await service.stopService()

    async def disconnect(self, device: FakeDevice) -> None:
        """After a failure: drop the device's connection, if it is still open."""
        if not device.closed.called:
            cast(ITCPTransport, device.transport).abortConnection()
        await device.closed
