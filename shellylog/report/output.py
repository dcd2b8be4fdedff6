"""
Runs and daily totals as text (aligned for a terminal), CSV (for a spreadsheet) or JSON
(exact numbers). Pure: records in, lines out, one at a time, so that a report is written
as it is made.

Times are in the report's zone (C{--tz}), with their UTC offset, so that the hour a
daylight-saving change repeats is told apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from functools import partial
from typing import Any

from shellylog.report.runs import DayTotal, Run
from shellylog.tracker import MINUTE

FORMATS = ("text", "csv", "json")

RUN_COLUMNS = (
    "device", "channel", "start", "end", "minutes", "peak_W", "mean_W", "energy_Wh",
    "counter_Wh",
)
DAY_COLUMNS = ("device", "channel", "day", "runs", "minutes", "energy_Wh", "peak_W")

#: Decimals of the numbers in text (W, Wh) and CSV (both): a spreadsheet gets no
#: float noise such as C{0.30000000000000004}; JSON has the exact numbers.
TEXT_W = 1
TEXT_WH = 2
CSV_DECIMALS = 3

#: Widths of the text columns. Ids of Shelly Gen2+ devices are at most 29 characters
#: (C{shellyplusrgbwpm-} and the MAC); a longer id or channel pushes its line out, so that
#: text too is written as it is made rather than after the last run.
_TEXT_RUN = (("device", -29), ("channel", -7), ("start", -22), ("end", -22), ("minutes", 7),
             ("peak_W", 9), ("mean_W", 9), ("energy_Wh", 10), ("counter_Wh", 10))
_TEXT_DAY = (("device", -29), ("channel", -7), ("day", -10), ("runs", 5), ("minutes", 7),
             ("energy_Wh", 10), ("peak_W", 9))


def iso_minute(minute: int, zone: tzinfo) -> str:
    """The start of a UTC epoch minute in C{zone}, as the CSV log writes it."""
    return datetime.fromtimestamp(minute * MINUTE, zone).isoformat()


def run_values(run: Run, zone: tzinfo) -> dict[str, Any]:
    """A run's columns (L{RUN_COLUMNS}), exact, times as ISO 8601 in C{zone}."""
    return {
        "device": run.device,
        "channel": run.channel,
        "start": iso_minute(run.start, zone),
        "end": iso_minute(run.end, zone),
        "minutes": run.minutes,
        "peak_W": run.peak_W,
        "mean_W": run.mean_W,
        "energy_Wh": run.energy_Wh,
        "counter_Wh": run.counter_Wh,
    }


def day_values(total: DayTotal) -> dict[str, Any]:
    """A daily total's columns (L{DAY_COLUMNS}), exact, the day as C{YYYY-MM-DD}."""
    return {
        "device": total.device,
        "channel": total.channel,
        "day": total.day.isoformat(),
        "runs": total.runs,
        "minutes": total.minutes,
        "energy_Wh": total.energy_Wh,
        "peak_W": total.peak_W,
    }


def _text_cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{TEXT_WH if name.endswith('Wh') else TEXT_W}f}"
    if name in ("start", "end"):
        # 2026-10-25T02:30:00+02:00 -> 2026-10-25 02:30+02:00: minutes are what there is.
        return f"{value[:10]} {value[11:16]}{value[19:]}"
    return str(value)


def _text(columns: tuple[tuple[str, int], ...], records: Iterable[dict[str, Any]]
          ) -> Iterator[str]:
    def line(cells: Iterable[tuple[str, int]]) -> str:
        return "  ".join(
            f"{text:<{-width}}" if width < 0 else f"{text:>{width}}" for text, width in cells
        ).rstrip() + "\n"

    yield line((name, width) for name, width in columns)
    for record in records:
        yield line((_text_cell(name, record[name]), width) for name, width in columns)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, CSV_DECIMALS) + 0.0)  # + 0.0: no "-0.0"
    # Device ids, channels and times hold no comma, quote or line break (rule 7).
    return str(value)


def _csv(columns: tuple[str, ...], records: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield ",".join(columns) + "\n"
    for record in records:
        yield ",".join(_csv_cell(record[name]) for name in columns) + "\n"


def _json(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    # An array written one object per line as they come: still one JSON document.
    first = True
    for record in records:
        yield ("[" if first else ",\n") + json.dumps(record)
        first = False
    yield "[]\n" if first else "\n]\n"


def _lines(kind: str, records: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    if fmt == "json":
        return _json(records)
    if kind == "runs":
        return _csv(RUN_COLUMNS, records) if fmt == "csv" else _text(_TEXT_RUN, records)
    return _csv(DAY_COLUMNS, records) if fmt == "csv" else _text(_TEXT_DAY, records)


def run_lines(runs: Iterable[Run], zone: tzinfo, fmt: str = "text") -> Iterator[str]:
    """The report of C{runs} in C{fmt} (L{FORMATS}), line by line, each with its C{\\n}."""
    return _lines("runs", map(partial(run_values, zone=zone), runs), fmt)


def day_lines(totals: Iterable[DayTotal], fmt: str = "text") -> Iterator[str]:
    """The report of daily C{totals} in C{fmt} (L{FORMATS}), line by line."""
    return _lines("days", map(day_values, totals), fmt)
