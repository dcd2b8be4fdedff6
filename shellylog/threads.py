"""
Work that must not run on the reactor's thread: where it runs.

The CSV file's fsync runs in the reactor's own thread pool (L{reactor_threads}). What web
requests ask for (the check of a password, the reading of a day of the CSV log) runs in
L{WebThreads}, a small pool of the service's own: a flood of password guesses or of day
reads waits there, and never delays the minute's fsync behind it.

On a reactor without threads (a test's clock) the work runs at once (L{run_now}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

#: Threads of L{WebThreads}: the machine this runs on may have one or two cores, and a
#: page's work is short; more would only let guesses take more of the CPU.
WEB_THREADS = 2


class RunInThread(Protocol):
    """Runs C{work} away from the reactor's thread; a Deferred of its result."""

    def __call__(self, work: Callable[[], T]) -> Deferred[T]: ...


def run_now(work: Callable[[], T]) -> Deferred[T]:
    """C{work} at once, on the caller's thread: for a reactor without threads."""
    return maybeDeferred(work)


def reactor_threads(reactor: object) -> RunInThread | None:
    """
    The reactor's thread pool, or None on a reactor without threads. The pool is asked
    for at each call: the reactor makes it when it starts running.
    """
    if not IReactorThreads.providedBy(reactor):
        return None
    threads: IReactorThreads = reactor

    def in_thread(work: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(threads, threads.getThreadPool(), work)

    return in_thread


class WebThreads(Service):
    """
    The threads of web requests' work: at most L{WEB_THREADS}, started and stopped with
    the service (stopping waits for the work under way, a fraction of a second). Work
    given before the start waits for it.

    @ivar run: runs work in these threads (or at once, on a reactor without threads).
    """

    def __init__(self, reactor: object, size: int = WEB_THREADS) -> None:
        self.pool: ThreadPool | None = None
        if IReactorThreads.providedBy(reactor) and IReactorFromThreads.providedBy(reactor):
            self.pool = ThreadPool(minthreads=0, maxthreads=size, name="shellylog-web")
            self._reactor: IReactorFromThreads = reactor
            self.run: RunInThread = self._in_pool
        else:
            self.run = run_now

    def _in_pool(self, work: Callable[[], T]) -> Deferred[T]:
        assert self.pool is not None
        return deferToThreadPool(self._reactor, self.pool, work)

    def startService(self) -> None:
        super().startService()
        if self.pool is not None:
            self.pool.start()

    def stopService(self) -> Deferred[None] | None:
        if self.pool is not None:
            self.pool.stop()
        return super().stopService()  # type: ignore[no-any-return]


class OneThread:
    """
    One thread of a writer's own (the database's connection lives in it), so that its
    work runs strictly in order and never waits behind others' (nor they behind it).
    L{start} and L{stop} as the writer opens and closes; L{stop} waits for the work given
    before it. On a reactor without threads the work runs at once.
    """

    def __init__(self, reactor: object, name: str) -> None:
        self.pool: ThreadPool | None = None
        if IReactorThreads.providedBy(reactor) and IReactorFromThreads.providedBy(reactor):
            self.pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
            self._reactor: IReactorFromThreads = reactor

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        """C{work} in the thread; its result (or failure) on the reactor's thread."""
        if self.pool is None:
            return run_now(work)
        return deferToThreadPool(self._reactor, self.pool, work)

    def start(self) -> None:
        if self.pool is not None and not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        """Wait for the work given so far, then end the thread."""
        if self.pool is not None and self.pool.started:
            self.pool.stop()
