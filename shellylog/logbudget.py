"""
The log budget: how many warnings peers may cause, across all their connections.

Whatever a peer can make shellylog warn about (a dropped frame, a refused handshake, an
error answer, ...) is logged at most a few times per connection by its caller, and, through
L{LogBudget}, at most C{per_minute} times a minute in all: a thousand peers that misbehave
at once must not push the lines that matter out of the journal (journald drops a service's
lines past its rate limit, 10,000 in 30 s by default). The warnings past the budget are
counted by event, and summarized in one line (C{log_suppressed}) when their minute ends.
The counters of what happened (C{/metrics}) are not affected: they count everything.
The site's access log has a budget of its own (L{ACCESS_LINES_PER_MINUTE}).

No reactor of its own: the clock is given, and is only asked for the time and to call the
summary when the minute ends.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

log = Logger(namespace="shellylog.logbudget")

#: Peer-caused warnings logged per minute, by default.
PER_MINUTE = 60
#: Lines of the HTTP access log per minute, all connections together: a tenth of what
#: journald lets a service write by default (10,000 in 30 s).
ACCESS_LINES_PER_MINUTE = 600
WINDOW = 60.0


class LogBudget:
    """
    At most C{per_minute} warnings in each minute (a window that begins with the first
    warning after the last one ended); the rest are summarized when their window ends.

    @ivar suppressed_total: warnings not logged since start, by event.
    """

    def __init__(self, clock: IReactorTime, per_minute: int = PER_MINUTE,
                 what: str = "warnings caused by peers",
                 summary_level: LogLevel = LogLevel.warn) -> None:
        self.clock = clock
        self.per_minute = per_minute
        #: What the summary says was not logged.
        self.what = what
        #: The level of the summary: that of the lines it stands for.
        self.summary_level = summary_level
        self.suppressed_total: Counter[str] = Counter()
        self._window_start: float | None = None
        self._used = 0
        self._suppressed: Counter[str] = Counter()
        self._summary: IDelayedCall | None = None

    def allow(self, event: str) -> bool:
        """
        Whether a warning of C{event} may be logged now; if not, it is counted for the
        summary.
        """
        now = self.clock.seconds()
        start = self._window_start
        if start is None or not 0 <= now - start < WINDOW:
            # A new minute (or the clock went back): the last one's summary first.
            self.flush()
            self._window_start, self._used = now, 0
            start = now
        if self._used < self.per_minute:
            self._used += 1
            return True
        self.suppress(event)
        return False

    def suppress(self, event: str) -> None:
        """Count a line of C{event} that is not logged (a caller's own limit, say)."""
        now = self.clock.seconds()
        if self._window_start is None or not 0 <= now - self._window_start < WINDOW:
            self.flush()
            self._window_start, self._used = now, 0
        if self._summary is None:
            self._summary = self.clock.callLater(self._window_start + WINDOW - now,
                                                 self._summarize)
        self._suppressed[event] += 1
        self.suppressed_total[event] += 1

    def warn(self, logger: Logger, text: str, *, event: str, **fields: Any) -> None:
        """C{logger.warn(text, event=event, **fields)} if the budget allows it."""
        if self.allow(event):
            logger.warn(text, event=event, **fields)

    def flush(self) -> None:
        """Log the summary of the warnings suppressed so far, if there were any."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summarize()

    def _summarize(self) -> None:
        self._summary = None
        suppressed, self._suppressed = self._suppressed, Counter()
        if suppressed:
            log.emit(self.summary_level, "{count} more {what} were not logged: {reasons}",
                     event="log_suppressed", count=sum(suppressed.values()), what=self.what,
                     reasons=dict(sorted(suppressed.items())))
