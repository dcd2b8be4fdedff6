"""
What one C{/api/fleet} document costs for a large fleet: 10,000 devices of 4 logged
channels each by default, half of them running, built from a real registry and tracker.

    python bench/fleet.py [--devices 10000] [--channels 4] [--rounds 15] [--tz Europe/Berlin]

Times, in this process, the building of the document (L{fleet_document}), its encoding
(as L{FleetResource} encodes it) and both together; prints one JSON object of figures on
stdout: the median and the slowest of C{--rounds} rounds, and the body's size. However many
browsers poll, the server builds the document at most once a second
(L{shellylog.dashboard.fleet.FLEET_MAX_AGE}): the median is the reactor time it takes at
most once a second. Run by hand: it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from zoneinfo import ZoneInfo

# This checkout's shellylog, whichever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson
from twisted.internet.task import Clock

from shellylog.channels import ChannelSelection
from shellylog.dashboard.fleet import fleet_document
from shellylog.registry import DeviceRecord, DeviceRegistry
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker

#: 2027-01-15T08:00:00Z, a minute's start.
T0 = 1_800_000_000


def fleet(devices: int, channels: int) -> tuple[Clock, DeviceRegistry, ChannelTracker]:
    """
    The registry and tracker of C{devices} connected devices, after two minutes of
    readings: on every other device, every channel runs (since its first minute, with a
    minute written); on the others, every channel is idle.
    """
    clock = Clock()
    clock.advance(T0 + 5)
    tracker = ChannelTracker(clock=clock, threshold=5, max_carry=10)
    registry = DeviceRegistry(sink=tracker, clock=clock, max_devices=devices)
    ids = [f"shellypro4pm-{n:012x}" for n in range(devices)]
    for n, device_id in enumerate(ids):
        registry.records[device_id] = DeviceRecord(
            device_id, connected=True, connected_since=T0 + 5, last_frame_at=T0 + 5)
        power = 450.0 + n % 100 if n % 2 == 0 else 1.5
        tracker.readings(device_id, {
            c: ChannelValues(apower=power, voltage=230.1, current=1.9, energy_total=100.0)
            for c in range(channels)})
    clock.advance(60)
    tracker.close_completed()
    return clock, registry, tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tz", default="Europe/Berlin")
    args = parser.parse_args()
    zone = ZoneInfo(args.tz)
    started = time.perf_counter()
    clock, registry, tracker = fleet(args.devices, args.channels)
    setup = time.perf_counter() - started
    selection = ChannelSelection.from_specs(range(args.channels))
    build, encode, both = [], [], []
    body = b""
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        document = fleet_document(now=clock.seconds(), zone=zone, tz=args.tz, instance="bench",
                                  registry=registry, tracker=tracker, selection=selection)
        t1 = time.perf_counter()
        body = orjson.dumps(document) + b"\n"
        t2 = time.perf_counter()
        build.append(t1 - t0)
        encode.append(t2 - t1)
        both.append(t2 - t0)
    running = sum(c["running"] for d in document["devices"] for c in d["channels"])
    print(json.dumps({
        "devices": args.devices,
        "channels_per_device": args.channels,
        "channels_running": running,
        "rounds": args.rounds,
        "setup_s": round(setup, 3),
        "build_ms": {"median": round(statistics.median(build) * 1e3, 1),
                     "max": round(max(build) * 1e3, 1)},
        "encode_ms": {"median": round(statistics.median(encode) * 1e3, 1),
                      "max": round(max(encode) * 1e3, 1)},
        "total_ms": {"median": round(statistics.median(both) * 1e3, 1),
                     "max": round(max(both) * 1e3, 1)},
        "body_bytes": len(body),
    }, indent=2))


if __name__ == "__main__":
    main()
