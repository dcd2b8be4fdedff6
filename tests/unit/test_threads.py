"""
Where work away from the reactor's thread runs: L{shellylog.threads}.
"""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from shellylog.threads import WEB_THREADS, WebThreads, reactor_threads, run_now


def _thread_name() -> str:
    return threading.current_thread().name


class WithoutThreadsTests(TestCase):
    """On a reactor without threads (a test's clock), work runs at once."""

    def test_run_now(self) -> None:
        self.assertEqual(self.successResultOf(run_now(lambda: 7)), 7)

    def test_failure_is_a_failed_deferred(self) -> None:
        self.failureResultOf(run_now(lambda: 1 // 0), ZeroDivisionError)

    def test_web_threads_on_a_clock(self) -> None:
        threads = WebThreads(Clock())
        self.assertIsNone(threads.pool)
        self.assertEqual(self.successResultOf(threads.run(_thread_name)),
                         threading.current_thread().name)

    def test_no_reactor_pool_on_a_clock(self) -> None:
        self.assertIsNone(reactor_threads(Clock()))


class WithThreadsTests(TestCase):
    """On the real reactor: web work runs in threads of its own, apart from the reactor's."""

    def start(self) -> WebThreads:
        threads = WebThreads(reactor)
        threads.startService()
        self.addCleanup(threads.stopService)
        return threads

    def test_in_a_web_thread(self) -> Deferred[None]:
        threads = self.start()

        async def check() -> None:
            name = await threads.run(_thread_name)
            self.assertIn("shellylog-web", name)
            self.assertNotEqual(name, threading.current_thread().name)

        return ensureDeferred(check())

    def test_at_most_its_threads(self) -> Deferred[None]:
        """Work past L{WEB_THREADS} waits for a thread; none is started for it."""
        threads = self.start()
        release = threading.Event()
        started = threading.Semaphore(0)
        names: set[str] = set()

        def blocked() -> None:
            names.add(threading.current_thread().name)
            started.release()
            release.wait(10)

        async def check() -> None:
            work = [threads.run(blocked) for _ in range(WEB_THREADS + 3)]
            for _ in range(WEB_THREADS):
                self.assertTrue(started.acquire(timeout=10))
            self.assertFalse(started.acquire(timeout=0.2))
            release.set()
            for d in work:
                await d
            self.assertEqual(len(names), WEB_THREADS)

        return ensureDeferred(check())

    def test_busy_web_threads_do_not_hold_the_reactor_pool(self) -> Deferred[None]:
        """
        With every web thread held (a flood of password checks, say), the reactor's pool,
        which fsyncs the CSV file, still runs its work at once.
        """
        threads = self.start()
        release = threading.Event()
        held = [threads.run(lambda: release.wait(10)) for _ in range(WEB_THREADS * 4)]
        in_reactor_pool = reactor_threads(reactor)
        assert in_reactor_pool is not None

        async def check() -> None:
            try:
                name = await in_reactor_pool(_thread_name)
                self.assertNotIn("shellylog-web", name)
                self.assertEqual(sum(1 for d in held if d.called), 0)
            finally:
                release.set()
            for d in held:
                self.assertTrue(await d)

        return ensureDeferred(check())
