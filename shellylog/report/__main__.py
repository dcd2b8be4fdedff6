"""
The command line of the report: C{python -m shellylog.report CSV...}, or
C{shellylog-report}. It opens the files (plain or gzip), puts them in time order and
writes the report to stdout; warnings go to stderr. See the README, "What did my pump
do?".

Exit status: 0, or 2 for a usage error or a file that is not shellylog's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shellylog.channels import parse_channel_name
from shellylog.report.files import file_lines, in_time_order
from shellylog.report.output import FORMATS, day_lines, run_lines
from shellylog.report.rows import (
    NotShellylogError,
    Reading,
    RowFilter,
    parse_when,
    read_rows,
)
from shellylog.report.runs import DailyBuilder, RunBuilder

PROG = "shellylog-report"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked; a bad value exits with status 2 and a usage message."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="What each channel did, from shellylog's CSV files: its runs (stretches "
        "of minutes with rows), or with --daily its totals per local day.",
    )
    parser.add_argument(
        "files", nargs="+", metavar="CSV",
        help="shellylog CSV files; rotated ones together (log.csv log.csv.1 log.csv.2.gz), "
        "in any order: they are read in time order",
    )
    parser.add_argument("--gap", type=int, default=0, metavar="N",
                        help="join runs apart by at most N minutes without a row (0)")
    parser.add_argument("--daily", action="store_true",
                        help="totals per device, channel and local day instead of runs")
    parser.add_argument("--device", metavar="GLOB",
                        help="only device ids matching GLOB ('shellypro4pm-*')")
    parser.add_argument("--channel", action="append", default=[], metavar="C",
                        help="only channel C, as the CSV names it (2, pm1:0, em:0:a); "
                        "repeatable")
    parser.add_argument("--since", metavar="WHEN",
                        help="only minutes from WHEN: a date (its local midnight) or an "
                        "ISO time (in --tz without an offset)")
    parser.add_argument("--until", metavar="WHEN",
                        help="only minutes before WHEN: a date (that day included) or an "
                        "ISO time")
    parser.add_argument("--tz", default="UTC", metavar="ZONE",
                        help="IANA time zone for the times and days (UTC)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text (aligned, the default), csv or json (exact numbers)")
    args = parser.parse_args(argv)
    if args.gap < 0:
        parser.error("--gap must be 0 or more")
    for channel in args.channel:
        if parse_channel_name(channel) is None:
            parser.error(f"--channel: {channel!r} is not a channel as the CSV names it "
                         "(2, pm1:0, em:0:a)")
    try:
        args.zone = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        parser.error(f"--tz: unknown time zone {args.tz!r}")
    try:
        since = None if args.since is None else parse_when(args.since, args.zone)
        until = None if args.until is None else parse_when(args.until, args.zone, until=True)
    except ValueError:
        parser.error("--since/--until take a date (2026-03-29) or an ISO time "
                     "(2026-03-29T02:30, 2026-03-29T02:30+01:00)")
    args.keep = RowFilter(device=args.device, channels=frozenset(args.channel),
                          since=since, until=until)
    return args


def warn(message: str) -> None:
    """A warning on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def readings(paths: Sequence[str], keep: RowFilter) -> Iterator[Reading]:
    """The readings of every file, one file after the other."""
    for path in paths:
        yield from read_rows(file_lines(path), path, warn, keep)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; the exit status."""
    args = parse_args(argv)
    try:
        paths = in_time_order(args.files)
        builder: RunBuilder | DailyBuilder
        if args.daily:
            builder = DailyBuilder(args.zone, args.gap)
            lines = day_lines(builder.totals(readings(paths, args.keep)), args.format)
        else:
            builder = RunBuilder(args.gap)
            lines = run_lines(builder.runs(readings(paths, args.keep)), args.zone, args.format)
        write = sys.stdout.write
        for line in lines:
            write(line)
    except NotShellylogError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    if builder.skipped:
        warn(f"{builder.skipped} rows skipped: not later than the row before them of their "
             "device and channel (a file given twice, or files out of order)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
