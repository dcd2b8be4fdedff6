"""
The server's configuration: one frozen, typed L{Config}, the only place where a default is
defined (or, for the parts that have their own value objects, L{Limits}, L{Admission} and
the CSV file's durability, referenced from there).

Pure: no reactor, no I/O. The command line (L{shellylog.tap.Options}) checks what it is
given, builds a L{Config}, and shows these defaults in C{--help}; C{/status} shows the
fields (L{public_values}), never a secret one.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from attrs import AttrsInstance, field, frozen

from shellylog.admission import Admission
from shellylog.channels import ChannelSpec
from shellylog.csvlog import DEFAULT_FSYNC, DEFAULT_MAX_PENDING
from shellylog.logbudget import PER_MINUTE
from shellylog.pgrows import DEFAULT_TABLE
from shellylog.rpc import DEVICE_ID


@frozen
class Limits:
    """
    What one peer may cost us.

    @ivar max_message: bytes in one WebSocket message (larger: closed with 1009).
    @ivar max_rate: frames per minute per connection (beyond: dropped; beyond twice
        that: closed with 1008).
    @ivar max_connections: open WebSocket connections (beyond: HTTP 503 at the handshake).
    @ivar max_bytes_rate: bytes of messages per minute per connection (beyond: dropped;
        beyond twice that: closed with 1008). A device sends its full status (about
        4 KiB) once a minute and deltas of a few hundred bytes: far less than 1 MiB.
    @ivar max_per_address: open WebSocket connections from one IP address (beyond: HTTP
        503 at the handshake), so that one host cannot take every slot.
    @ivar max_devices: device records kept (for C{/status}, with the tracker's state);
        beyond it, those of devices that left longest ago are forgotten first.
    @ivar max_warnings: warnings peers may cause per minute, all connections together
        (beyond: counted, and summarized once a minute; see L{shellylog.logbudget.LogBudget}).

    The last two are the registry's to apply: L{shellylog.tap.makeService} hands them to
    the L{DeviceRegistry} it makes.
    """

    # In the order in which /status shows them (see shellylog.config.public_values).
    max_message: int = 256 * 1024
    max_rate: int = 600
    max_bytes_rate: int = 1024 * 1024
    max_connections: int = 10000
    max_per_address: int = 200
    max_devices: int = 20000
    max_warnings: int = PER_MINUTE


#: The key of field metadata that marks a value never to be shown (a token).
SECRET = "secret"

#: What an instance's name (C{--instance}) may be: short and printable, a host name's
#: characters, so that it reads the same in C{/status}, a Prometheus label and a log line.
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")

#: The name of an instance whose host name is no L{INSTANCE_NAME}.
FALLBACK_INSTANCE = "shellylog"


def default_instance() -> str:
    """
    This machine's host name, up to its first dot, if it is an L{INSTANCE_NAME}; else
    L{FALLBACK_INSTANCE}. (Several instances behind one load balancer are told apart by
    it; on one machine each needs C{--instance}.)
    """
    host = socket.gethostname().split(".", 1)[0]
    return host if INSTANCE_NAME.fullmatch(host) else FALLBACK_INSTANCE


@frozen
class Config:
    """
    Everything C{twistd shellylog} was told, checked and converted. A field's name is its
    command-line option's, with C{_} for C{-}; so are the fields of L{Limits} and
    L{Admission}.

    @ivar port: the Twisted server endpoint string the site listens on.
    @ivar csv: the CSV file rows are appended to.
    @ivar channels: the channels logged (rule 8), in order: switch ids as numbers; channel
        names, components and wildcards (C{pm1:0}, C{em:0}, C{em:*}, C{*}) as text.
    @ivar columns: the columns appended to the seed's seven (rule 9).
    @ivar threshold: watts; a channel is active while its |power| is above this.
    @ivar tz: the IANA time zone in which rows and C{/status} are written (see L{zone}).
    @ivar max_carry: minutes a last active reading may be carried forward.
    @ivar poll: seconds between C{Shelly.GetStatus} requests; 0 is no polling.
    @ivar fsync: whether each minute's write to the CSV file is fsynced.
    @ivar max_pending: rows kept in memory while the CSV file cannot be written.
    @ivar channel_metrics: whether C{/metrics} has a series of each channel's power,
        activity, run and energy (off for fleets where that many series are unwanted).
    @ivar limits: what one peer may cost.
    @ivar admission: which peers may connect and which devices are logged.
    @ivar allow_origin: web page origins that may open the WebSocket.
    @ivar token_file: the file the tokens were read from, if they were (shown; its
        tokens are in C{admission}).
    @ivar id_pattern: what every device id must match, all of it.
    @ivar web_auth: the htpasswd file whose users may see the pages other than health
        (C{/status}, C{/metrics}, ...; see L{shellylog.webauth}), or C{None}: open to all.
    @ivar db: the PostgreSQL database rows also go to (a libpq connection string or URI),
        or C{None}. Secret: it may hold a password; C{/status} shows it without (see
        L{shellylog.statuspage.public_options}).
    @ivar db_password: the password read from C{--db-password-file}; secret.
    @ivar db_password_file: the file it was read from (shown).
    @ivar db_table: the table rows go to (see L{shellylog.pgrows}).
    @ivar instance: this instance's name (an L{INSTANCE_NAME}), shown by C{/status},
        C{/metrics} and C{/api/fleet}, so that several behind one load balancer are told
        apart; the host name by default (L{default_instance}).

    C{csv} is C{None} with C{--csv none}: rows go to the database only.
    """

    port: str = "tcp:5000"
    csv: str | None = "shelly_ws_log.csv"
    channels: tuple[ChannelSpec, ...] = (0, 1, 2, 3)
    columns: tuple[str, ...] = ()
    threshold: float = 5.0
    tz: str = "UTC"
    max_carry: int = 10
    poll: float = 60.0
    fsync: bool = DEFAULT_FSYNC
    max_pending: int = DEFAULT_MAX_PENDING
    channel_metrics: bool = True
    limits: Limits = field(factory=Limits)
    admission: Admission = field(factory=Admission)
    allow_origin: tuple[str, ...] = ()
    token_file: str | None = None
    id_pattern: re.Pattern[str] = DEVICE_ID
    web_auth: str | None = None
    db: str | None = field(default=None, metadata={SECRET: True})
    db_password: str | None = field(default=None, metadata={SECRET: True}, repr=False)
    db_password_file: str | None = None
    db_table: str = DEFAULT_TABLE
    instance: str = field(factory=default_instance)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of L{tz} (looked up when asked for; the command line checked it)."""
        return ZoneInfo(self.tz)


def option_name(attribute: attrs.Attribute[Any]) -> str:
    """The command-line option of a field: C{max_carry} is C{max-carry}."""
    return attribute.name.replace("_", "-")


def public_values(config: AttrsInstance) -> dict[str, Any]:
    """
    The values of C{config} (an attrs instance, such as a L{Config}) as JSON sees them,
    by option name, in field order; a field that is itself an attrs instance gives its own
    fields in its place. Fields marked L{SECRET} are left out.

    Tuples become lists and patterns their text; a value of any other type than those and
    C{str}, C{int}, C{float}, C{bool} and C{None} raises L{TypeError}, so that nothing is
    shown that was not meant to be.
    """
    shown: dict[str, Any] = {}
    for attribute in attrs.fields(type(config)):
        if attribute.metadata.get(SECRET):
            continue
        value = getattr(config, attribute.name)
        if attrs.has(type(value)):
            inner = public_values(value)
            if inner.keys() & shown.keys():
                raise ValueError(f"{attribute.name}: repeats {sorted(inner.keys() & shown)}")
            shown.update(inner)
            continue
        shown[option_name(attribute)] = _shown(attribute.name, value)
    return shown


def _shown(name: str, value: object) -> Any:
    if isinstance(value, tuple):
        return [_shown(name, item) for item in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return value
    raise TypeError(f"{name}: {type(value).__name__} is not a value to show")
