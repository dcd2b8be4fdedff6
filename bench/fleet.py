"""
What one C{/api/fleet} request costs for a large fleet: 10,000 devices of 4 logged
channels each by default, half of them running, built from a real registry and tracker.

    python bench/fleet.py [--devices 10000] [--channels 4] [--rounds 15] [--tz Europe/Berlin]

Times, in this process, one request of L{FleetResource} for the first page, a filtered page
(C{q}, some 256 devices match) and the last page, each the first request of its second
(C{request_ms}: the sorted ids taken, the page built and encoded) and again within the
second (C{same_second_ms}: the page kept); and, for comparison, the whole fleet's document
built and encoded, as C{/api/fleet} was before it had pages (C{before_whole_fleet}). Prints
one JSON object of figures on stdout: the median and the slowest of C{--rounds} rounds, and
the bodies' sizes. However many browsers poll, the server takes the ids and builds each page
asked at most once a second (L{shellylog.dashboard.fleet.FLEET_MAX_AGE}). Run by hand: it is
not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

# This checkout's shellylog, whichever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from shellylog.channels import ChannelSelection
from shellylog.dashboard.fleet import (
    FLEET_MAX_AGE,
    FLEET_PAGE_SIZE,
    FleetQuery,
    FleetResource,
    device_ids,
    fleet_document,
)
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
    # Devices come in any order: the registry's is not the ids' (sorting them is work).
    order = list(range(devices))
    random.Random(1).shuffle(order)
    for n in order:
        device_id = ids[n]
        registry.records[device_id] = DeviceRecord(
            device_id, connected=True, connected_since=T0 + 5, last_frame_at=T0 + 5)
        power = 450.0 + n % 100 if n % 2 == 0 else 1.5
        tracker.readings(device_id, {
            c: ChannelValues(apower=power, voltage=230.1, current=1.9, energy_total=100.0)
            for c in range(channels)})
    clock.advance(60)
    tracker.close_completed()
    return clock, registry, tracker


def timed(rounds: int, f: Callable[[], bytes]) -> tuple[dict[str, float], bytes]:
    """The median and slowest of C{rounds} calls of C{f}, in ms; its last body."""
    times = []
    body = b""
    for _ in range(rounds):
        t0 = time.perf_counter()
        body = f()
        times.append(time.perf_counter() - t0)
    return {"median": round(statistics.median(times) * 1e3, 2),
            "max": round(max(times) * 1e3, 2)}, body


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

    def document(ids: Sequence[str], query: FleetQuery) -> dict[str, Any]:
        return fleet_document(now=clock.seconds(), zone=zone, tz=args.tz, instance="bench",
                              registry=registry,
                              tracker=tracker, selection=selection, query=query, ids=ids)

    # Before: the whole fleet in one document, as /api/fleet was before it had pages.
    whole, whole_body = timed(args.rounds, lambda: orjson.dumps(
        document(device_ids(registry), FleetQuery(0, args.devices))) + b"\n")
    running = sum(c["running"] for d in orjson.loads(whole_body)["devices"]
                  for c in d["channels"])
    resource = FleetResource(document, lambda: device_ids(registry), clock)

    def request(query: dict[bytes, list[bytes]], fresh: bool) -> Callable[[], bytes]:
        def one() -> bytes:
            if fresh:
                # The first request of its second: the ids taken, the page built.
                clock.advance(FLEET_MAX_AGE)
            request = DummyRequest([])
            request.args = query
            body: bytes = resource.render_GET(request)  # type: ignore[arg-type]
            assert request.responseCode is None, body
            return body
        return one

    last = (args.devices - 1) // FLEET_PAGE_SIZE * FLEET_PAGE_SIZE
    pages = {
        "first_page": {},
        # Some 256 of 10,000 ids contain it: a full page of them.
        "filtered_page": {b"q": [b"-0000000001"]},
        "last_page": {b"offset": [b"%d" % last]},
    }
    after: dict[str, Any] = {}
    for name, query in pages.items():
        cold, body = timed(args.rounds, request(query, fresh=True))
        warm, _ = timed(args.rounds, request(query, fresh=False))
        page = orjson.loads(body)
        after[name] = {
            "query": "&".join(f"{k.decode()}={v[0].decode()}" for k, v in query.items()),
            "devices": len(page["devices"]), "total": page["page"]["total"],
            "request_ms": cold, "same_second_ms": warm, "body_bytes": len(body)}
    ids, _ = timed(args.rounds, lambda: b"%d" % len(device_ids(registry)))
    print(json.dumps({
        "devices": args.devices,
        "channels_per_device": args.channels,
        "channels_running": running,
        "rounds": args.rounds,
        "setup_s": round(setup, 3),
        "before_whole_fleet": {"request_ms": whole, "body_bytes": len(whole_body)},
        "sorted_ids_ms": ids,
        "after": after,
    }, indent=2))


if __name__ == "__main__":
    main()
