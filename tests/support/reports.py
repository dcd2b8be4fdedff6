"""
CSV files for the report's tests, written as the server writes them (timestamps by
L{shellylog.csvlog.minute_timestamp}), and the report run in-process on them.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from shellylog.csvlog import HEADER, minute_timestamp
from shellylog.report.__main__ import main
from shellylog.tracker import MINUTE

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
PRO = "shellypro4pm-aabbccddeeff"
PLUS = "shellyplus1pm-112233445566"


def minute_at(text: str) -> int:
    """The UTC epoch minute of an ISO time with its offset."""
    return int(datetime.fromisoformat(text).timestamp()) // MINUTE


def row(minute: int, device: str = PRO, channel: str = "2", apower: object = 450,
        energy: object = "", zone: tzinfo = BERLIN, extra: str | None = None) -> str:
    """One line of the log (with its C{\\n}); C{extra}: the eighth column's cell."""
    cells = [minute_timestamp(minute, zone), device, channel, str(apower), "230.1", "1.9",
             str(energy)]
    if extra is not None:
        cells.append(extra)
    return ",".join(cells) + "\n"


def csv_text(lines: Iterable[str], header: str = HEADER) -> str:
    """A whole file: the header, then C{lines}."""
    return header + "\n" + "".join(lines)


def run_main(case: SynchronousTestCase, *argv: str) -> tuple[int, str, str]:
    """The report's command line in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    case.patch(sys, "stdout", out)
    case.patch(sys, "stderr", err)
    try:
        status = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        status = int(e.code or 0)
    return status, out.getvalue(), err.getvalue()
