"""
The minute tick, measured in-process: a L{ChannelTracker} with C{--channels} channels
active in a minute, on a fake clock, and the real L{CsvSink} (fsync as in production).
Each repetition feeds every channel a reading, moves the clock past the minute's end and
times C{close_completed()} (the minute's rows) and C{write()} (format, write, fsync).

    python bench/tick.py [--channels 40000] [--repeat 5]

prints one JSON object of results on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock

from shellylog.csvlog import CsvSink
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker

T0 = 1_800_000_000  # a minute boundary
CHANNELS_PER_DEVICE = 4


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the minute tick.")
    parser.add_argument("--channels", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder of the CSV file (a temporary one)")
    args = parser.parse_args()
    devices = [
        f"shellypro4pm-{n:012x}" for n in range(args.channels // CHANNELS_PER_DEVICE)
    ]
    clock = Clock()
    clock.advance(T0 + 1)
    tracker = ChannelTracker(clock=clock, threshold=5.0, max_carry=10)
    closes, writes, totals = [], [], []
    rows = 0
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "tick.csv")
        sink = CsvSink(path=path, zone=ZoneInfo("Europe/Berlin"))
        sink.open()
        for minute in range(args.repeat):
            for n, device in enumerate(devices):
                # Each channel its own reading, as the server makes them (one per switch:N).
                readings = {}
                for channel in range(CHANNELS_PER_DEVICE):
                    power = 100.0 + (n + minute + 37 * channel) % 400 + 0.5
                    readings[channel] = ChannelValues(
                        power, 230.1, round(power / 230.1, 3), 1234.567 + minute + channel
                    )
                tracker.readings(device, readings)
            clock.advance(60)
            # As in the server, where the heap is large and the collector may run anywhere.
            gc.collect()
            t0 = time.perf_counter()
            closed = tracker.close_completed()
            t1 = time.perf_counter()
            sink.write(closed)
            t2 = time.perf_counter()
            rows = len(closed)
            closes.append(t1 - t0)
            writes.append(t2 - t1)
            totals.append(t2 - t0)
        sink.close()
    print(
        json.dumps(
            {
                "channels": args.channels,
                "rows": rows,
                "tick_ms_median": 1000 * statistics.median(totals),
                "tick_ms_max": 1000 * max(totals),
                "close_ms_median": 1000 * statistics.median(closes),
                "write_ms_median": 1000 * statistics.median(writes),
                "csv_dir": folder,
            }
        )
    )


if __name__ == "__main__":
    main()
