"""
The CSV sink: row formatting (pure) and the append-only file it goes to.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import TextIO

from attrs import define, field

from shellylog.status import Number
from shellylog.tracker import MINUTE, Row

HEADER = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh"


def format_number(value: Number | None) -> str:
    """A number as Python writes it (C{repr}, never rounded); missing is an empty cell."""
    return "" if value is None else repr(value)


def minute_timestamp(minute: int, zone: tzinfo) -> str:
    """The start of C{minute} in C{zone}, ISO 8601 with seconds and UTC offset."""
    return datetime.fromtimestamp(minute * MINUTE, zone).isoformat()


def format_rows(rows: Iterable[Row], zone: tzinfo) -> str:
    """
    The CSV text of C{rows}, one C{\\n}-terminated line each.

    Device ids are safe ids (no comma, quote or line break), so no field needs quoting.
    """
    stamps: dict[int, str] = {}
    lines = []
    for row in rows:
        stamp = stamps.get(row.minute)
        if stamp is None:
            stamp = stamps[row.minute] = minute_timestamp(row.minute, zone)
        v = row.values
        lines.append(
            f"{stamp},{row.device_id},{row.channel},{format_number(v.apower)},"
            f"{format_number(v.voltage)},{format_number(v.current)},"
            f"{format_number(v.energy_total)}\n"
        )
    return "".join(lines)


@define
class CsvSink:
    """
    The append-only CSV file. The header is written when the file is missing or empty;
    each L{write} is one write and one flush.
    """

    path: str
    zone: tzinfo
    rows_written: int = 0
    _file: TextIO | None = field(default=None, init=False)

    def open(self) -> None:
        """Open the file for appending, writing the header if it is new or empty."""
        f = self._file = open(self.path, "a", encoding="utf-8", newline="")
        if f.tell() == 0:
            f.write(HEADER + "\n")
            f.flush()

    def write(self, rows: list[Row]) -> None:
        """Append C{rows} in one write, then flush them to the operating system."""
        if not rows:
            return
        if self._file is None:
            self.open()
        assert self._file is not None
        self._file.write(format_rows(rows, self.zone))
        self._file.flush()
        self.rows_written += len(rows)

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

