"""
The log as tests read it: every event of a test, and what counts as unclean in it.
"""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider


def capture_log(case: SynchronousTestCase) -> list[LogEvent]:
    """Every log event emitted until the end of the test."""
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observer(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


def unclean(events: list[LogEvent], warnings: bool = True) -> list[str]:
    """
    The text of every event that is an error (a failure logged, or the error or critical
    level) and, with C{warnings}, of every warning of shellylog's own.
    """
    return [
        formatEvent(e) + "\n" + str(e.get("log_failure", ""))
        for e in events
        if e.get("log_failure") is not None
        or e.get("isError")
        or e.get("log_level") in (LogLevel.error, LogLevel.critical)
        or (warnings and e.get("log_level") == LogLevel.warn
            and str(e.get("log_namespace", "")).startswith("shellylog"))
    ]


def assert_clean_session(case: SynchronousTestCase, events: list[LogEvent], device: str,
                         code: int) -> None:
    """
    Nothing in C{events} failed, was dropped or refused; C{device} connected once and
    disconnected once, with close code C{code}.
    """
    case.assertEqual(unclean(events), [])
    (connected,) = [e for e in events if e.get("event") == "device_connected"]
    (disconnected,) = [e for e in events if e.get("event") == "device_disconnected"]
    case.assertEqual((connected["device"], disconnected["device"]), (device, device))
    case.assertEqual(disconnected["code"], code)


def warnings_from(events: list[LogEvent], namespace: str = "shellylog.protocol") -> list[str]:
    """The formatted text of every warning (or worse) logged in C{namespace}."""
    return [
        formatEvent(e)
        for e in events
        if e.get("log_namespace") == namespace
        and e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)
    ]
