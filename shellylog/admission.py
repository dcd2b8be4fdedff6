"""
Which peers may connect, and which device ids they may speak for.

Pure: no reactor, no I/O. A Shelly cannot send headers, so its only credential is a token in
the URL (C{/ws?token=SECRET}).
"""

from __future__ import annotations

import hmac
from fnmatch import fnmatchcase

from attrs import field, frozen

#: What a token given with C{--token} admits: every device (C{--allow} may still narrow it).
ANY_DEVICE = ("*",)


@frozen
class TokenRule:
    """A token and the device-id globs it admits."""

    token: str
    globs: tuple[str, ...]


def parse_token_file(text: str) -> tuple[TokenRule, ...]:
    """
    Parse a token file: one C{token device-id-glob} per line; blank lines and lines
    starting with C{#} are skipped. A token on several lines admits all their globs.

    @raise ValueError: naming the line that is not of that form (never its token).
    """
    globs: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) != 2:
            raise ValueError(f"line {number}: expected 'token device-id-glob'")
        globs.setdefault(fields[0], []).append(fields[1])
    if not globs:
        raise ValueError("no tokens in the file")
    return tuple(TokenRule(token, tuple(g)) for token, g in globs.items())


@frozen
class Admission:
    """
    The admission policy.

    @ivar tokens: the accepted tokens; empty means no token is needed. Secret: never
        shown (see L{shellylog.config.public_values}).
    @ivar allow: device-id globs that are logged; empty means every device.
    """

    tokens: tuple[TokenRule, ...] = field(default=(), metadata={"secret": True})
    allow: tuple[str, ...] = ()

    def admit(self, presented: str | None) -> tuple[str, ...] | None:
        """
        The device-id globs a connection presenting C{presented} may speak for, or
        C{None} if it is refused.

        Every token is compared, in constant time, so the time taken tells nothing.
        """
        if not self.tokens:
            return ANY_DEVICE
        given = (presented or "").encode("utf-8", "surrogateescape")
        admitted: tuple[str, ...] | None = None
        for rule in self.tokens:
            if hmac.compare_digest(rule.token.encode("utf-8"), given):
                admitted = rule.globs
        if presented is None:
            return None
        return admitted

    def may_log(self, device_id: str, globs: tuple[str, ...]) -> bool:
        """May a connection admitted for C{globs} write rows for C{device_id}?"""
        if not any(fnmatchcase(device_id, g) for g in globs):
            return False
        return not self.allow or any(fnmatchcase(device_id, g) for g in self.allow)
