"""
A JSON page that any number of clients poll, built at most once a second: what its
answers are made of (its I{base}: the C{/status} document, the fleet's device ids) is
taken at most once in C{max_age} seconds, and each answer asked for in that time (a page,
a filter) is encoded once and kept, a few at most.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime

B = TypeVar("B")
K = TypeVar("K", bound=Hashable)


class PageCache(Generic[B, K]):
    """
    The answers of one page, by their key, from a base that C{base} gives at most once in
    C{max_age} seconds on C{clock} (and anew if the clock went back). At most C{kept}
    answers are kept: a peer asking for ever other keys gets each built, but holds no
    memory.
    """

    def __init__(self, base: Callable[[], B], clock: IReactorTime, max_age: float,
                 kept: int) -> None:
        self._base = base
        self._clock = clock
        self._max_age = max_age
        self._kept = kept
        self._current: tuple[B, float] | None = None
        self._answers: dict[K, bytes] = {}

    def answer(self, key: K, build: Callable[[B, K], bytes]) -> bytes:
        """The answer for C{key}: kept, or C{build}'s of the base and the key."""
        now = self._clock.seconds()
        current = self._current
        if current is None or not 0 <= now - current[1] < self._max_age:
            current = self._current = (self._base(), now)
            self._answers.clear()
        body = self._answers.get(key)
        if body is None:
            body = build(current[0], key)
            if len(self._answers) >= self._kept:
                self._answers.clear()
            self._answers[key] = body
        return body
