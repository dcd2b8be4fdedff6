"""
One channel's day, read from the CSV log and its rotated files through the report's own
code: what the dashboard's C{/api/day} shows, equal to what

    shellylog-report --since DAY --until DAY --device ID --channel CH FILES

prints (and, with C{--daily}, the day's energy).

No reactor: the files are read synchronously (the dashboard calls L{channel_day} in a
thread). The day is found without reading the whole log:

 - a file whose time span cannot touch the day is not opened beyond its first row (a
   file's span ends where the next file's begins);
 - in a plain file, the day's first row is found by bisecting byte offsets;
 - reading stops once the rows are safely past the day's end.

Rows are in nondecreasing minute order within one run of the server: the tracker never
reopens a closed minute, even when the clock steps back (rule 4), and missed ticks and
rows that waited for the disk go out in minute order (rule 3). The one exception is a
restart with a clock behind the file's last row (a box without a real-time clock that
restored a saved time, a clock set back while stopped): its first rows are earlier than
the rows before them. The bisection and the stop therefore keep a L{MARGIN}: a row is
taken to be at most that many minutes earlier than any row before it. A larger step back
is seen when the bisection's probes contradict each other, and that file is then read
from its start.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta, tzinfo
from itertools import chain
from typing import BinaryIO

from attrs import frozen

from shellylog.channels import channel_name, parse_channel_name
from shellylog.report.files import file_lines, first_minute, is_gzip
from shellylog.report.rows import NotShellylogError, Reading, RowFilter, local_midnight, read_rows
from shellylog.report.runs import DailyBuilder, Run, RunBuilder
from shellylog.tracker import MINUTE

#: Minutes a row may be earlier than a row written before it (a restart with a clock
#: behind the log: see the module docstring). Three hours: a box restoring the time it
#: saved (fake-hwclock saves it hourly) after a power cut is well inside.
MARGIN = 180

#: The bisection stops when the day's first row is within this many bytes: from there
#: the lines are read (a few hundred rows).
BISECT_STOP = 16 * 1024

#: What logrotate appends to the log's name: C{.1}, C{.2.gz}, or with C{dateext}
#: C{-20261129}, C{-20261129.gz}.
_ROTATED = re.compile(r"(?:\.[0-9]+|-[0-9]{8})(?:\.gz)?")

#: Parsed timestamps kept, as C{read_rows} keeps its last one: a day has 1,440 of them.
_STAMPS_KEPT = 8192

#: A day's minute power: (the start of each minute, in Unix seconds; its C{apower_W}).
Points = tuple[tuple[int, ...], tuple["float | None", ...]]


@frozen
class ChannelDay:
    """
    One channel's local day, as the report makes it.

    @ivar channel: the channel as the CSV names it (C{2}, C{pm1:0}, C{em:0:a}).
    @ivar points: its rows, in time order: each minute's start (Unix seconds) and its
        C{apower_W} (C{None} for an empty cell).
    @ivar runs: its runs, cut at the day's edges (the report's C{--gap 0}).
    @ivar energy_Wh: the day's energy as C{--daily} gives it; C{None} without rows.
    """

    device_id: str
    channel: str
    day: date
    points: Points
    runs: tuple[Run, ...]
    energy_Wh: float | None


def api_channel(name: str) -> tuple[str, str] | None:
    """
    A channel as the dashboard names it (C{switch:0}, C{pm1:0}, C{em:0:a}; or the CSV's
    C{0}) as C{(dashboard name, CSV cell)}; C{None} if it names no channel.
    """
    if name.startswith("switch:"):
        name = name[len("switch:"):]
        if not name.isdigit():
            return None  # "switch:pm1:0"
    key = parse_channel_name(name)
    if key is None or channel_name(key) != name:
        return None  # "007": not as the CSV writes it
    cell = name
    return (f"switch:{cell}" if cell.isdigit() else cell), cell


def _placed(paths: Iterable[str]) -> list[tuple[str, int | None]]:
    """
    C{paths} in time order (as the report's C{in_time_order}), each with the minute of
    its first row; a file that went away meanwhile (logrotate at work) is left out.
    """
    firsts = []
    for index, path in enumerate(paths):
        try:
            first = first_minute(path)
        except NotShellylogError:
            if not os.path.exists(path):
                continue
            raise
        firsts.append((first, index, path))
    firsts.sort(key=lambda f: (-(2**62) if f[0] is None else f[0], f[1]))
    return [(path, first) for first, _, path in firsts]


def log_files(csv_path: str) -> list[str]:
    """
    The CSV file C{csv_path} and its rotated siblings as logrotate leaves them
    (C{PATH.1}, C{PATH.2.gz}, ...; with C{dateext} C{PATH-20261129}, C{PATH-20261129.gz}),
    in time order (by their first rows). None of them need exist.

    @raise NotShellylogError: for one that cannot be read or is not shellylog's.
    """
    folder, base = os.path.split(csv_path)
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        return []
    found = [
        os.path.join(folder, name) for name in names
        if name == base or (name.startswith(base) and _ROTATED.fullmatch(name, len(base)))
    ]
    return [path for path, _ in _placed(found)]


@frozen
class _Day:
    """What is read of every file: the filter, and the bounds with their margins."""

    keep: RowFilter
    since: int
    until: int
    #: A row's cells after its timestamp begin with this: C{device,channel,}.
    prefix: str


def _minute(stamp: str, stamps: dict[str, int]) -> int | None:
    """The UTC epoch minute of a row's timestamp cell; C{None} if it is not one."""
    minute = stamps.get(stamp)
    if minute is None:
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        if len(stamps) >= _STAMPS_KEPT:
            stamps.clear()
        minute = stamps[stamp] = int(moment.timestamp()) // MINUTE
    return minute


def _day_lines(lines: Iterable[str], day: _Day, quiet_torn: bool, past: list[bool],
               stamps: dict[str, int]) -> Iterator[str]:
    """
    The lines of C{lines} that C{read_rows} would keep for C{day}, and any it would
    refuse (to be refused there, with its message); stops at the first row at or after
    C{day.until + MARGIN}, setting C{past[0]}.

    A torn last line is passed on for C{read_rows} to warn about, except with
    C{quiet_torn}: the file the server appends to may end in a line half written.
    """
    since, until, prefix = day.since, day.until, day.prefix
    beyond = until + MARGIN
    for line in lines:
        if line[-1:] != "\n":
            if not quiet_torn:
                yield line
            return
        stamp, _, rest = line.partition(",")
        minute = _minute(stamp, stamps)
        if minute is None:
            yield line  # not a row: read_rows says so
            continue
        if since <= minute < until:
            if rest.startswith(prefix):
                yield line
        elif minute >= beyond:
            past[0] = True
            return


def _bisect(raw: BinaryIO, start: int, first: int, target: int,
            stamps: dict[str, int]) -> int:
    """
    The offset of a line in C{raw} from which on the rows at or after minute
    C{target + MARGIN} are: the start of a row before C{target}, found by bisection, or
    C{start} (the first row's, at minute C{first}).
    """
    size = raw.seek(0, os.SEEK_END)
    lo, hi = start, size
    probes = [(start, first)]
    while hi - lo > BISECT_STOP:
        mid = (lo + hi) // 2
        raw.seek(mid)
        raw.readline()  # the rest of the line the offset fell in
        pos = raw.tell()
        line = raw.readline()
        minute = None
        if pos < hi and line.endswith(b"\n"):
            stamp = line.partition(b",")[0]
            try:
                minute = _minute(stamp.decode("ascii"), stamps)
            except UnicodeDecodeError:
                minute = None
        if minute is not None:
            probes.append((pos, minute))
        if minute is not None and minute < target:
            lo = pos
        else:
            hi = mid
    # Rows out of order by more than the margin, seen by the probes: the bisection's
    # premise does not hold for this file, which is read whole.
    probes.sort()
    highest = -(2**62)
    for _, minute in probes:
        if minute < highest - MARGIN:
            return start
        highest = max(highest, minute)
    return lo


def _read_file(path: str, first: int, day: _Day, warn: Callable[[str], None],
               quiet_torn: bool, past: list[bool], stamps: dict[str, int]
               ) -> list[Reading]:
    """The readings of C{day} in one file."""
    try:
        gzipped = is_gzip(path)
    except OSError as e:
        raise NotShellylogError(f"{path}: cannot be read: {e.strerror or e}") from None
    if gzipped:
        lines = file_lines(path)
        header = next(lines, "")
        return list(read_rows(chain([header], _day_lines(lines, day, quiet_torn, past, stamps)),
                              path, warn, day.keep))
    try:
        with open(path, "rb") as raw:
            header_bytes = raw.readline()
            start = raw.tell()
            offset = _bisect(raw, start, first, day.since - MARGIN, stamps)
            raw.seek(offset)
            # read_rows numbers the lines it is given: say where they begin.
            source = path if offset == start else f"{path} (lines from byte {offset} on)"
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                return list(read_rows(
                    chain([header_bytes.decode("utf-8")],
                          _day_lines(text, day, quiet_torn, past, stamps)),
                    source, warn, day.keep,
                ))
    except OSError as e:
        raise NotShellylogError(f"{path}: cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise NotShellylogError(f"{path}: not a shellylog CSV file: {e}") from None


def channel_day(paths: Sequence[str], device_id: str, channel: str, day: date, zone: tzinfo,
                warn: Callable[[str], None]) -> ChannelDay:
    """
    The local C{day} (in C{zone}: 23, 24 or 25 hours) of C{device_id}'s C{channel} (as
    the CSV names it), from the log's files C{paths} in any order (L{log_files}).

    C{warn} gets the report's warnings (a torn line in a rotated file, rows repeated or
    out of order); a torn last line of the newest file, which the server may be writing,
    is not one.

    @raise NotShellylogError: for a file that cannot be read or is not shellylog's, or a
        row of the day's part of a file that is not a row.
    """
    since = local_midnight(day, zone)
    until = local_midnight(day + timedelta(days=1), zone)
    target = _Day(
        keep=RowFilter(device=device_id, channels=frozenset({channel}), since=since,
                       until=until),
        since=since, until=until, prefix=f"{device_id},{channel},",
    )
    placed = [(path, first) for path, first in _placed(paths) if first is not None]
    readings: list[Reading] = []
    stamps: dict[str, int] = {}
    past = [False]
    for index, (path, first) in enumerate(placed):
        if first >= until + MARGIN:
            break  # this file's rows, and every later file's, are past the day
        following = placed[index + 1][1] if index + 1 < len(placed) else None
        if following is not None and following + MARGIN < since:
            continue  # its rows end before the next file's begin: before the day
        readings.extend(_read_file(path, first, target, warn, index == len(placed) - 1,
                                   past, stamps))
        if past[0]:
            break
    # Rows repeated or out of order are left out of the points as the builders leave
    # them out of the runs and the total (one channel: each must be later than the last).
    times: list[int] = []
    powers: list[float | None] = []
    last = -(2**62)
    for minute, _, _, apower, _ in readings:
        if minute > last:
            times.append(minute * MINUTE)
            powers.append(apower)
            last = minute
    runs_builder = RunBuilder(0)
    runs = tuple(runs_builder.runs(readings))
    totals_builder = DailyBuilder(zone, 0)
    energy = next((t.energy_Wh for t in totals_builder.totals(readings) if t.day == day), None)
    if runs_builder.skipped:
        warn(f"{runs_builder.skipped} rows skipped: not later than the row before them of "
             "their device and channel (files out of order)")
    return ChannelDay(device_id=device_id, channel=channel, day=day,
                      points=(tuple(times), tuple(powers)), runs=runs, energy_Wh=energy)
