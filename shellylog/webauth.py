"""
Who may look (C{--web-auth FILE}): HTTP Basic authentication of the pages that show device
ids, addresses and usage, against an htpasswd file of bcrypt or SHA-512 crypt hashes.

The parts are Twisted's own: an L{ICredentialsChecker} (L{HtpasswdChecker}) behind a
L{Portal} whose realm (L{PageRealm}) hands out the protected page, and
L{twisted.web.guard.HTTPAuthSessionWrapper} with a L{BasicCredentialFactory} that reads the
C{Authorization} header and answers 401 with C{WWW-Authenticate: Basic realm="shellylog"}.
The hashes are checked by libpass (C{passlib}) with pyca's C{bcrypt}: no hand-written crypto.

Hashing is slow by design (bcrypt's cost), so a check runs in a thread, never on the
reactor's; an unknown user name costs the check of a real hash, like a wrong password, so
that the time of the answer does not tell which names exist. Refusals are counted in the
registry's C{rejected} (reason C{web_auth}) and logged within its L{LogBudget}, naming the
peer and the user name tried, never the password.

L{parse_htpasswd} is pure; L{load_htpasswd} reads a file; L{WebAuthReload} re-reads it on
SIGHUP.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from attrs import frozen
from passlib.hash import bcrypt, sha512_crypt
from twisted.application.service import Service
from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from shellylog.logbudget import LogBudget

log = Logger(namespace="shellylog.webauth")

#: The realm of the C{WWW-Authenticate} challenge.
REALM = b"shellylog"

#: What the file may hold, as its error messages say it.
ACCEPTED = ("bcrypt ($2y$, $2b$, $2a$; htpasswd -B) or SHA-512 crypt ($6$; htpasswd -5)")

#: bcrypt reads at most this many bytes of a password; Apache's bcrypt ignores the rest.
BCRYPT_MAX_BYTES = 72

#: Checks waiting for or running in a thread, beyond which a request is refused at once:
#: a flood of guesses must not queue CPU work without end (the checks have threads of
#: their own, L{shellylog.threads.WebThreads}, so the CSV file's fsync never waits for them).
MAX_PENDING_CHECKS = 32

# Hashes refused by name: (prefix or pattern, what it is).
_REFUSED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\$apr1\$"), "MD5 ($apr1$, htpasswd -m) is refused as weak"),
    (re.compile(r"\$1\$"), "MD5 crypt ($1$) is refused as weak"),
    (re.compile(r"\{SHA\}"), "SHA-1 ({SHA}, htpasswd -s) is refused as weak"),
    (re.compile(r"[./0-9A-Za-z]{13}\Z"), "plain crypt (DES, htpasswd -d) is refused as weak"),
    (re.compile(r"\$5\$"), "SHA-256 crypt ($5$, htpasswd -2) is not accepted"),
)

_BCRYPT = re.compile(r"\$2[aby]\$")
_SHA512 = re.compile(r"\$6\$")


class HtpasswdError(ValueError):
    """An htpasswd file that cannot be used; the message names the line (never a hash)."""


@frozen
class WebUsers:
    """
    The users of an htpasswd file: each user name's hash, in the file's order (at least
    one).
    """

    hashes: Mapping[str, str]

    def check(self, user: bytes, password: bytes) -> bool:
        """
        Whether C{password} is C{user}'s (slow: run it in a thread). An unknown user
        (or one whose name is not UTF-8) has the first user's hash checked instead, and
        is refused whatever that says, so that it costs what a wrong password costs.
        Passlib compares the hashes in constant time.
        """
        try:
            name: str | None = user.decode("utf-8")
        except UnicodeDecodeError:
            name = None
        known = name is not None and name in self.hashes
        hashed = self.hashes[name] if known and name is not None else next(
            iter(self.hashes.values()))
        try:
            if _BCRYPT.match(hashed):
                # As Apache does: bcrypt uses the first 72 bytes (pyca's bcrypt refuses more).
                matches = bool(bcrypt.verify(password[:BCRYPT_MAX_BYTES], hashed))
            else:
                matches = bool(sha512_crypt.verify(password, hashed))
        except (ValueError, TypeError):
            # A password passlib will not hash (a NUL byte in it, say): not this user's.
            matches = False
        return known and matches


def _check_hash(number: int, hashed: str) -> None:
    for pattern, scheme, name in ((_BCRYPT, bcrypt, "bcrypt"),
                                  (_SHA512, sha512_crypt, "SHA-512 crypt")):
        if pattern.match(hashed):
            try:
                # A settings string without the checksum parses too: never a password's.
                well_formed = scheme.from_string(hashed).checksum is not None
            except ValueError:
                well_formed = False
            if not well_formed:
                raise HtpasswdError(f"line {number}: not a well-formed {name} hash")
            return
    for pattern, why in _REFUSED:
        if pattern.match(hashed):
            raise HtpasswdError(f"line {number}: {why}; use {ACCEPTED}")
    raise HtpasswdError(f"line {number}: not a hash of an accepted scheme (plain text?); "
                        f"use {ACCEPTED}")


def parse_htpasswd(text: str) -> WebUsers:
    """
    Parse an htpasswd file: one C{user:hash} a line, the hash L{ACCEPTED}; blank lines and
    lines starting with C{#} are skipped.

    @raise HtpasswdError: naming the line that is wrong and why (a line not C{user:hash},
        an empty user name, a user twice, a hash of another scheme, by name for the weak
        ones), or that there is no user.
    """
    hashes: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 2 or not parts[1]:
            raise HtpasswdError(f"line {number}: expected 'user:hash'")
        user, hashed = parts
        if not user:
            raise HtpasswdError(f"line {number}: no user name before ':'")
        if user in hashes:
            raise HtpasswdError(f"line {number}: user {user!r} again "
                                f"(first on line {first_line[user]})")
        _check_hash(number, hashed)
        hashes[user] = hashed
        first_line[user] = number
    if not hashes:
        raise HtpasswdError(f"no user (make one with: htpasswd -B -c FILE USER); use {ACCEPTED}")
    return WebUsers(hashes)


def load_htpasswd(path: str) -> WebUsers:
    """
    L{parse_htpasswd} of the file at C{path}.

    @raise HtpasswdError: the file cannot be read or is not valid; the message starts
        with C{path}.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise HtpasswdError(f"{path}: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError:
        raise HtpasswdError(f"{path}: not UTF-8 text") from None
    try:
        return parse_htpasswd(text)
    except HtpasswdError as e:
        raise HtpasswdError(f"{path}: {e}") from None


class PeerCredentials(UsernamePassword):
    """A user name and password, and the peer that sent them (for the log)."""

    def __init__(self, username: bytes, password: bytes, peer: str) -> None:
        super().__init__(username, password)
        self.peer = peer


def _peer(request: IRequest) -> str:
    address = request.getClientAddress()
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


def _shown(raw: bytes, limit: int = 64) -> str:
    # A peer's bytes, escaped so that no quote or control character reaches the log.
    return ascii(raw[:limit].decode("utf-8", errors="replace"))[1:-1].replace('"', "\\x22")


#: How a check is run in a thread: given the work, a Deferred of its result.
CheckInThread = Callable[[Callable[[], bool]], "Deferred[bool]"]


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    Checks user names and passwords (L{IUsernamePassword}) against L{users}, in a thread
    (C{in_thread}). A refusal is counted in C{rejected} (C{web_auth}; C{web_auth_busy}
    when L{MAX_PENDING_CHECKS} are under way) and logged within C{log_budget}.

    @ivar users: the users now (L{WebUsers}); L{WebAuthReload} replaces them. A check
        uses the users of when it started.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: WebUsers, in_thread: CheckInThread, rejected: Counter[str],
                 log_budget: LogBudget, max_pending: int = MAX_PENDING_CHECKS) -> None:
        self.users = users
        self.in_thread = in_thread
        self.rejected = rejected
        self.log_budget = log_budget
        self.max_pending = max_pending
        #: Checks waiting for or running in a thread.
        self.pending = 0

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """
        The user name of C{credentials} if its password is right; else
        L{error.UnauthorizedLogin}.
        """
        user: bytes = credentials.username
        password: bytes = credentials.password
        peer = getattr(credentials, "peer", "-")
        if self.pending >= self.max_pending:
            return self._refuse("web_auth_busy", peer, user,
                                f"{self.pending} checks under way")
        users = self.users
        self.pending += 1

        def checked(matches: bool) -> Deferred[bytes | tuple[()]]:
            self.pending -= 1
            if matches:
                return succeed(user)
            return self._refuse("web_auth", peer, user, "wrong user name or password")

        def failed(reason: Any) -> Deferred[bytes | tuple[()]]:
            self.pending -= 1
            log.failure("checking a password failed", reason, event="web_auth_error")
            return self._refuse("web_auth", peer, user, "the check failed")

        d = self.in_thread(lambda: users.check(user, password))
        return d.addCallbacks(checked, failed)

    def refused_header(self, peer: str) -> None:
        """Count and log an C{Authorization} header that is not Basic credentials."""
        self._count("web_auth", peer, b"", "malformed Basic credentials")

    def _count(self, reason: str, peer: str, user: bytes, why: str) -> None:
        self.rejected[reason] += 1
        self.log_budget.warn(log, "refused web credentials from {peer} for user {user}: {why}",
                             event="web_auth_refused", peer=peer, user=_shown(user or b"-"),
                             why=why, reason=reason)

    def _refuse(self, reason: str, peer: str, user: bytes, why: str
                ) -> Deferred[bytes | tuple[()]]:
        self._count(reason, peer, user, why)
        return fail(error.UnauthorizedLogin(why))


class PeerCredentialFactory(BasicCredentialFactory):
    """
    Twisted's Basic credentials, with the peer they came from (L{PeerCredentials}); a
    header that is not Basic credentials is counted and logged through the checker.
    """

    def __init__(self, checker: HtpasswdChecker, realm: bytes = REALM) -> None:
        super().__init__(realm)
        self.checker = checker

    def decode(self, response: bytes, request: IRequest) -> PeerCredentials:
        peer = _peer(request)
        try:
            credentials = super().decode(response, request)
        except error.LoginFailed:
            self.checker.refused_header(peer)
            raise
        return PeerCredentials(credentials.username, credentials.password, peer)


@implementer(IRealm)
@frozen
class PageRealm:
    """The realm of one protected page: every user who logs in gets the page."""

    page: IResource

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any
                      ) -> tuple[Any, IResource, Callable[[], None]]:
        if IResource not in interfaces:
            raise NotImplementedError("only IResource")
        return IResource, self.page, lambda: None


