"""
L{shellylog.webauth}: the htpasswd file, the checker, the SIGHUP reload; with hashes made by
Apache's C{htpasswd} (not by the code under test).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from passlib.hash import bcrypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from shellylog import webauth
from shellylog.logbudget import LogBudget
from shellylog.webauth import (
    HtpasswdChecker,
    HtpasswdError,
    PeerCredentials,
    WebAuthReload,
    load_htpasswd,
    parse_htpasswd,
)
from tests.support.logs import capture_log

# Made with Apache's htpasswd 2.4: -B -C 4 (bcrypt) and -5 (SHA-512 crypt).
ALICE = "alice:$2y$04$wYu5gVnf3zJ2Y4FhP.w/hejk0lMc.hpdbQ1TeHHCO/SWnSFyEP/5m"  # correct horse
BOB = ("bob:$6$DXBQm.1grakJJTHS$mgYaYCWZbKu1.7Tt9/oNRgc2PUA9b1AxVt9sy68vDhtyGWi7XeCvq5Zp00loq0"
       "drdXbAs1ZZEaY.DBHmX44A/0")  # hunter2
# Its password: 72 x, then "tail-A"; htpasswd -v accepts "tail-B" too (bcrypt reads 72 bytes).
CAROL = "carol:$2y$04$URFPoSPiCJkkY0tCacv1BerE.Vs4so81ZUKCG0WxfPwZ7gsrY6ZqC"
CAROL_PASSWORD = b"x" * 72 + b"tail-A"
ZOE = "zoë:$2y$04$i/SXk/VSRqlwGI.nY7Sxj.nVQueevKqipIALTuSTAk1bk3igmXdZi"  # pässword
# htpasswd -m, -s, -d, -2, -p of "x".
APR1 = "carol:$apr1$bnWAlu/8$aEV2phWb2Evff5rCejRft/"
SHA1 = "dave:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI="
CRYPT = "eve:VWwWvoUCC6zPo"
SHA256 = "gus:$5$mg5fdIytYVpInCUD$w6DSF2/8f9GTi7neExPL6/YqYj9eGQc35i5COK9I0z0"
PLAIN = "fay:x"

FILE = "\n".join([ALICE, BOB, CAROL, ZOE]) + "\n"


class ParseTests(SynchronousTestCase):
    """L{parse_htpasswd}: what a file may hold, and the errors that name the line."""

    def test_users(self) -> None:
        users = parse_htpasswd("# made with htpasswd\n\n" + FILE)
        self.assertEqual(list(users.hashes), ["alice", "bob", "carol", "zoë"])

    def test_crlf(self) -> None:
        users = parse_htpasswd(ALICE + "\r\n" + BOB + "\r\n")
        self.assertTrue(users.check(b"bob", b"hunter2"))

    def assert_error(self, text: str, *parts: str) -> str:
        with self.assertRaises(HtpasswdError) as caught:
            parse_htpasswd(text)
        message = str(caught.exception)
        for part in parts:
            self.assertIn(part, message)
        return message

    def test_weak_schemes_refused_by_name(self) -> None:
        for line, name in [(APR1, "MD5 ($apr1$"), (SHA1, "SHA-1 ({SHA}"),
                           (CRYPT, "plain crypt"), (SHA256, "SHA-256 crypt ($5$")]:
            message = self.assert_error(ALICE + "\n" + line + "\n", "line 2: ", name,
                                        "bcrypt ($2y$, $2b$, $2a$", "SHA-512 crypt ($6$")
            # The hash itself is never repeated.
            self.assertNotIn(line.split(":", 1)[1], message)

    def test_plain_text(self) -> None:
        self.assert_error(PLAIN, "line 1: not a hash of an accepted scheme (plain text?)",
                          "bcrypt", "SHA-512")

    def test_not_user_hash(self) -> None:
        self.assert_error(ALICE + "\njust a line\n", "line 2: expected 'user:hash'")
        self.assert_error("alice:" + ALICE + "\n", "line 1: expected 'user:hash'")
        self.assert_error("alice:\n", "line 1: expected 'user:hash'")

    def test_no_user_name(self) -> None:
        self.assert_error(ALICE + "\n" + ":" + ALICE.split(":")[1], "line 2: no user name")

    def test_user_twice(self) -> None:
        self.assert_error(ALICE + "\n" + BOB + "\n" + ALICE, "line 3: user 'alice' again",
                          "first on line 1")

    def test_malformed_hash(self) -> None:
        self.assert_error(ALICE[:-5], "line 1: not a well-formed bcrypt hash")
        self.assert_error("bob:$6$", "line 1: not a well-formed SHA-512 crypt hash")
        self.assert_error("bob:$6$saltsalt$", "line 1: not a well-formed SHA-512 crypt hash")
        self.assert_error("alice:$2y$04$wYu5gVnf3zJ2Y4FhP.w/he",
                          "line 1: not a well-formed bcrypt hash")

    def test_no_user(self) -> None:
        self.assert_error("", "no user", "htpasswd -B -c")
        self.assert_error("# nobody yet\n\n", "no user")


class LoadTests(SynchronousTestCase):
    """L{load_htpasswd} names the file."""

    def test_missing(self) -> None:
        path = os.path.abspath(self.mktemp())
        with self.assertRaises(HtpasswdError) as caught:
            load_htpasswd(path)
        self.assertEqual(str(caught.exception),
                         f"{path}: cannot read it: No such file or directory")

    def test_invalid(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(ALICE + "\n" + APR1 + "\n")
        with self.assertRaises(HtpasswdError) as caught:
            load_htpasswd(path)
        self.assertTrue(str(caught.exception).startswith(f"{path}: line 2: MD5"))

    def test_not_utf8(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff" + ALICE.encode() + b"\n")
        with self.assertRaises(HtpasswdError) as caught:
            load_htpasswd(path)
        self.assertEqual(str(caught.exception), f"{path}: not UTF-8 text")

    def test_valid(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(FILE)
        self.assertEqual(load_htpasswd(path), parse_htpasswd(FILE))


class CheckTests(SynchronousTestCase):
    """L{WebUsers.check}: the hashes Apache made, checked as Apache checks them."""

    users = parse_htpasswd(FILE)

    def test_bcrypt(self) -> None:
        self.assertTrue(self.users.check(b"alice", b"correct horse"))
        self.assertFalse(self.users.check(b"alice", b"correct horsE"))
        self.assertFalse(self.users.check(b"alice", b""))

    def test_sha512_crypt(self) -> None:
        self.assertTrue(self.users.check(b"bob", b"hunter2"))
        self.assertFalse(self.users.check(b"bob", b"hunter3"))

    def test_utf8(self) -> None:
        self.assertTrue(self.users.check("zoë".encode(), "pässword".encode()))
        self.assertFalse(self.users.check("zoë".encode("latin-1"), "pässword".encode()))

    def test_bcrypt_reads_72_bytes(self) -> None:
        """As Apache's htpasswd -v does (pyca's bcrypt alone refuses a longer password)."""
        self.assertTrue(self.users.check(b"carol", CAROL_PASSWORD))
        self.assertTrue(self.users.check(b"carol", b"x" * 72 + b"tail-B"))
        self.assertFalse(self.users.check(b"carol", b"x" * 71))

    def test_not_a_user(self) -> None:
        # A user name that differs only in case, or a password of another user.
        self.assertFalse(self.users.check(b"Alice", b"correct horse"))
        self.assertFalse(self.users.check(b"bob", b"correct horse"))

    def test_nul_in_password(self) -> None:
        self.assertFalse(self.users.check(b"bob", b"hunter2\x00"))
        self.assertFalse(self.users.check(b"alice", b"correct\x00horse"))

    def test_unknown_user_costs_a_hash(self) -> None:
        """
        An unknown user (or a name that is not UTF-8) has a real hash checked, as a
        known one with a wrong password: the time of the answer does not tell them apart.
        """
        checked: list[str] = []
        real = bcrypt.verify

        def verify(secret: bytes, hashed: str) -> bool:
            checked.append(hashed)
            return bool(real(secret, hashed))

        self.patch(bcrypt, "verify", verify)
        # The first user's password, given for a user who does not exist: still refused.
        self.assertFalse(self.users.check(b"mallory", b"correct horse"))
        self.assertFalse(self.users.check(b"\xff", b"x"))
        self.assertFalse(self.users.check(b"alice", b"wrong"))
        alice = ALICE.split(":", 1)[1]
        self.assertEqual(checked, [alice, alice, alice])


class Threads:
    """An C{in_thread} that keeps the work until told to run it (the thread's turn)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], bool], Deferred[bool]]] = []

    def __call__(self, work: Callable[[], bool]) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self.waiting.append((work, d))
        return d

    def run(self) -> None:
        waiting, self.waiting = self.waiting, []
        for work, d in waiting:
            d.callback(work())


def _result(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


class CheckerTests(SynchronousTestCase):
    """L{HtpasswdChecker}: in a thread, counted, logged within the budget."""

    def setUp(self) -> None:
        self.threads = Threads()
        self.rejected: Counter[str] = Counter()
        self.clock = Clock()
        self.budget = LogBudget(self.clock, per_minute=3)
        self.checker = HtpasswdChecker(parse_htpasswd(FILE), self.threads, self.rejected,
                                       self.budget, max_pending=2)
        self.events = capture_log(self)

    def login(self, user: bytes, password: bytes, peer: str = "192.0.2.7:40000") -> list[Any]:
        return _result(self.checker.requestAvatarId(PeerCredentials(user, password, peer)))

    def refusals(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("event") == "web_auth_refused"]

    def test_right_password_in_a_thread(self) -> None:
        result = self.login(b"alice", b"correct horse")
        # Nothing is checked on the reactor's thread.
        self.assertEqual(result, [])
        self.threads.run()
        self.assertEqual(result, [b"alice"])
        self.assertEqual(self.rejected, Counter())
        self.assertEqual(self.refusals(), [])

    def test_wrong_password(self) -> None:
        result = self.login(b"alice", b"s3cret-guess")
        self.threads.run()
        self.assertTrue(result[0].check(UnauthorizedLogin))
        self.assertEqual(self.rejected, Counter(web_auth=1))
        (line,) = self.refusals()
        self.assertEqual(line, "refused web credentials from 192.0.2.7:40000 for user alice: "
                         "wrong user name or password")
        self.assertNotIn("s3cret-guess", repr(self.events))

    def test_unknown_user(self) -> None:
        result = self.login(b"mallory\n\"x", b"correct horse")
        self.threads.run()
        self.assertTrue(result[0].check(UnauthorizedLogin))
        self.assertEqual(self.rejected, Counter(web_auth=1))
        # The name tried, escaped: no line break or quote of the peer's reaches the log.
        (line,) = self.refusals()
        self.assertIn("for user mallory\\n\\x22x:", line)

    def test_plain_credentials(self) -> None:
        """Credentials without a peer (another factory's) are checked all the same."""
        result = _result(self.checker.requestAvatarId(UsernamePassword(b"bob", b"hunter2")))
        self.threads.run()
        self.assertEqual(result, [b"bob"])

    def test_log_budget(self) -> None:
        """Every refusal is counted; the lines are not more than the budget allows."""
        for _ in range(5):
            self.login(b"alice", b"guess")
            self.threads.run()
        self.assertEqual(self.rejected, Counter(web_auth=5))
        self.assertEqual(len(self.refusals()), 3)
        self.assertEqual(self.budget.suppressed_total, Counter(web_auth_refused=2))

    def test_busy(self) -> None:
        """
        Beyond C{max_pending} checks under way a request is refused at once, without
        queueing more work for the threads.
        """
        first = self.login(b"alice", b"correct horse")
        self.login(b"alice", b"guess")
        third = self.login(b"alice", b"correct horse")
        self.assertTrue(third[0].check(UnauthorizedLogin))
        self.assertEqual(len(self.threads.waiting), 2)
        self.assertEqual(self.rejected, Counter(web_auth_busy=1))
        self.threads.run()
        self.assertEqual(first, [b"alice"])
        self.assertEqual(self.checker.pending, 0)
        # Room again.
        fourth = self.login(b"alice", b"correct horse")
        self.threads.run()
        self.assertEqual(fourth, [b"alice"])

    def test_check_fails(self) -> None:
        """A check that raises is a refusal (and logged as a failure), never a login."""

        def broken(work: Callable[[], bool]) -> Deferred[bool]:
            raise_it: Deferred[bool] = Deferred()
            raise_it.errback(RuntimeError("thread pool stopped"))
            return raise_it

        self.checker.in_thread = broken
        result = self.login(b"alice", b"correct horse")
        self.assertTrue(result[0].check(UnauthorizedLogin))
        self.assertEqual(self.rejected, Counter(web_auth=1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.checker.pending, 0)

    def test_users_of_when_the_check_started(self) -> None:
        result = self.login(b"bob", b"hunter2")
        self.checker.users = parse_htpasswd(ALICE)
        self.threads.run()
        self.assertEqual(result, [b"bob"])
        again = self.login(b"bob", b"hunter2")
        self.threads.run()
        self.assertTrue(again[0].check(UnauthorizedLogin))


class ReloadTests(SynchronousTestCase):
    """L{WebAuthReload}: SIGHUP re-reads the file; a broken file keeps the users."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(ALICE + "\n")
        self.checker = HtpasswdChecker(load_htpasswd(self.path), lambda w: succeed(w()),
                                       Counter(), LogBudget(Clock()))
        self.calls: list[Callable[[], object]] = []
        self.service = WebAuthReload(self.path, self.checker, self.calls.append)
        self.events = capture_log(self)

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def works(self, user: bytes, password: bytes) -> bool:
        result = _result(self.checker.requestAvatarId(UsernamePassword(user, password)))
        return result == [user]

    def test_reload(self) -> None:
        self.assertTrue(self.works(b"alice", b"correct horse"))
        self.write(BOB + "\n")
        self.assertTrue(self.service.reload())
        self.assertFalse(self.works(b"alice", b"correct horse"))
        self.assertTrue(self.works(b"bob", b"hunter2"))
        (event,) = [e for e in self.events if e.get("event") == "web_auth_reloaded"]
        self.assertEqual(event["count"], 1)

    def test_invalid_file_keeps_users(self) -> None:
        self.write(ALICE + "\n" + APR1 + "\n")
        self.assertFalse(self.service.reload())
        self.assertTrue(self.works(b"alice", b"correct horse"))
        (event,) = [e for e in self.events if e.get("event") == "web_auth_reload_failed"]
        self.assertEqual(formatEvent(event),
                         f"--web-auth: kept the 1 users read before: {self.path}: line 2: MD5 "
                         f"($apr1$, htpasswd -m) is refused as weak; use {webauth.ACCEPTED}")
        os.remove(self.path)
        self.assertFalse(self.service.reload())
        self.assertTrue(self.works(b"alice", b"correct horse"))

    def test_sighup(self) -> None:
        """
        The handler is installed while the service runs, hands the reload to the
        reactor's thread, and the one before it is back after.
        """
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        self.service.startService()
        self.addCleanup(lambda: self.service.running and self.service.stopService())
        self.write(BOB + "\n")
        os.kill(os.getpid(), signal.SIGHUP)
        # Only handed over: nothing read in the handler.
        self.assertEqual(self.calls, [self.service.reload])
        self.assertTrue(self.works(b"alice", b"correct horse"))
        self.calls[0]()
        self.assertTrue(self.works(b"bob", b"hunter2"))
        self.service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

