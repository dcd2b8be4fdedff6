"""
The whole server as L{shellylog.tap.makeService} wires it (tracker, CSV sink, minute tick,
device factory, site with C{/status} and C{/metrics}), all on one L{Clock}, with devices
connected through L{tests.support.wire.Harness}: nothing touches the network or the real reactor.

Used by the C{/status}, C{/metrics} and log tests.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from prometheus_client.exposition import generate_latest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from shellylog import __version__
from shellylog.csvlog import CsvSink
from shellylog.metrics import MetricsResource
from shellylog.minutes import MinuteService
from shellylog.protocol import ShellyServerFactory
from shellylog.statuspage import public_options, status_report
from shellylog.tap import Options, makeService
from shellylog.tracker import ChannelTracker
from tests.support.wire import Connection, Harness, RawClient, RecordingClient, raw_get

#: A minute boundary: 2027-01-15T08:00:00Z, 09:00 in Berlin.
T0 = 1_800_000_000
assert T0 % 60 == 0


class Stack:
    """
    The service of C{makeService(options.config, reactor=clock)}: the minute tick started,
    the listener not (devices come in through the harness instead, onto the very same site).
    """

    def __init__(self, case: SynchronousTestCase, *args: str, start: float = T0 + 5,
                 csv_text: str | None = None) -> None:
        folder = os.path.abspath(case.mktemp())
        os.makedirs(folder)
        self.csv = os.path.join(folder, "power.csv")
        if csv_text is not None:
            with open(self.csv, "w", encoding="utf-8") as f:
                f.write(csv_text)
        self.harness = Harness(case)
        self.clock = self.harness.clock
        self.clock.advance(start)
        self.options = Options()
        self.options.parseOptions(["--csv", self.csv, "--fsync", "off", "--poll", "0", *args])
        self.config = self.options.config
        self.started_at = self.clock.seconds()
        service = makeService(self.config, reactor=self.clock)
        assert isinstance(service, MultiService)
        (self.minutes,) = [s for s in service if isinstance(s, MinuteService)]
        (listener,) = [s for s in service if isinstance(s, StreamServerEndpointService)]
        site = listener.factory
        assert isinstance(site, Site)
        self.site = site
        factory = site.resource.children[b"ws"].factory
        assert isinstance(factory, ShellyServerFactory)
        self.factory = factory
        self.registry = factory.registry
        assert isinstance(self.registry.sink, ChannelTracker)
        self.tracker: ChannelTracker = self.registry.sink
        assert isinstance(self.minutes.sink, CsvSink)
        self.sink: CsvSink = self.minutes.sink
        # The harness connects its clients to this site and counts on this factory.
        self.harness.site = site
        self.harness.factory = factory
        self.harness.registry = factory.registry
        self.minutes.startService()
        case.addCleanup(self.stop)
        # os.write fails while this is set (see fail_writes).
        self.disk_full = False
        self._case = case
        self._real_write = os.write

    def stop(self) -> None:
        if self.minutes.running:
            self.minutes.stopService()

    # -- devices ----------------------------------------------------------------------

    def connect(self, path: str = "/ws") -> tuple[RecordingClient, Connection]:
        """A device's WebSocket, open (or refused, which the caller checks)."""
        return self.harness.connect_ws(path, protocols=["json-rpc"])

    def send(self, client: RecordingClient, *frames: dict[str, Any] | str) -> None:
        """Send C{frames} (objects as JSON, text as it is) and let the server take them."""
        for frame in frames:
            if isinstance(frame, str):
                client.send_text(frame)
            else:
                client.send_json(frame)
        self.harness.flush()

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass (in one-second steps), moving every connection's bytes."""
        self.harness.advance(seconds)

    def advance_to(self, when: float) -> None:
        self.advance(when - self.clock.seconds())

    # -- the disk ---------------------------------------------------------------------

    def fail_writes(self) -> None:
        """From now on, until C{disk_full} is cleared, every write of the CSV: ENOSPC."""

        def write(fd: int, data: bytes | memoryview) -> int:
            if self.disk_full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._real_write(fd, data)

        self._case.patch(os, "write", write)
        self.disk_full = True

    # -- what it shows ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """C{status_report} of the wired parts, as makeService's C{/status} calls it."""
        return status_report(
            now=self.clock.seconds(), started_at=self.started_at, version=__version__,
            zone=self.config.zone, options=public_options(self.config),
            registry=self.registry, channels=self.factory.channels, tracker=self.tracker,
            sink=self.sink, columns=self.config.columns, instance=self.config.instance,
        )

    def metrics_text(self) -> str:
        """
        What the site's C{/metrics} serves now (in the text format): its own registry, the
        one makeService wired, read as a scrape does (without the thread pool's turn).
        """
        page = self.site.resource.getStaticEntity(b"metrics")
        assert isinstance(page, MetricsResource), page
        return generate_latest(page.registry).decode("utf-8")

    def get(self, path: bytes) -> RawClient:
        """C{GET path} on the site, over an in-memory connection."""
        raw, _ = self.harness.connect_raw(raw_get(path))
        return raw

    def get_status(self) -> dict[str, Any]:
        """C{GET /status}: checked to be a 200 JSON answer, and parsed."""
        raw = self.get(b"/status")
        case = self._case
        case.assertEqual(raw.status_line, b"HTTP/1.1 200 OK")
        case.assertEqual(raw.headers[b"content-type"], b"application/json")
        document: dict[str, Any] = json.loads(raw.body)
        return document
