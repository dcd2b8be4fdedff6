"""
C{/metrics}: the server's counters in the Prometheus text format, through prometheus_client.

The counters themselves live where they are counted (plain integers and Counters, cheap on
the per-frame path); this collector reads them at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, cast

from attrs import define, field
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample
from twisted.internet.interfaces import IReactorThreads
from twisted.web.resource import IResource
from twisted.web.wsgi import WSGIResource

from shellylog.channels import ChannelKey, channel_name
from shellylog.tracker import MINUTE, ChannelTracker, Clock

if TYPE_CHECKING:
    from shellylog.csvlog import CsvSink
    from shellylog.minutes import MinuteService
    from shellylog.pgsink import PgSink
    from shellylog.registry import DeviceRecord, DeviceRegistry

#: The labels of every per-channel series: the device id and the channel's CSV cell.
CHANNEL_LABELS = ("device", "channel")

#: The value of a cached sample not made yet: unequal to every value, itself included.
_NONE = float("nan")


@define
class ChannelSeries:
    """
    The per-channel series of C{/metrics}: each logged channel's latest power, whether it
    runs, how long its run has lasted, and its device's energy counter; and whether each
    device is connected.

    A device's series are shown while it is connected and for C{keep_after_leaving}
    seconds after it left; then they go, so that a fleet that changes does not leave
    stale series behind for ever.

    Read at scrape time, in prometheus_client's thread: nothing here changes the tracker
    or the registry, and every collection it walks is copied in one step first.

    @ivar tracker: what each channel received, and its runs.
    @ivar clock: now (the reactor, or a test's Clock).
    @ivar keep_after_leaving: seconds a device's series stay after it left.
    """

    tracker: ChannelTracker
    clock: Clock
    keep_after_leaving: float
    # Each shown channel's samples of the last scrape (power, active, run, energy), with
    # its labels: see collect.
    _samples: dict[tuple[str, ChannelKey], list[Sample]] = field(factory=dict, init=False)

    def shown(self, records: Mapping[str, DeviceRecord], now: float) -> list[str]:
        """The devices whose series are shown at C{now}, in the records' order."""
        keep = self.keep_after_leaving
        return [
            device_id for device_id, record in list(records.items())
            if record.connected or (record.left_at is not None and now - record.left_at <= keep)
        ]

    def collect(self, records: Mapping[str, DeviceRecord]) -> Iterator[Metric]:
        """
        Whether each device is connected, then the four channel families, each with a
        sample of every shown channel.
        """
        now = self.clock.seconds()
        tracker = self.tracker
        # Every device known, for as long as its record is kept (--max-devices, a week):
        # "disconnected for 10 minutes" needs it to outlive the channels' series.
        connected = GaugeMetricFamily(
            "shellylog_device_connected",
            "1 while the device has an open connection, 0 once it left.",
            labels=["device"],
        )
        for device_id, record in list(records.items()):
            connected.add_metric([device_id], 1 if record.connected else 0)
        yield connected
        power = GaugeMetricFamily(
            "shellylog_channel_power_watts",
            "Latest power of the channel, watts (negative while a meter exports).",
            labels=CHANNEL_LABELS,
        )
        active = GaugeMetricFamily(
            "shellylog_channel_active",
            "1 while the channel runs (above --threshold, connected, rows being written).",
            labels=CHANNEL_LABELS,
        )
        run = GaugeMetricFamily(
            "shellylog_channel_run_seconds",
            "Seconds since the start of the first minute of the channel's current run of "
            "consecutive minutes with rows; 0 when idle.",
            labels=CHANNEL_LABELS,
        )
        energy = CounterMetricFamily(
            "shellylog_channel_energy_watthours",
            "The device's own energy counter of the channel (aenergy.total or its "
            "family's equivalent), watt-hours.",
            labels=CHANNEL_LABELS,
        )
        # Samples are appended directly, and a channel's sample of the last scrape is
        # used again while its value is the same (as most are, from one scrape to the
        # next): at 40,000 channels, the objects a scrape would make otherwise cost more
        # in garbage collection (of a heap that holds the whole fleet) than to make.
        power_samples, active_samples = power.samples, active.samples
        run_samples, energy_samples = run.samples, energy.samples
        power_name, active_name, run_name = power.name, active.name, run.name
        energy_name = energy.name + "_total"
        # Made anew each scrape from the last one: a channel no longer shown drops out.
        cache = self._samples
        kept: dict[tuple[str, ChannelKey], list[Sample]] = {}
        # In the registry's order (that of the devices' first connection): Prometheus
        # needs no order, and a scrape sorts nothing.
        for device_id in self.shown(records, now):
            for channel, latest, first in tracker.runs(device_id):
                key = (device_id, channel)
                last = cache.get(key)
                if last is None:
                    labels = {"device": device_id, "channel": channel_name(channel)}
                    # Power, active, run, energy; a value no device sends marks "none yet".
                    last = [Sample(power_name, labels, _NONE), Sample(active_name, labels, _NONE),
                            Sample(run_name, labels, _NONE), Sample(energy_name, labels, _NONE)]
                kept[key] = last
                labels = last[0].labels
                value = latest.apower
                if value is not None:
                    if last[0].value != value:
                        last[0] = Sample(power_name, labels, value)
                    power_samples.append(last[0])
                running = 0.0 if first is None else 1.0
                if last[1].value != running:
                    last[1] = Sample(active_name, labels, running)
                active_samples.append(last[1])
                seconds = 0.0 if first is None else max(now - first * MINUTE, 0.0)
                if last[2].value != seconds:
                    last[2] = Sample(run_name, labels, seconds)
                run_samples.append(last[2])
                value = latest.energy_total
                if value is not None:
                    if last[3].value != value:
                        last[3] = Sample(energy_name, labels, value)
                    energy_samples.append(last[3])
        self._samples = kept
        yield power
        yield active
        yield run
        yield energy


class ShellylogCollector:
    """
    Reads the counters of the device registry, the CSV sink and the minute tick, and the
    series of each channel from C{channels} unless that is C{None} (C{--channel-metrics
    off}), and the database sink's, C{shellylog_db_*}, when there is one (C{--db}); and
    names the instance (C{--instance}) in C{shellylog_instance_info} unless C{instance} is
    C{None}.
    """

    def __init__(
        self, registry: DeviceRegistry, sink: CsvSink | PgSink, minutes: MinuteService,
        channels: ChannelSeries | None = None, database: PgSink | None = None,
        instance: str | None = None,
    ) -> None:
        self.registry = registry
        self.database = database
        self.sink = sink
        self.minutes = minutes
        self.channels = channels
        self.instance = instance

    def collect(self) -> Iterator[Metric]:
        """One sample of every metric (prometheus_client may call this from a thread)."""
        registry, sink, minutes = self.registry, self.sink, self.minutes
        # dict() copies in one step, safe against the reactor thread adding a key meanwhile.
        received = dict(registry.received)
        rejected = dict(registry.rejected)

        if self.instance is not None:
            # An info metric, as Prometheus names one: always 1, the name in a label. Not
            # "instance", which Prometheus itself sets to the scrape target's address.
            info = GaugeMetricFamily(
                "shellylog_instance_info", "This instance's name (--instance): always 1.",
                labels=["name"],
            )
            info.add_metric([self.instance], 1)
            yield info
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
        if self.database is not None:
            yield from self._database(self.database)
        if self.channels is not None:
            yield from self.channels.collect(registry.records)

    @staticmethod
    def _database(db: PgSink) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "shellylog_db_up", "1 if the last contact with the database (--db) went well.",
            value=1 if db.up else 0,
        )
        yield CounterMetricFamily(
            "shellylog_db_rows_written", "Rows the database took (committed).",
            value=db.rows_written,
        )
        yield GaugeMetricFamily(
            "shellylog_db_rows_pending", "Rows waiting for the database to take them.",
            value=db.pending,
        )
        yield CounterMetricFamily(
            "shellylog_db_rows_dropped",
            "Rows lost for the database because --max-pending rows already waited.",
            value=db.rows_dropped,
        )
        yield CounterMetricFamily(
            "shellylog_db_write_errors", "Failed attempts to reach or write the database.",
            value=db.write_errors,
        )


class MetricsResource(WSGIResource):
    """
    The C{/metrics} resource: what prometheus_client's Twisted C{MetricsResource} is (its
    WSGI app in the reactor's thread pool), on a registry of its own, which it keeps.

    @ivar registry: what it serves: tests and the benchmark read it as a scrape does.
    """

    def __init__(self, collector: ShellylogCollector) -> None:
        from twisted.internet import reactor

        threads = cast(IReactorThreads, reactor)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        super().__init__(threads, threads.getThreadPool(), make_wsgi_app(self.registry))


def metrics_resource(collector: ShellylogCollector) -> IResource:
    """The C{/metrics} resource of C{collector} (a L{MetricsResource})."""
    resource: IResource = MetricsResource(collector)
    return resource
