"""
The minute tick, measured in-process: a L{ChannelTracker} with C{--channels} channels
active in a minute, on a fake clock, and the real L{CsvSink}.

Each repetition feeds every channel a reading, moves the clock past the minute's end and
times what blocks the reactor: C{close_completed()} (the minute's rows, C{close_ms}) and
C{write()} (format and write, C{write_ms}); C{tick_ms} is their sum. The fsync after the
write runs as C{--fsync} says: C{thread} (the default, as the server does it) in a worker
thread, outside the timed tick, its own duration reported as C{fsync_ms}; C{inline} in
C{write()}, inside the timed tick (as before the server moved it to a thread); C{off} not
at all. The worker's fsync ends before the next repetition starts, so it never overlaps
a timed tick.

With C{--churn F}, a share F of the devices (a different one each minute) reads 0 W for
the minute, so their channels leave the active set and come back the minute after, as
pumps and heaters in a real fleet switch on and off.

With C{--em-phases F}, a share F of the channels are the phases of Pro 3EMs (C{em:0:a},
C{em:0:b}, C{em:0:c}, three per device, one of them exporting: negative power), the rest
switches of Pro 4PMs: their rows are named and ordered by rule 8.

    python bench/tick.py [--channels 40000] [--repeat 5] [--fsync thread|inline|off]
                         [--churn 0.02] [--em-phases 0.25]

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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from shellylog.channels import channel_key
from shellylog.csvlog import CsvSink
from shellylog.status import ChannelValues
from shellylog.tracker import ChannelTracker

T0 = 1_800_000_000  # a minute boundary
CHANNELS_PER_DEVICE = 4
#: The channel keys of a Pro 3EM's phases a, b, c.
EM_PHASES = tuple(channel_key("em", 0, phase) for phase in (1, 2, 3))


class WorkerThread:
    """
    The sink's C{in_thread}: jobs run in a real thread, timed there; their results are
    handed back by L{wait}, on the bench's thread (which stands in for the reactor's).
    """

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.running: list[tuple[Future[OSError | None], Deferred[OSError | None]]] = []
        self.seconds: list[float] = []

    def _timed(self, f: Callable[[], OSError | None]) -> OSError | None:
        t0 = time.perf_counter()
        try:
            return f()
        finally:
            self.seconds.append(time.perf_counter() - t0)

    def __call__(self, f: Callable[[], OSError | None]) -> Deferred[OSError | None]:
        d: Deferred[OSError | None] = Deferred()
        self.running.append((self.executor.submit(self._timed, f), d))
        return d

    def wait(self) -> None:
        """Wait for every job, and fire its result (which may start another)."""
        while self.running:
            future, d = self.running.pop(0)
            d.callback(future.result())


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the minute tick.")
    parser.add_argument("--channels", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder of the CSV file (a temporary one)")
    parser.add_argument(
        "--fsync", choices=("thread", "inline", "off"), default="thread",
        help="where the fsync after each write runs (thread: as the server does)",
    )
    parser.add_argument(
        "--churn", type=float, default=0.0,
        help="share of devices that are off for a minute, a different share each minute",
    )
    parser.add_argument(
        "--em-phases", type=float, default=0.0,
        help="share of the channels that are Pro 3EM phases (three per device)",
    )
    args = parser.parse_args()
    churn_every = round(1 / args.churn) if args.churn > 0 else 0
    worker = WorkerThread() if args.fsync == "thread" else None
    em_channels = round(args.channels * args.em_phases)
    switch_channels = args.channels - em_channels
    # (device id, its channel keys): Pro 4PMs, then Pro 3EMs.
    devices: list[tuple[str, tuple[int, ...]]] = [
        (f"shellypro4pm-{n:012x}", tuple(range(CHANNELS_PER_DEVICE)))
        for n in range(switch_channels // CHANNELS_PER_DEVICE)
    ] + [
        (f"shellypro3em-{n:012x}", EM_PHASES) for n in range(em_channels // len(EM_PHASES))
    ]
    channels = sum(len(keys) for _, keys in devices)
    clock = Clock()
    clock.advance(T0 + 1)
    tracker = ChannelTracker(clock=clock, threshold=5.0, max_carry=10)
    closes, writes, totals = [], [], []
    rows = 0
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "tick.csv")
        sink = CsvSink(
            path=path, zone=ZoneInfo("Europe/Berlin"), fsync=args.fsync != "off",
            in_thread=worker,
        )
        sink.open()
        for minute in range(args.repeat):
            for n, (device, keys) in enumerate(devices):
                # Each channel its own reading, as the server makes them (one per switch:N,
                # one per phase of em:0).
                readings = {}
                for channel, key in enumerate(keys):
                    power = 100.0 + (n + minute + 37 * channel) % 400 + 0.5
                    if key == EM_PHASES[2]:
                        power = -power  # phase c exports: active all the same
                    if churn_every and (n + minute) % churn_every == 0:
                        power = 0.0
                    readings[key] = ChannelValues(
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
            if worker is not None:
                worker.wait()  # before the next minute: the disk is not busy while timed
        sink.close()
    if worker is not None:
        worker.executor.shutdown()
    print(
        json.dumps(
            {
                "channels": channels,
                "em_phases": em_channels // len(EM_PHASES) * len(EM_PHASES),
                "churn": args.churn,
                "rows": rows,
                "tick_ms_median": 1000 * statistics.median(totals),
                "tick_ms_max": 1000 * max(totals),
                "close_ms_median": 1000 * statistics.median(closes),
                "write_ms_median": 1000 * statistics.median(writes),
                "fsync": args.fsync,
                # Off the reactor thread: not part of tick_ms.
                "fsync_ms_median": (
                    1000 * statistics.median(worker.seconds) if worker and worker.seconds
                    else None
                ),
                "csv_dir": folder,
            }
        )
    )


if __name__ == "__main__":
    main()
