"""
Tests for L{shellylog.logbudget}: at most so many peer-caused warnings a minute, the rest
summarized once a minute, on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from shellylog.logbudget import LogBudget
from tests.support.logs import capture_log

log = Logger(namespace="shellylog.test")


class LogBudgetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.events = capture_log(self)
        self.budget = LogBudget(self.clock, per_minute=3)

    def warn(self, event: str = "frame_rejected", n: int = 1) -> None:
        for i in range(n):
            self.budget.warn(log, "warning {i}", event=event, i=i)

    def lines(self, event: str) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("event") == event]

    def test_within_budget_all_logged(self) -> None:
        self.warn(n=3)
        self.assertEqual(self.lines("frame_rejected"),
                         ["warning 0", "warning 1", "warning 2"])
        self.clock.advance(120)
        self.assertEqual(self.lines("log_suppressed"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_past_budget_summarized_when_the_minute_ends(self) -> None:
        self.warn(n=3)
        self.clock.advance(10)
        self.warn(n=5)
        self.warn("device_error", n=2)
        self.assertEqual(len(self.lines("frame_rejected")), 3)
        self.clock.advance(49.9)
        self.assertEqual(self.lines("log_suppressed"), [])
        self.clock.advance(0.1)
        (summary,) = [e for e in self.events if e.get("event") == "log_suppressed"]
        self.assertEqual((summary["count"], summary["reasons"]),
                         (7, {"device_error": 2, "frame_rejected": 5}))
        self.assertEqual(
            formatEvent(summary),
            "7 more warnings caused by peers were not logged: "
            "{'device_error': 2, 'frame_rejected': 5}")
        self.assertEqual(self.budget.suppressed_total,
                         {"device_error": 2, "frame_rejected": 5})
        # The next minute has its own budget.
        self.warn(n=4)
        self.assertEqual(len(self.lines("frame_rejected")), 6)
        self.clock.advance(60)
        self.assertEqual([e["count"] for e in self.events if e.get("event") == "log_suppressed"],
                         [7, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush(self) -> None:
        self.warn(n=5)
        self.budget.flush()
        self.assertEqual([e["count"] for e in self.events if e.get("event") == "log_suppressed"],
                         [2])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.budget.flush()
        self.assertEqual(len(self.lines("log_suppressed")), 1)

    def test_clock_going_back_starts_a_new_minute(self) -> None:
        self.warn(n=4)
        self.clock.rightNow -= 3600
        self.warn(n=1)
        self.assertEqual([e["count"] for e in self.events if e.get("event") == "log_suppressed"],
                         [1])
        self.assertEqual(len(self.lines("frame_rejected")), 4)

    def test_zero_logs_only_summaries(self) -> None:
        budget = LogBudget(self.clock, per_minute=0)
        self.assertFalse(budget.allow("x"))
        self.clock.advance(60)
        self.assertEqual([e["count"] for e in self.events if e.get("event") == "log_suppressed"],
                         [1])
