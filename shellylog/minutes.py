"""
The minute tick: a reactor LoopingCall, aligned to minute boundaries, that takes the
tracker's closed minutes and writes them to the CSV sink ("rule N": C{docs/minute-log.md}).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from shellylog.tracker import MINUTE, ChannelTracker, Row

log = Logger(namespace="shellylog.minutes")


class RowSink(Protocol):
    """
    Where rows go (the CSV file, the database, or both). C{write} keeps what it cannot
    write yet; C{problem} says why rows wait, C{None} while none wait for a failure
    (rows may still be under way, as a database's batch is).
    """

    @property
    def pending(self) -> int: ...

    @property
    def problem(self) -> str | None: ...

    def open(self) -> dict[tuple[str, int], int]: ...

    def write(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


class MinuteService(Service):
    """
    Fires at every minute boundary (and once more at a clean stop, rule 6) and writes
    every minute the tracker closed since the last tick, in order (rule 3).
    """

    def __init__(self, tracker: ChannelTracker, sink: RowSink, clock: IReactorTime,
                 after_tick: Callable[[], None] | None = None) -> None:
        self.tracker = tracker
        #: Called after each tick: what the tick closed may now be forgotten.
        self.after_tick = after_tick
        self.sink = sink
        self.clock = clock
        self._first: IDelayedCall | None = None
        self._loop: LoopingCall | None = None
        #: Seconds the last tick took (processor time measured, not the reactor clock).
        self.last_tick_duration = 0.0
        #: When the last tick ran, on the reactor clock; 0 before the first.
        self.last_tick_at = 0.0

    def startService(self) -> None:
        super().startService()
        # What the file already holds is never written again, across restarts (rule 4).
        for (device_id, channel), minute in self.sink.open().items():
            self.tracker.resume(device_id, channel, minute)
        now = self.clock.seconds()
        delay = MINUTE - (now % MINUTE)
        self._first = self.clock.callLater(delay, self._start_loop)

    def _start_loop(self) -> None:
        self._first = None
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        # LoopingCall keeps to the grid of its start time, which is a minute boundary.
        self._loop.start(MINUTE, now=True)

    def tick(self) -> None:
        """Write the rows of every minute completed since the last tick."""
        started = time.perf_counter()
        self.last_tick_at = self.clock.seconds()
        try:
            rows = self.tracker.close_completed()
            self.sink.write(rows)
            if self.after_tick is not None:
                self.after_tick()
        except Exception:
            # The loop must survive whatever went wrong this minute.
            log.failure("minute tick failed", event="tick_failed")
        else:
            # Rows that wait for the disk are not written: write_failed said so.
            if rows and self.sink.problem is None:
                log.info("{count} rows for the minutes completed", event="rows_written",
                         count=len(rows))
        self.last_tick_duration = time.perf_counter() - started

    def stopService(self) -> None:
        super().stopService()
        if self._first is not None and self._first.active():
            self._first.cancel()
        self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        rows = self.tracker.shutdown()
        try:
            self.sink.write(rows)
        finally:
            self.sink.close()
        if self.sink.pending:
            log.error("stopped with {count} rows that could not be written",
                      event="rows_lost", count=self.sink.pending)
        else:
            log.info("stopped; wrote the {count} rows of the last minutes",
                     event="server_stopped", count=len(rows))
