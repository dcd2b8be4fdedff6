"""
The twistd plugin's command line and the one place where every part is wired together.
"""

from __future__ import annotations

import math
import os
import re
import resource
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.interfaces import IReactorCore, IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import IResource

from shellylog import __version__
from shellylog.admission import ANY_DEVICE, Admission, TokenRule, parse_token_file
from shellylog.channels import ChannelSelection, ChannelSpec, parse_channel_spec, spec_order
from shellylog.config import INSTANCE_NAME, Config, Limits, default_instance
from shellylog.csvlog import EXTRA_COLUMNS, CsvFileError, CsvSink, check_header
from shellylog.dashboard import dashboard_pages
from shellylog.dashboard.fleet import FleetQuery, device_ids, fleet_document
from shellylog.internals import ProcessPatches
from shellylog.metrics import ChannelSeries, ShellylogCollector, metrics_resource
from shellylog.minutes import MinuteService, RowSink
from shellylog.pgrows import check_table_name
from shellylog.pgsink import DatabaseOptionError, PgSink, PgWriter, describe
from shellylog.protocol import CloseOnStop, ShellyServerFactory
from shellylog.registry import DeviceRegistry
from shellylog.sinks import FanOut
from shellylog.statuspage import public_options, status_report
from shellylog.threads import OwnThreads, WebThreads, reactor_threads
from shellylog.tracker import MINUTE, ChannelTracker
from shellylog.web import HealthResource, StatusResource, build_site
from shellylog.webauth import (
    HtpasswdChecker,
    HtpasswdError,
    WebAuthReload,
    load_htpasswd,
    protect_pages,
)

log = Logger(namespace="shellylog.tap")

#: Open files needed besides one per device connection: the listening socket, the CSV
#: file and its fsync duplicates, the reactor's own, and HTTP requests (the pages, and
#: handshakes being refused).
DESCRIPTOR_MARGIN = 256


