"""
The minute tick: a reactor LoopingCall, aligned to minute boundaries, that takes the
tracker's closed minutes and writes them to the CSV sink.
"""

from __future__ import annotations

from typing import Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from shellylog.tracker import MINUTE, ChannelTracker, Row

log = Logger(namespace="shellylog.minutes")


class RowSink(Protocol):
    """Where rows go (the CSV sink)."""

    def open(self) -> None: ...

    def write(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


class MinuteService(Service):
    """
    Fires at every minute boundary (and once more at a clean stop, rule 6) and writes
    every minute the tracker closed since the last tick, in order (rule 3).
    """

    def __init__(self, tracker: ChannelTracker, sink: RowSink, clock: IReactorTime) -> None:
        self.tracker = tracker
        self.sink = sink
        self.clock = clock
        self._first: IDelayedCall | None = None
        # Rows taken from the tracker that the sink has not accepted yet, oldest first.
        self._unwritten: list[Row] = []
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self.sink.open()
        now = self.clock.seconds()
        delay = MINUTE - (now % MINUTE)
        self._first = self.clock.callLater(delay, self._start_loop)

    def _start_loop(self) -> None:
        self._first = None
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        # LoopingCall keeps to the grid of its start time, which is a minute boundary.
        self._loop.start(MINUTE, now=True)

    def _flush(self, rows: list[Row]) -> int:
        """Write what an earlier tick could not, then C{rows}; keep them all on failure."""
        self._unwritten.extend(rows)
        batch = self._unwritten
        self.sink.write(batch)
        self._unwritten = []
        return len(batch)

    def tick(self) -> None:
        """Write the rows of every minute completed since the last tick."""
        try:
            count = self._flush(self.tracker.close_completed())
        except Exception:
            # The loop must survive whatever went wrong this minute; the rows wait.
            log.failure("minute tick failed; {count} rows wait for the next tick",
                        count=len(self._unwritten))
        else:
            if count:
                log.debug("rows_written {count}", count=count)

    def stopService(self) -> None:
        super().stopService()
        if self._first is not None and self._first.active():
            self._first.cancel()
        self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        try:
            count = self._flush(self.tracker.shutdown())
        finally:
            self.sink.close()
        log.info("stopped; wrote {count} rows of the last minutes", count=count)