def protect(page: IResource, checker: HtpasswdChecker) -> IResource:
    """C{page}, and everything under it, behind HTTP Basic authentication by C{checker}."""
    portal = Portal(PageRealm(page), [checker])
    return HTTPAuthSessionWrapper(portal, [PeerCredentialFactory(checker)])


def protect_pages(pages: Mapping[bytes, IResource], checker: HtpasswdChecker | None
                  ) -> dict[bytes, IResource]:
    """Every page of C{pages} behind L{protect}; as they are if C{checker} is None."""
    if checker is None:
        return dict(pages)
    return {name: protect(page, checker) for name, page in pages.items()}


#: Schedules a call on the reactor's thread (C{reactor.callFromThread}).
CallFromThread = Callable[..., object]


class WebAuthReload(Service):
    """
    SIGHUP re-reads C{path} into C{checker}'s users: a changed password counts from the
    next request. A file that is no longer valid is logged as an error, and the users
    read before are kept. The handler is installed when the service starts and the one
    before it restored when it stops; it only hands the work to the reactor's thread
    (C{call_from_thread}).
    """

    def __init__(self, path: str, checker: HtpasswdChecker,
                 call_from_thread: CallFromThread) -> None:
        self.path = path
        self.checker = checker
        self.call_from_thread = call_from_thread
        # The handler before ours, while ours is installed.
        self._previous: tuple[Any] | None = None

    def startService(self) -> None:
        super().startService()
        self._previous = (signal.signal(signal.SIGHUP, self._signalled),)

    def stopService(self) -> Deferred[None] | None:
        if self._previous is not None:
            (previous,) = self._previous
            # None: a handler not installed from Python, which Python cannot put back.
            signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)
            self._previous = None
        return super().stopService()  # type: ignore[no-any-return]

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        self.call_from_thread(self.reload)

    def reload(self) -> bool:
        """Re-read the file; whether its users are now the checker's."""
        try:
            users = load_htpasswd(self.path)
        except HtpasswdError as e:
            log.error("--web-auth: kept the {count} users read before: {why}",
                      event="web_auth_reload_failed", count=len(self.checker.users.hashes),
                      why=str(e))
            return False
        self.checker.users = users
        log.info("--web-auth: re-read {path}: {count} users", event="web_auth_reloaded",
                 path=self.path, count=len(users.hashes))
        return True
