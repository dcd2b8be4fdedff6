"""
shellylog's CSV files as readings: each row checked and reduced to what a report needs.

Pure: lines in (as a file gives them, each with its C{\\n}), readings out. The command line
opens the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time, timedelta, tzinfo
from fnmatch import fnmatchcase

from attrs import field, frozen

from shellylog.channels import ChannelKey, parse_channel_name
from shellylog.csvlog import EXTRA_COLUMNS, header
from shellylog.rpc import is_safe_id
from shellylog.tracker import MINUTE

#: One row as a report needs it: (UTC epoch minute, device id, channel cell, C{apower_W},
#: C{energy_total_Wh}), a number cell being C{None} when empty. A plain tuple rather than
#: an attrs class: a year of a Pro 4PM is two million rows, and a tuple costs a fraction of
#: an instance.
Reading = tuple[int, str, str, "float | None", "float | None"]

#: The headers shellylog writes (rule 9), and the number of columns of each.
HEADERS = {header(()): 7, header(EXTRA_COLUMNS): 8}

#: Characters of a bad line shown in an error.
SHOWN = 120


class NotShellylogError(Exception):
    """A file that is not a shellylog CSV file; the message names it and what is wrong."""


def columns_of(first_line: str) -> int | None:
    """The number of columns of a file whose first line is C{first_line}, or C{None} if
    that is not a header of shellylog's."""
    return HEADERS.get(first_line.rstrip("\n"))


def is_torn_header(first_line: str) -> bool:
    """Whether C{first_line} is the start of a header cut short by a crash (no line end)."""
    return not first_line.endswith("\n") and any(h.startswith(first_line) for h in HEADERS)


def channel_order(channel: str) -> ChannelKey:
    """Rule 8's order of a channel cell (switches by number, then the other families)."""
    key = parse_channel_name(channel)
    return -1 if key is None else key


@frozen
class RowFilter:
    """
    Which rows a report reads: those of devices matching C{device} (a glob, as C{--allow}),
    of C{channels} (cells as in the CSV; empty: all) and whose minute starts at or after
    C{since} and before C{until} (UTC epoch minutes; C{None}: no bound).
    """

    device: str | None = None
    channels: frozenset[str] = field(default=frozenset())
    since: int | None = None
    until: int | None = None

    def device_ok(self, device: str) -> bool:
        """Whether rows of C{device} are read."""
        return self.device is None or fnmatchcase(device, self.device)

    def channel_ok(self, channel: str) -> bool:
        """Whether rows of C{channel} are read."""
        return not self.channels or channel in self.channels


#: The filter that keeps every row.
EVERY_ROW = RowFilter()


def local_midnight(day: date, zone: tzinfo) -> int:
    """The UTC epoch minute at which C{day} begins in C{zone}."""
    return int(datetime.combine(day, time(0), zone).timestamp()) // MINUTE


def parse_when(text: str, zone: tzinfo, until: bool = False) -> int:
    """
    C{--since}/C{--until} as a UTC epoch minute: a date (C{2026-03-29}) is its local
    midnight in C{zone}, or with C{until} the next one (the day is included); an ISO time
    (C{2026-03-29T02:30}, C{…+01:00}) is that moment (in C{zone} without an offset),
    rounded down to its minute.

    @raise ValueError: if C{text} is neither.
    """
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return local_midnight(day + timedelta(days=1) if until else day, zone)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return math.floor(moment.timestamp() / MINUTE)


def read_rows(
    lines: Iterable[str],
    source: str,
    warn: Callable[[str], None],
    keep: RowFilter = EVERY_ROW,
) -> Iterator[Reading]:
    """
    The readings of one file's C{lines} (each with its C{\\n}) that C{keep} lets through,
    in the file's order. C{source} names the file in messages.

    A last line without its line end (torn by a power loss: shellylog cuts it off at its
    next start) is left out with a C{warn}ing, as is a header cut short.

    @raise NotShellylogError: for a first line that is not shellylog's header, or a row
        that is not one of its rows (naming the line).
    """
    it = iter(lines)
    first = next(it, "")
    if first == "":
        return  # empty: logrotate's `create` made it and shellylog has not written yet
    fields = columns_of(first)
    if fields is None:
        if is_torn_header(first):
            warn(f"{source}: the header is torn (no line end); no rows")
            return
        raise NotShellylogError(
            f"{source}: not a shellylog CSV file: its first line is {first[:SHOWN]!r}, "
            f"expected {header(())!r} (or with ',{EXTRA_COLUMNS[0]}')"
        )
    # Each distinct cell is checked once: a year of a device has a handful of them.
    devices: dict[str, bool] = {}
    channels: dict[str, bool] = {}
    # Rows of one minute share their timestamp: it is parsed once.
    last_stamp = ""
    minute = 0
    since = -(2**62) if keep.since is None else keep.since
    until = 2**62 if keep.until is None else keep.until
    isfinite = math.isfinite
    number = 1
    for line in it:
        number += 1
        if line[-1:] != "\n":
            warn(f"{source}: line {number} is torn (no line end); ignored: {line[:SHOWN]!r}")
            return
        parts = line[:-1].split(",")
        try:
            if len(parts) != fields:
                raise ValueError(f"{len(parts)} columns, expected {fields}")
            stamp = parts[0]
            if stamp != last_stamp:
                moment = datetime.fromisoformat(stamp)
                if moment.tzinfo is None:
                    raise ValueError("a timestamp without its UTC offset")
                minute = int(moment.timestamp()) // MINUTE
                last_stamp = stamp
            device = parts[1]
            wanted = devices.get(device)
            if wanted is None:
                if not is_safe_id(device, None):
                    raise ValueError(f"{device!r} is not a device id")
                wanted = devices[device] = keep.device_ok(device)
            channel = parts[2]
            selected = channels.get(channel)
            if selected is None:
                if parse_channel_name(channel) is None:
                    raise ValueError(f"{channel!r} is not a channel")
                selected = channels[channel] = keep.channel_ok(channel)
            cell = parts[3]
            apower = float(cell) if cell else None
            cell = parts[6]
            energy = float(cell) if cell else None
            if (apower is not None and not isfinite(apower)) or (
                energy is not None and not isfinite(energy)
            ):
                raise ValueError("a number that is not finite")
        except ValueError as e:
            last_stamp = ""
            raise NotShellylogError(
                f"{source}: line {number} is not a shellylog row ({e}): {line[:SHOWN]!r}"
            ) from None
        if wanted and selected and since <= minute < until:
            yield (minute, device, channel, apower, energy)
