"""
The dashboard's day of one channel (L{shellylog.dayview.channel_day}, what C{/api/day}
answers) out of a long log: by default a year of 40 channels (ten Pro 4PMs) running
around the clock, one row per channel and minute (21 million rows, 2 GB, written as the
server writes them), in one plain file or rotated daily.

    python bench/day.py [--days 365] [--channels 40] [--tz Europe/Berlin]
                        [--rotate] [--compare] [--repeat 5]

generates the log in a temporary folder, then times the log's files found and ordered
(L{log_files}) and the day read, for a day in the middle and for the last day (today),
each C{--repeat} times (the file is in the page cache: it was just written). With
C{--compare}, also the report's command line for the middle day (it reads every line)
and whether both give the same runs. Prints one JSON object of figures on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from shellylog.csvlog import header, minute_timestamp
from shellylog.dayview import ChannelDay, channel_day, log_files
from shellylog.report.output import run_lines

#: 2026-01-01T00:00Z, a minute boundary.
START_MINUTE = 1_767_225_600 // 60
CHANNELS_PER_DEVICE = 4

T = TypeVar("T")


def channel_keys(channels: int) -> list[tuple[str, str]]:
    """(device id, channel) of C{channels} channels of Pro 4PMs, in the rows' order."""
    count = -(-channels // CHANNELS_PER_DEVICE)
    return [(f"shellypro4pm-{n:012x}", str(channel)) for n in range(count)
            for channel in range(CHANNELS_PER_DEVICE)][:channels]


def generate(folder: str, days: int, channels: int, zone: ZoneInfo, rotate: bool) -> int:
    """
    Write the log (C{log.csv}, with C{--rotate} one file a day as logrotate leaves them:
    C{log.csv}, C{log.csv.1}, C{log.csv.2.gz}, ...); the number of rows.
    """
    rng = random.Random(14)
    keys = channel_keys(channels)
    loads = [rng.choice([60.0, 450.0, 1200.0, 2000.0]) for _ in keys]
    totals = [rng.uniform(0, 5e4) for _ in keys]
    rows = 0

    def day_file(day: int) -> str:
        age = days - 1 - day
        name = "log.csv" if not rotate or age == 0 else f"log.csv.{age}"
        return os.path.join(folder, name + (".gz" if rotate and age >= 2 else ""))

    out = None
    for day in range(days):
        if out is None or rotate:
            if out is not None:
                out.close()
            path = day_file(day)
            out = (gzip.open(path, "wt", encoding="utf-8", newline="") if path.endswith(".gz")
                   else open(path, "w", encoding="utf-8", newline=""))
            out.write(header() + "\n")
        lines = []
        for minute in range(START_MINUTE + day * 1440, START_MINUTE + (day + 1) * 1440):
            stamp = minute_timestamp(minute, zone)
            for index, (device, channel) in enumerate(keys):
                apower = round(loads[index] * rng.uniform(0.97, 1.03), 1)
                energy = round(totals[index], 3)
                totals[index] += apower / 60
                lines.append(f"{stamp},{device},{channel},{apower},230.1,1.9,{energy}\n")
        out.write("".join(lines))
        rows += len(lines)
    if out is not None:
        out.close()
    return rows


def timed(repeat: int, call: Callable[[], T]) -> tuple[list[float], T]:
    """Seconds of each of C{repeat} calls (at least one), and the last result."""
    seconds = []
    for _ in range(max(repeat, 1)):
        began = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - began)
    return seconds, result


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def figures(seconds: list[float]) -> dict[str, float]:
    """The fastest, median and slowest of C{seconds}."""
    return {"min_s": round(min(seconds), 4), "median_s": round(statistics.median(seconds), 4),
            "max_s": round(max(seconds), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--tz", default="Europe/Berlin")
    parser.add_argument("--rotate", action="store_true",
                        help="one file a day (the older ones gzipped), not one file")
    parser.add_argument("--compare", action="store_true",
                        help="also time the report's command line for the middle day")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    zone = ZoneInfo(options.tz)
    # The last channel of the last device: its rows are at the end of each minute's.
    device, channel = channel_keys(options.channels)[-1]
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        rows = generate(folder, options.days, options.channels, zone, options.rotate)
        generated = time.perf_counter() - began
        csv = os.path.join(folder, "log.csv")
        size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
        first_day = datetime.fromtimestamp(START_MINUTE * 60, zone).date()
        middle = first_day + timedelta(days=options.days // 2)
        today = first_day + timedelta(days=options.days - 1)
        files_s, paths = timed(options.repeat, lambda: log_files(csv))
        results: dict[str, object] = {}
        answers: dict[str, ChannelDay] = {}
        for name, day in (("middle", middle), ("today", today)):
            # As /api/day does: the files found and ordered, then the day read.
            def read(day: date = day) -> ChannelDay:
                return channel_day(log_files(csv), device, channel, day, zone, warn)

            seconds, answer = timed(options.repeat, read)
            answers[name] = answer
            results[name] = {"day": str(day), "points": len(answer.points[0]),
                             **figures(seconds)}
        report: dict[str, object] = {}
        if options.compare:
            args = [sys.executable, "-m", "shellylog.report", "--tz", options.tz,
                    "--since", str(middle), "--until", str(middle), "--device", device,
                    "--channel", channel, "--format", "json", *paths]
            began = time.perf_counter()
            out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
            report = {"report_cli_s": round(time.perf_counter() - began, 2),
                      "same_runs": out == "".join(run_lines(
                          answers["middle"].runs, zone, "json"))}
        print(json.dumps({
            "days": options.days,
            "channels": options.channels,
            "rows": rows,
            "files": len(paths),
            "log_MB": round(size / 1e6, 1),
            "generate_s": round(generated, 1),
            "log_files": figures(files_s),
            "channel_day": results,
            **report,
        }))


if __name__ == "__main__":
    main()