def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise usage.UsageError(f"--{option}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise usage.UsageError(f"--{option}: must be a finite number, got {text!r}")
    return value


def _whole(option: str, text: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise usage.UsageError(f"--{option}: not a whole number: {text!r}") from None
    if value < minimum:
        raise usage.UsageError(f"--{option}: must be {minimum} or more, got {value}")
    return value


_SIZE_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024 * 1024, "mib": 1024 * 1024}


def _size(option: str, text: str) -> int:
    """Bytes, with an optional binary suffix: C{262144}, C{256KiB}, C{1MiB}."""
    stripped = text.strip()
    digits = stripped.rstrip("KkMmIiBb")
    unit = _SIZE_UNITS.get(stripped[len(digits):].lower())
    if unit is None or not digits.isdigit():
        raise usage.UsageError(f"--{option}: a size in bytes such as 262144 or 256KiB, "
                               f"got {text!r}")
    value = int(digits) * unit
    if value < 1024:
        raise usage.UsageError(f"--{option}: at least 1024 bytes, got {value}")
    return value


def _switch(option: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise usage.UsageError(f"--{option}: 'on' or 'off', got {text!r}")


def _token_file(path: str) -> tuple[TokenRule, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise usage.UsageError(f"--token-file: cannot read {path!r}: {e.strerror}") from None
    try:
        return parse_token_file(text)
    except ValueError as e:
        raise usage.UsageError(f"--token-file: {path}: {e}") from None


def _web_auth(path: str) -> str:
    """The htpasswd file of C{--web-auth}, read and checked now: a clear error, else."""
    try:
        load_htpasswd(path)
    except HtpasswdError as e:
        raise usage.UsageError(f"--web-auth: {e}") from None
    return os.path.abspath(path)


def _origin(text: str) -> str:
    """
    An origin as browsers send it: C{null}, or C{http://} or C{https://}, a host and
    perhaps a port, nothing more; in lower case.
    """
    origin = text.strip().lower()
    if origin == "null":
        return origin
    if "*" in origin:
        # A glob would admit pages of hosts nobody listed; a page's origin is fixed.
        raise usage.UsageError(f"--allow-origin: an exact origin, not a pattern: {text!r}; "
                               "give the option once for each origin")
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or origin != f"{parts.scheme}://{parts.netloc}" or "@" in parts.netloc
            or not origin.isascii()):
        raise usage.UsageError(f"--allow-origin: an origin such as http://192.0.2.5:8080 "
                               f"(scheme, host, port; no path) or null, got {text!r}")
    if parts.port == {"http": 80, "https": 443}[parts.scheme]:
        # Browsers leave the scheme's own port out of the origin they send.
        origin = origin.rsplit(":", 1)[0]
    return origin


def _channels(text: str) -> tuple[ChannelSpec, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise usage.UsageError(f"--channels: a comma-separated list of channel ids, got {text!r}")
    specs = set()
    for part in parts:
        try:
            specs.add(parse_channel_spec(part))
        except ValueError as e:
            raise usage.UsageError(f"--channels: {e}") from None
    return tuple(sorted(specs, key=spec_order))


def _columns(text: str) -> tuple[str, ...]:
    """The extra columns, in L{EXTRA_COLUMNS}'s order whatever the order given (rule 9)."""
    names = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(names - set(EXTRA_COLUMNS))
    if unknown:
        raise usage.UsageError(
            f"--columns: unknown column {', '.join(unknown)}; the columns that may be "
            f"added to the seven are: {', '.join(EXTRA_COLUMNS)}")
    return tuple(c for c in EXTRA_COLUMNS if c in names)


def _id_pattern(text: str) -> re.Pattern[str]:
    if not text:
        raise usage.UsageError("--id-pattern: empty pattern")
    try:
        return re.compile(text)
    except re.error as e:
        raise usage.UsageError(f"--id-pattern: not a regular expression {text!r}: {e}") from None


def _instance(text: str) -> str:
    if not INSTANCE_NAME.fullmatch(text):
        raise usage.UsageError(
            "--instance: 1 to 63 letters, digits and '.', '_', ':', '-', starting with a "
            f"letter or digit, got {text!r}")
    return text


def _endpoint_description(text: str) -> str:
    text = text.strip()
    if text.isdigit():
        text = f"tcp:{text}"
    try:
        from twisted.internet import reactor

        endpoints.serverFromString(reactor, text)
    except Exception as e:
        raise usage.UsageError(f"--port: not a usable endpoint {text!r}: {e}") from None
    return text


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except Exception:
        raise usage.UsageError(f"--tz: unknown time zone {text!r} (use an IANA name such as "
                               "Europe/Berlin)") from None


def _csv_path(text: str, columns: tuple[str, ...]) -> str:
    """The CSV file's absolute path, checked (folder, kind, header)."""
    if not text:
        raise usage.UsageError("--csv: empty file name")
    path = os.path.abspath(text)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise usage.UsageError(f"--csv: folder {folder!r} does not exist")
    if os.path.exists(path) and not os.path.isfile(path):
        raise usage.UsageError(f"--csv: {path!r} exists and is not a regular file")
    try:
        check_header(path, columns)
    except CsvFileError as e:
        raise usage.UsageError(f"--csv: {e}") from None
    return path


def _db(text: str) -> str:
    """The C{--db} connection string, parsed now: psycopg must be here, and it must parse."""
    try:
        describe(text)
    except DatabaseOptionError as e:
        raise usage.UsageError(str(e)) from None
    return text


def _password_file(path: str) -> str:
    """The password in C{path} (a systemd credential, say): its first line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise usage.UsageError(
            f"--db-password-file: cannot read {path!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise usage.UsageError(f"--db-password-file: {path!r} is not UTF-8 text") from None
    if not lines or not lines[0]:
        raise usage.UsageError(f"--db-password-file: {path!r} has no password on its "
                               "first line")
    return lines[0]


def _db_table(text: str) -> str:
    try:
        return check_table_name(text)
    except ValueError as e:
        raise usage.UsageError(f"--db-table: {e}") from None


#: What C{--csv} is given to write no CSV file (with C{--db} only).
NO_CSV = "none"


#: The defaults, shown in --help as the command line would give them.
DEFAULT = Config()

#: --max-bytes-rate unless given (or --max-message is larger): a device sends about 4 KiB
#: of full status a minute, and deltas of a few hundred bytes.
DEFAULT_BYTES_RATE = DEFAULT.limits.max_bytes_rate


def _size_text(value: int) -> str:
    """Bytes as L{_size} reads them: C{262144} is C{256KiB}."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


class Options(usage.Options):
    """C{twistd shellylog} options; every value is checked here, before anything starts."""

    synopsis = "[options]"
    longdesc = (
        "Accept the outbound WebSocket of Shelly Gen2+ devices at /ws and write, for every "
        "minute in which a metering channel drew more than --threshold watts, one CSV row."
    )
    # Every default is L{Config}'s, written as it would be given.
    optParameters = [
        ["port", "p", DEFAULT.port, "A port number or a Twisted server endpoint string."],
        ["csv", "c", DEFAULT.csv,
         f"The CSV file to append rows to; {NO_CSV} for none (with --db only)."],
        ["channels", None, ",".join(map(str, DEFAULT.channels)),
         "Comma-separated channels to log: switch ids (0), channels (pm1:0, em1:1, em:0:b), "
         "components (em:0: phases and total), wildcards (pm1:*, * for all)."],
        ["columns", None, ",".join(DEFAULT.columns),
         "Comma-separated columns to add after the seven: " + ", ".join(EXTRA_COLUMNS) + "."],
        ["threshold", "t", f"{DEFAULT.threshold:g}",
         "Watts; a channel is active while |power| is above this."],
        ["tz", None, DEFAULT.tz, "IANA time zone in which row timestamps are written."],
        ["max-carry", None, str(DEFAULT.max_carry),
         "Minutes a last active reading may be carried forward."],
        ["poll", None, f"{DEFAULT.poll:g}",
         "Seconds between Shelly.GetStatus requests; 0 turns polling off."],
        ["fsync", None, "on" if DEFAULT.fsync else "off",
         "on/off: fsync the CSV file after each minute's write."],
        ["max-pending", None, str(DEFAULT.max_pending),
         "Rows kept in memory while the CSV cannot be written."],
        ["channel-metrics", None, "on" if DEFAULT.channel_metrics else "off",
         "on/off: /metrics has the power, activity, run and energy of each channel."],
        ["max-message", None, _size_text(DEFAULT.limits.max_message),
         "Largest WebSocket message accepted (closed with 1009)."],
        ["max-rate", None, str(DEFAULT.limits.max_rate),
         "Frames per minute accepted from one connection."],
        ["max-bytes-rate", None, None,
         "Bytes of messages per minute accepted from one connection "
         f"[default: {_size_text(DEFAULT_BYTES_RATE)}, or --max-message if larger]."],
        ["max-connections", None, str(DEFAULT.limits.max_connections),
         "Open device connections (beyond: HTTP 503)."],
        ["max-per-address", None, str(DEFAULT.limits.max_per_address),
         "Open device connections from one IP address (beyond: HTTP 503)."],
        ["max-devices", None, str(DEFAULT.limits.max_devices),
         "Device records kept; those that left longest ago are forgotten first."],
        ["max-warnings", None, str(DEFAULT.limits.max_warnings),
         "Warnings peers may cause per minute, all together; "
         "the rest are summarized once a minute."],
        ["token", None, None, "A secret devices must give as /ws?token=SECRET."],
        ["token-file", None, None, "A file of 'token device-id-glob' lines (instead of --token)."],
        ["id-pattern", None, DEFAULT.id_pattern.pattern,
         "A regular expression every device id must match, all of it."],
        ["web-auth", None, None,
         "An htpasswd file (bcrypt or SHA-512 crypt hashes): /status, /metrics, /dashboard "
         "and /api then ask for its users' passwords (HTTP Basic); re-read on SIGHUP."],
        ["db", None, None,
         "A PostgreSQL database rows also go to: a libpq connection string or URI "
         "(needs pip install 'shellylog[postgres]')."],
        ["db-password-file", None, None,
         "A file whose first line is the database's password (a systemd credential)."],
        ["db-table", None, DEFAULT.db_table, "The database table rows go to."],
        ["instance", None, None,
         "This instance's name in /status, /metrics and /api/fleet [default: the host "
         "name]."],
    ]

    #: What the command line says, once L{postOptions} checked it.
    config: Config

    def __init__(self) -> None:
        super().__init__()
        self["allow"] = []
        self["allow-origin"] = []

    def opt_allow(self, glob: str) -> None:
        """Log only devices whose id matches this glob (repeatable)."""
        if not glob.strip():
            raise usage.UsageError("--allow: empty glob")
        self["allow"].append(glob.strip())

    def opt_allow_origin(self, origin: str) -> None:
        """
        Let web pages of this origin (http://192.0.2.5:8080, or null) open the WebSocket
        (repeatable).
        """
        self["allow-origin"].append(_origin(origin))

    def postOptions(self) -> None:
        self["port"] = _endpoint_description(self["port"])
        self["columns"] = _columns(self["columns"])
        if self["db"] is not None:
            self["db"] = _db(self["db"])
        elif self["db-password-file"] is not None:
            raise usage.UsageError("--db-password-file: only with --db")
        self["db-table"] = _db_table(self["db-table"])
        if self["csv"] == NO_CSV:
            if self["db"] is None:
                raise usage.UsageError(
                    f"--csv {NO_CSV}: only with --db (else the rows would go nowhere)")
            self["csv"] = None
        else:
            self["csv"] = _csv_path(self["csv"], self["columns"])
        password = None
        if self["db-password-file"] is not None:
            self["db-password-file"] = os.path.abspath(self["db-password-file"])
            password = _password_file(self["db-password-file"])
        self["channels"] = _channels(self["channels"])
        self["threshold"] = _number("threshold", self["threshold"])
        _zone(self["tz"])  # checked here; Config.zone is the zone
        self["max-carry"] = _whole("max-carry", self["max-carry"])
        poll = _number("poll", self["poll"])
        if poll != 0 and poll < 1:
            raise usage.UsageError(f"--poll: 0 (off) or at least 1 second, got {poll:g}")
        self["poll"] = poll
        self["fsync"] = _switch("fsync", self["fsync"])
        self["max-pending"] = _whole("max-pending", self["max-pending"], minimum=1)
        self["channel-metrics"] = _switch("channel-metrics", self["channel-metrics"])
        self["max-message"] = _size("max-message", self["max-message"])
        self["max-rate"] = _whole("max-rate", self["max-rate"], minimum=1)
        self["max-connections"] = _whole("max-connections", self["max-connections"], minimum=1)
        id_pattern = _id_pattern(self["id-pattern"])
        if self["max-bytes-rate"] is None:
            self["max-bytes-rate"] = max(DEFAULT_BYTES_RATE, self["max-message"])
        self["max-bytes-rate"] = _size("max-bytes-rate", str(self["max-bytes-rate"]))
        if self["max-bytes-rate"] < self["max-message"]:
            # Else the largest message --max-message allows could never be used.
            raise usage.UsageError(
                f"--max-bytes-rate: at least --max-message ({self['max-message']} bytes), "
                f"got {self['max-bytes-rate']}")
        self["max-per-address"] = _whole("max-per-address", self["max-per-address"], minimum=1)
        self["max-devices"] = _whole("max-devices", self["max-devices"], minimum=1)
        self["max-warnings"] = _whole("max-warnings", self["max-warnings"])
        if self["token"] is not None and self["token-file"] is not None:
            raise usage.UsageError("--token and --token-file: give one or the other")
        if self["token"] is not None:
            token = self["token"]
            if not token or any(c.isspace() for c in token) or len(token) > 256:
                raise usage.UsageError("--token: 1 to 256 characters without spaces")
            tokens: tuple[TokenRule, ...] = (TokenRule(token, ANY_DEVICE),)
        elif self["token-file"] is not None:
            tokens = _token_file(self["token-file"])
        else:
            tokens = ()
        if self["web-auth"] is not None:
            self["web-auth"] = _web_auth(self["web-auth"])
        # Config's own default (the host name) unless given.
        instance = (default_instance() if self["instance"] is None
                    else _instance(self["instance"]))
        self.config = Config(
            port=self["port"],
            csv=self["csv"],
            channels=self["channels"],
            columns=self["columns"],
            threshold=self["threshold"],
            tz=self["tz"],
            max_carry=self["max-carry"],
            poll=self["poll"],
            fsync=self["fsync"],
            max_pending=self["max-pending"],
            channel_metrics=self["channel-metrics"],
            limits=Limits(
                max_message=self["max-message"],
                max_rate=self["max-rate"],
                max_bytes_rate=self["max-bytes-rate"],
                max_connections=self["max-connections"],
                max_per_address=self["max-per-address"],
                max_devices=self["max-devices"],
                max_warnings=self["max-warnings"],
            ),
            admission=Admission(tokens=tokens, allow=tuple(self["allow"])),
            allow_origin=tuple(self["allow-origin"]),
            token_file=self["token-file"],
            id_pattern=id_pattern,
            web_auth=self["web-auth"],
            db=self["db"],
            db_password=password,
            db_password_file=self["db-password-file"],
            db_table=self["db-table"],
            instance=instance,
        )


def _call_now(work: Callable[[], object]) -> None:
    work()


def make_room_for_descriptors(max_connections: int) -> None:
    """
    Make sure the process may open a descriptor for each of C{max_connections} and
    L{DESCRIPTOR_MARGIN} more: raise the soft limit on open files up to the hard limit
    if it is lower, and warn (C{descriptor_limit_low}) if it is still lower.

    Without this, the soft limit (1024 under systemd and most shells) is where accept()
    starts to fail: for every new connection, a health check included.
    """
    wanted = max_connections + DESCRIPTOR_MARGIN
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != infinity and soft < wanted:
        # As far as allowed, as most servers do; an infinite hard limit is not a value
        # the kernel takes for a soft limit (it is capped by fs.nr_open).
        target = wanted if hard == infinity else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            pass  # not allowed (by a sandbox, say): warned below
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != infinity and soft < wanted:
        log.warn(
            "only {soft} open files are allowed (hard limit {hard}), but "
            "--max-connections {max_connections} needs {wanted}: connections beyond "
            "about {room} will fail; raise the limit (LimitNOFILE= in a systemd unit, "
            "ulimit -n in a shell) or lower --max-connections",
            event="descriptor_limit_low",
            soft=soft,
            hard="unlimited" if hard == infinity else hard,
            max_connections=max_connections,
            wanted=wanted,
            room=max(soft - DESCRIPTOR_MARGIN, 0),
        )


class DescriptorLimit(Service):
    """At start, before any connection is accepted: L{make_room_for_descriptors}."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections

    def startService(self) -> None:
        super().startService()
        make_room_for_descriptors(self.max_connections)


def makeService(config: Config, reactor: IReactorTime | None = None) -> IService:
    """
    Build the server from C{config}: the devices' WebSocket and health on one port, and
    the minute tick. (twistd calls the plugin's C{makeService} with the L{Options}; that
    passes their C{config} on to here.)
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    assert reactor is not None
    zone = config.zone
    tracker = ChannelTracker(clock=reactor, threshold=config.threshold, max_carry=config.max_carry)
    csv_sink = None if config.csv is None else CsvSink(
        path=config.csv,
        zone=zone,
        columns=config.columns,
        fsync=config.fsync,
        max_pending=config.max_pending,
        in_thread=reactor_threads(reactor),
    )
    db_sink = None if config.db is None else PgSink(
        target=describe(config.db),
        writer=PgWriter(config.db, table=config.db_table, columns=config.columns,
                        password=config.db_password),
        # The connection's own thread: a slow database never holds the CSV's fsync.
        thread=OwnThreads(reactor, "shellylog-db"),
        clock=reactor,
        columns=config.columns,
        max_pending=config.max_pending,
    )
    sinks: list[CsvSink | PgSink] = [s for s in (csv_sink, db_sink) if s is not None]
    # The tick writes to each; one alone needs no fan-out.
    rows_to: RowSink = sinks[0] if len(sinks) == 1 else FanOut(sinks)
    # What the pages count as rows written: the CSV file's, else the database's.
    sink = sinks[0]
    limits = config.limits
    registry = DeviceRegistry(sink=tracker, clock=reactor, max_devices=limits.max_devices,
                              max_warnings=limits.max_warnings)
    factory = ShellyServerFactory(
        registry=registry,
        channels=config.channels,
        poll_interval=config.poll,
        limits=limits,
        admission=config.admission,
        id_pattern=config.id_pattern,
    )
    health = HealthResource(
        devices=lambda: len(registry.devices),
        rows_written=lambda: sink.rows_written,
        problem=lambda: next((s.problem for s in sinks if s.pending and s.problem), None),
        rows_pending=lambda: rows_to.pending,
        browsers_to=b"dashboard/",
    )
    # Devices that left with a row to come may be forgotten once the tick wrote it.
    minutes = MinuteService(tracker, rows_to, reactor, after_tick=registry.forget_gone)
    started_at = reactor.seconds()
    shown = public_options(config)

    def status() -> dict[str, Any]:
        return status_report(
            now=reactor.seconds(), started_at=started_at, version=__version__,
            zone=zone, options=shown, registry=registry, channels=factory.channels,
            tracker=tracker, sink=sink, columns=config.columns, database=db_sink,
            instance=config.instance,
        )

    # The series of a device that left stay --max-carry minutes (a short drop-out does
    # not break their graphs), then go: nothing stale is served for ever.
    channel_series = ChannelSeries(
        tracker, reactor, keep_after_leaving=config.max_carry * MINUTE
    ) if config.channel_metrics else None
    # What web requests ask of threads, apart from the reactor's pool (the CSV's fsync).
    web_threads = WebThreads(reactor)
    # The dashboard: its page at /dashboard/, the JSON it reads at /api/.
    selection = ChannelSelection.from_specs(factory.channels)

    def fleet(ids: Sequence[str], query: FleetQuery) -> dict[str, Any]:
        return fleet_document(now=reactor.seconds(), zone=zone, tz=config.tz,
                              instance=config.instance, registry=registry,
                              tracker=tracker, selection=selection, query=query, ids=ids)

    def fleet_ids() -> list[str]:
        return device_ids(registry)

    dashboard = dashboard_pages(fleet, fleet_ids, reactor, config.csv, zone,
                                web_threads.run, registry.rejected)
    pages: dict[bytes, IResource] = {
        b"status": StatusResource(status, reactor),
        b"metrics": metrics_resource(
            ShellylogCollector(registry, sink, minutes, channels=channel_series,
                               database=db_sink, instance=config.instance)
        ),
        **dashboard,
    }
    # Every page but health (/) and the devices' WebSocket (/ws), whatever its name: behind
    # --web-auth if given.
    checker = None
    if config.web_auth is not None:
        # Password checks in the web's threads: bcrypt's deliberate slowness never holds
        # the reactor, nor a flood of guesses the CSV file's fsync.
        checker = HtpasswdChecker(load_htpasswd(config.web_auth), web_threads.run,
                                  registry.rejected, registry.log_budget)
    site = build_site(factory, registry, health, reactor, protect_pages(pages, checker),
                      allowed_origins=config.allow_origin)

    top = MultiService()
    DescriptorLimit(config.limits.max_connections).setServiceParent(top)
    # Autobahn's process-wide patches, applied when the service starts, before the rest.
    ProcessPatches().setServiceParent(top)
    # Added first, so it stops last: the port closes before the final minute is written.
    minutes.setServiceParent(top)
    # A port that cannot be listened on (in use, out of range, no permission) fails the
    # start (strports does that), instead of being logged while the process runs on
    # without accepting any device.
    # Added before the listener, so it stops after it: no new connection comes in while
    # the open ones are closed with 1001.
    CloseOnStop(registry, reactor).setServiceParent(top)
    # Before the listener: its threads stop after the last request is answered.
    web_threads.setServiceParent(top)
    listener = strports.service(config.port, site, reactor=cast(IReactorCore, reactor))
    listener.setServiceParent(top)
    if checker is not None and config.web_auth is not None:
        # A signal handler may only hand work over; a test's clock has no other thread.
        call_from_thread = (reactor.callFromThread if IReactorThreads.providedBy(reactor)
                            else _call_now)
        WebAuthReload(config.web_auth, checker, call_from_thread).setServiceParent(top)
    return top
