"""
More than one place for the rows: L{FanOut} hands every tick's rows to each of its sinks
(the CSV file and the database), each of which keeps its own rows waiting.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen
from twisted.logger import Logger

from shellylog.channels import ChannelKey
from shellylog.minutes import RowSink
from shellylog.tracker import Row

log = Logger(namespace="shellylog.sinks")


def within_pending(rows: list[Row], pending: int, max_pending: int) -> tuple[list[Row], int]:
    """
    What a sink may queue of C{rows} while C{pending} rows already wait, at most
    C{max_pending} in all (C{--max-pending}): the oldest that fit, and how many newer ones
    are dropped. Rows already waiting are never dropped for new ones: they are older.
    """
    room = max(max_pending - pending, 0)
    if len(rows) <= room:
        return rows, 0
    return rows[:room], len(rows) - room


@frozen
class FanOut:
    """
    A L{RowSink} of C{sinks}: rows go to each; where to resume is the newest minute any of
    them holds (rule 4: a minute one of them has is never made again, so none gets it
    twice); C{pending} counts the rows waiting in all of them.
    """

    sinks: Sequence[RowSink]

    @property
    def pending(self) -> int:
        return sum(sink.pending for sink in self.sinks)

    @property
    def problem(self) -> str | None:
        """The first sink's problem, of those that have one."""
        return next((sink.problem for sink in self.sinks if sink.problem), None)

    def open(self) -> dict[tuple[str, ChannelKey], int]:
        newest: dict[tuple[str, ChannelKey], int] = {}
        for sink in self.sinks:
            for key, minute in sink.open().items():
                if newest.get(key, minute) <= minute:
                    newest[key] = minute
        return newest

    def write(self, rows: list[Row]) -> None:
        # One sink's failure is its own: the others still get their rows.
        for sink in self.sinks:
            try:
                sink.write(rows)
            except Exception:
                log.failure("a sink failed to take the rows", event="sink_failed")

    def close(self) -> None:
        error: Exception | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                error = error or e
        if error is not None:
            raise error
