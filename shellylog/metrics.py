"""
C{/metrics}: the server's counters in the Prometheus text format, through prometheus_client.

The counters themselves live where they are counted (plain integers and Counters, cheap on
the per-frame path); this collector reads them at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import IResource

if TYPE_CHECKING:
    from shellylog.csvlog import CsvSink
    from shellylog.minutes import MinuteService
    from shellylog.registry import DeviceRegistry


class ShellylogCollector:
    """Reads the counters of the device registry, the CSV sink and the minute tick."""

    def __init__(
        self, registry: DeviceRegistry, sink: CsvSink, minutes: MinuteService
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.minutes = minutes

    def collect(self) -> Iterator[Metric]:
        """One sample of every metric (prometheus_client may call this from a thread)."""
        registry, sink, minutes = self.registry, self.sink, self.minutes
        # dict() copies in one step, safe against the reactor thread adding a key meanwhile.
        received = dict(registry.received)
        rejected = dict(registry.rejected)

        yield GaugeMetricFamily(
            "shellylog_connected_devices", "Devices with an open connection.",
            value=len(registry.devices),
        )
        yield CounterMetricFamily(
            "shellylog_connections_opened", "WebSocket connections opened.",
            value=registry.connections_opened,
        )
        yield CounterMetricFamily(
            "shellylog_connections_closed", "WebSocket connections closed.",
            value=registry.connections_closed,
        )
        yield CounterMetricFamily(
            "shellylog_devices_forgotten",
            "Devices forgotten (--max-devices, or gone for a week).",
            value=registry.devices_forgotten,
        )
        frames = CounterMetricFamily(
            "shellylog_frames_received", "Frames received from devices, by method.",
            labels=["method"],
        )
        for method, count in sorted(received.items()):
            frames.add_metric([method], count)
        yield frames
        bad = CounterMetricFamily(
            "shellylog_frames_rejected", "Frames and connections refused, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(rejected.items()):
            bad.add_metric([reason], count)
        yield bad
        rows = CounterMetricFamily(
            "shellylog_rows_written",
            "CSV rows written, by whether the values were measured in the minute or carried.",
            labels=["kind"],
        )
        carried = sink.rows_written_carried
        rows.add_metric(["measured"], sink.rows_written - carried)
        rows.add_metric(["carried"], carried)
        yield rows
        yield CounterMetricFamily(
            "shellylog_rows_dropped", "Rows lost because --max-pending rows already waited.",
            value=sink.rows_dropped,
        )
        yield CounterMetricFamily(
            "shellylog_write_errors", "Failed writes (or fsyncs) of the CSV file.",
            value=sink.write_errors,
        )
        yield GaugeMetricFamily(
            "shellylog_rows_pending", "Rows waiting for the CSV file to take them.",
            value=sink.pending,
        )
        yield GaugeMetricFamily(
            "shellylog_tick_duration_seconds", "How long the last minute tick took.",
            value=minutes.last_tick_duration,
        )
        yield GaugeMetricFamily(
            "shellylog_last_tick_timestamp_seconds", "Unix time of the last minute tick.",
            value=minutes.last_tick_at,
        )


def metrics_resource(collector: ShellylogCollector) -> IResource:
    """The C{/metrics} resource: prometheus_client's Twisted resource on its own registry."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    resource: IResource = MetricsResource(registry)
    return resource
