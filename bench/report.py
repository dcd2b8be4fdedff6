"""
The report on a year of one Pro 4PM: its four channels running around the clock, one row
per channel and minute (2.1 million rows, written as the server writes them), summarized
by C{python -m shellylog.report} as a child process, as people run it.

    python bench/report.py [--days 365] [--tz Europe/Berlin] [--gzip]

generates the file in a temporary folder, times the report of runs and of daily totals
(each the whole command: start, reading, output to a file), and prints one JSON object
of figures on stdout: rows, file size, seconds, the child's peak memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from zoneinfo import ZoneInfo

from shellylog.csvlog import header, minute_timestamp

#: 2026-01-01T00:00Z, a minute boundary.
START_MINUTE = 1_767_225_600 // 60
DEVICE = "shellypro4pm-aabbccddeeff"
CHANNELS = 4


def generate(path: str, days: int, zone: ZoneInfo, gzipped: bool) -> int:
    """Write the file; the number of rows."""
    rng = random.Random(13)
    loads = [450.0, 1200.0, 60.0, 2000.0]
    totals = [rng.uniform(0, 5e4) for _ in loads]
    opener = gzip.open if gzipped else open
    rows = 0
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.write(header() + "\n")
        lines = []
        for minute in range(START_MINUTE, START_MINUTE + days * 1440):
            stamp = minute_timestamp(minute, zone)
            for channel, load in enumerate(loads):
                apower = round(load * rng.uniform(0.97, 1.03), 1)
                # The counter lags a minute behind, as a device's does.
                energy = round(totals[channel], 3)
                totals[channel] += apower / 60
                lines.append(f"{stamp},{DEVICE},{channel},{apower},230.1,"
                             f"{round(apower / 230.1, 3)},{energy}\n")
            if len(lines) >= 40_000:
                f.write("".join(lines))
                rows += len(lines)
                lines = []
        f.write("".join(lines))
        rows += len(lines)
    return rows


def timed(args: list[str], out: str) -> tuple[float, int]:
    """Seconds the report took, and the exit status."""
    with open(out, "w") as f:
        began = time.perf_counter()
        status = subprocess.call([sys.executable, "-m", "shellylog.report", *args], stdout=f)
        return time.perf_counter() - began, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--tz", default="Europe/Berlin")
    parser.add_argument("--gzip", action="store_true", help="the file gzipped")
    options = parser.parse_args()
    zone = ZoneInfo(options.tz)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "shelly_ws_log.csv" + (".gz" if options.gzip else ""))
        began = time.perf_counter()
        rows = generate(path, options.days, zone, options.gzip)
        generated = time.perf_counter() - began
        runs_s, runs_status = timed([path, "--tz", options.tz], os.path.join(folder, "runs"))
        daily_s, daily_status = timed([path, "--tz", options.tz, "--daily"],
                                      os.path.join(folder, "daily"))
        with open(os.path.join(folder, "daily")) as f:
            days = sum(1 for _ in f) - 1
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({
            "rows": rows,
            "file_MB": round(os.path.getsize(path) / 1e6, 1),
            "gzip": options.gzip,
            "generate_s": round(generated, 2),
            "runs_s": round(runs_s, 2),
            "daily_s": round(daily_s, 2),
            "daily_lines": days,
            "exit_status": [runs_status, daily_status],
            "peak_rss_MiB": round(peak_kib / 1024, 1),
        }))


if __name__ == "__main__":
    main()
