"""
L{PageCache}: a polled page's base taken at most once in its time, each answer encoded
once; and L{shellylog.queryargs}, the query arguments of the JSON pages.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from shellylog.pagecache import PageCache
from shellylog.queryargs import BadQueryError, bad_query_answer, text_arg, whole_arg


class PageCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.bases = 0
        self.builds: list[tuple[int, str]] = []
        self.cache: PageCache[int, str] = PageCache(self.base, self.clock, 1.0, kept=2)

    def base(self) -> int:
        self.bases += 1
        return self.bases

    def build(self, base: int, key: str) -> bytes:
        self.builds.append((base, key))
        return f"{key}@{base}".encode()

    def test_once_in_its_time(self) -> None:
        """Within max_age, one base and each key built once, however often asked."""
        for _ in range(5):
            self.assertEqual(self.cache.answer("a", self.build), b"a@1")
            self.clock.advance(0.19)
        self.assertEqual(self.cache.answer("b", self.build), b"b@1")
        self.assertEqual((self.bases, self.builds), (1, [(1, "a"), (1, "b")]))

    def test_anew_after_its_time(self) -> None:
        self.cache.answer("a", self.build)
        self.clock.advance(1.0)
        self.assertEqual(self.cache.answer("a", self.build), b"a@2")
        self.assertEqual(self.bases, 2)

    def test_clock_back(self) -> None:
        """A clock that went back does not keep an old answer for ever."""
        self.cache.answer("a", self.build)
        self.clock.rightNow -= 3600
        self.assertEqual(self.cache.answer("a", self.build), b"a@2")

    def test_kept_bounded(self) -> None:
        """Past C{kept} keys, the answers kept are dropped: each key is built, none held."""
        for key in "abcde":
            self.cache.answer(key, self.build)
        self.assertEqual(self.cache.answer("e", self.build), b"e@1")
        self.assertEqual(len(self.builds), 5)
        self.cache.answer("a", self.build)
        self.assertEqual(len(self.builds), 6)


def request(**args: list[bytes]) -> IRequest:
    r = DummyRequest([])
    r.args = {k.encode(): v for k, v in args.items()}
    return cast(IRequest, r)


class QueryArgsTests(SynchronousTestCase):
    def test_text(self) -> None:
        self.assertEqual(text_arg(request(q=["pümp".encode()]), "q"), "pümp")
        self.assertIsNone(text_arg(request(), "q"))

    def test_text_twice(self) -> None:
        with self.assertRaises(BadQueryError) as caught:
            text_arg(request(q=[b"a", b"b"]), "q")
        self.assertEqual(str(caught.exception), "q: given 2 times, expected once")

    def test_text_not_utf8(self) -> None:
        with self.assertRaises(BadQueryError) as caught:
            text_arg(request(q=[b"\xff"]), "q")
        self.assertEqual(str(caught.exception), "q: not UTF-8 text")

    def test_whole(self) -> None:
        self.assertEqual(whole_arg(request(limit=[b"10"]), "limit", 5, 1, 100), 10)
        self.assertEqual(whole_arg(request(), "limit", 5, 1, 100), 5)
        self.assertEqual(whole_arg(request(offset=[b"123456789"]), "offset", 0, 0, None),
                         123456789)

    def test_whole_refused(self) -> None:
        for text, maximum, message in [
            (b"0", 100, "limit: a whole number from 1 to 100, got '0'"),
            (b"101", 100, "limit: a whole number from 1 to 100, got '101'"),
            (b"-1", None, "limit: a whole number from 1, got '-1'"),
            (b"1e3", None, "limit: a whole number from 1, got '1e3'"),
            ("\u0663".encode(), None, "limit: a whole number from 1, got '\\xd9\\xa3'"),
            (b"1234567890", None, "limit: a whole number from 1, got '1234567890'"),
        ]:
            with self.assertRaises(BadQueryError) as caught:
                whole_arg(request(limit=[text]), "limit", 5, 1, maximum)
            self.assertEqual(str(caught.exception), message, text)

    def test_answer(self) -> None:
        r = DummyRequest([])
        body = bad_query_answer(cast(IRequest, r), BadQueryError("q: not UTF-8 text"))
        self.assertEqual((r.responseCode, body), (400, b"q: not UTF-8 text\n"))
        self.assertEqual(r.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/plain; charset=utf-8"])
