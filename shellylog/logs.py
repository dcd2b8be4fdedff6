"""
A log observer for C{twistd --logger shellylog.logs.json_observer}: every log event as one
line of JSON on standard output (the journal, under systemd), with its fields, such as
C{event}, kept for filtering.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_observer() -> ILogObserver:
    """One JSON object a line on standard output."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
