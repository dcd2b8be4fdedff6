"""
Minutes on the real clock: rows are per minute, so a test on the real reactor makes sure the
minute in progress has room for its exchange before it starts one.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import reactor
from twisted.internet.task import deferLater

# The seconds the exchange and the stop may take, at most, in one minute.
MINUTE_ROOM = 5.0


def minute_now() -> int:
    """The current UTC epoch minute."""
    return int(reactor.seconds() // 60)


def minute_start(minute: int) -> str:
    """The row timestamp of C{minute} in UTC (minute-log rule 7)."""
    return datetime.fromtimestamp(minute * 60, timezone.utc).isoformat()


async def room_in_minute(seconds: float = MINUTE_ROOM) -> None:
    """Return once at least C{seconds} are left in the current minute."""
    left = 60 - reactor.seconds() % 60
    if left < seconds:
        await deferLater(reactor, left + 0.05, lambda: None)
