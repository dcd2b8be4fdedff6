"""
A scrape of C{/metrics} with the per-channel series of a large fleet, measured in-process:
a L{ChannelTracker} with C{--channels} channels (Pro 4PMs, four channels each) on a fake
clock, their devices connected, a share C{--running} of the channels running for some
minutes (the rest idle), read by the collector makeService wires (L{ChannelSeries} within
L{ShellylogCollector}) through prometheus_client, as C{/metrics} serves it.

Each repetition times, on one thread (the server runs this in the reactor's thread pool):
C{collect_ms}, the collector making every sample (the part that is shellylog's; the first
scrape, C{collect_ms_first}, makes them all, the others only those whose value changed);
C{text_ms}, the whole scrape in Prometheus' text format, collection included (what
C{prometheus_client}'s C{generate_latest} makes); C{openmetrics_ms}, the same in the
OpenMetrics format (what Prometheus asks for by default); and C{gzip_ms}, compressing the
text (what prometheus_client does when the scraper accepts gzip, as Prometheus does).

    python bench/scrape.py [--channels 40000] [--repeat 5] [--running 0.5]

prints one JSON object of results on stdout.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import CollectorRegistry
from twisted.internet.task import Clock

from shellylog.csvlog import CsvSink
from shellylog.metrics import ChannelSeries, ShellylogCollector
from shellylog.minutes import MinuteService
from shellylog.registry import DeviceRecord, DeviceRegistry
from shellylog.status import ChannelValues
from shellylog.tracker import MINUTE, ChannelTracker

T0 = 1_800_000_000  # a minute boundary
CHANNELS_PER_DEVICE = 4


def fleet(channels: int, running: float) -> tuple[Clock, ChannelTracker, DeviceRegistry]:
    """The tracker and registry of a fleet whose running channels began 3 minutes ago."""
    clock = Clock()
    clock.advance(T0 + 5)
    tracker = ChannelTracker(clock=clock, threshold=5.0, max_carry=10)
    registry = DeviceRegistry(sink=tracker, clock=clock)
    devices = channels // CHANNELS_PER_DEVICE
    every = round(1 / running) if running > 0 else 0
    for number in range(devices):
        device_id = f"shellypro4pm-{number:012x}"
        registry.records[device_id] = DeviceRecord(device_id, connected=True)
        readings = {}
        for channel in range(CHANNELS_PER_DEVICE):
            on = every and (number * CHANNELS_PER_DEVICE + channel) % every == 0
            readings[channel] = ChannelValues(
                apower=450.5 + channel if on else 0.0, voltage=230.1, current=1.95,
                energy_total=12345.678 + number,
            )
        tracker.readings(device_id, readings)
    clock.advance(3 * MINUTE + 20)
    tracker.close_completed()
    return clock, tracker, registry


def timed(f: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    """Milliseconds of each of C{repeat} calls (garbage collected before each) and a result."""
    times = []
    result: object = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = f()
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=40000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--running", type=float, default=0.5,
                        help="share of the channels running (the rest idle)")
    args = parser.parse_args()
    clock, tracker, registry = fleet(args.channels, args.running)
    with tempfile.TemporaryDirectory() as folder:
        sink = CsvSink(path=f"{folder}/bench.csv", zone=ZoneInfo("UTC"), fsync=False)
        minutes = MinuteService(tracker, sink, clock)
        series = ChannelSeries(tracker, clock, keep_after_leaving=10 * MINUTE)
        collector = ShellylogCollector(registry, sink, minutes, channels=series)
        # Before the registry, which collects once when a collector is registered.
        (first_ms,), _ = timed(lambda: list(collector.collect()), 1)
        metrics = CollectorRegistry(auto_describe=True)
        metrics.register(collector)
        collect_ms, families = timed(lambda: list(collector.collect()), args.repeat)
        text_ms, text = timed(lambda: generate_latest(metrics), args.repeat)
        openmetrics_ms, _ = timed(lambda: generate_openmetrics(metrics), args.repeat)
        assert isinstance(text, bytes)
        gzip_ms, packed = timed(lambda: gzip.compress(text), args.repeat)
        assert isinstance(families, list) and isinstance(packed, bytes)
    samples = sum(len(f.samples) for f in families)
    print(json.dumps({
        "channels": args.channels,
        "running": args.running,
        "samples": samples,
        "bytes": len(text),
        "gzip_bytes": len(packed),
        "collect_ms": round(statistics.median(collect_ms), 1),
        # The first scrape makes every sample; later ones reuse those that did not change.
        "collect_ms_first": round(first_ms, 1),
        "text_ms": round(statistics.median(text_ms), 1),
        "openmetrics_ms": round(statistics.median(openmetrics_ms), 1),
        "gzip_ms": round(statistics.median(gzip_ms), 1),
        "text_ms_max": round(max(text_ms), 1),
    }))


if __name__ == "__main__":
    main()
