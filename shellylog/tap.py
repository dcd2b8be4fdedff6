"""
The twistd plugin's command line and the one place where every part is wired together.
"""

from __future__ import annotations

import math
import os
from typing import Any
from zoneinfo import ZoneInfo

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet import endpoints
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from shellylog.csvlog import CsvSink
from shellylog.minutes import MinuteService
from shellylog.protocol import ShellyServerFactory
from shellylog.tracker import ChannelTracker
from shellylog.web import HealthResource, build_site


def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise usage.UsageError(f"--{option}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise usage.UsageError(f"--{option}: must be a finite number, got {text!r}")
    return value


def _whole(option: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise usage.UsageError(f"--{option}: not a whole number: {text!r}") from None
    if value < 0:
        raise usage.UsageError(f"--{option}: must be 0 or more, got {value}")
    return value


def _channels(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise usage.UsageError(f"--channels: a comma-separated list of channel ids, got {text!r}")
    return tuple(sorted({_whole("channels", p) for p in parts}))


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


def _csv_path(text: str) -> str:
    if not text:
        raise usage.UsageError("--csv: empty file name")
    path = os.path.abspath(text)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise usage.UsageError(f"--csv: folder {folder!r} does not exist")
    if os.path.exists(path) and not os.path.isfile(path):
        raise usage.UsageError(f"--csv: {path!r} exists and is not a regular file")
    return path


class Options(usage.Options):
    """C{twistd shellylog} options; every value is checked here, before anything starts."""

    synopsis = "[options]"
    longdesc = (
        "Accept the outbound WebSocket of Shelly Gen2+ devices at /ws and write, for every "
        "minute in which a switch channel drew more than --threshold watts, one CSV row."
    )
    optParameters = [
        ["port", "p", "tcp:5000", "A port number or a Twisted server endpoint string."],
        ["csv", "c", "shelly_ws_log.csv", "The CSV file to append rows to."],
        ["channels", None, "0,1,2,3", "Comma-separated switch channel ids to log."],
        ["threshold", "t", "5", "Watts; a channel is active while apower is above this."],
        ["tz", None, "UTC", "IANA time zone in which row timestamps are written."],
        ["max-carry", None, "10", "Minutes a last active reading may be carried forward."],
        ["poll", None, "60", "Seconds between Shelly.GetStatus requests; 0 turns polling off."],
    ]

    def postOptions(self) -> None:
        self["port"] = _endpoint_description(self["port"])
        self["csv"] = _csv_path(self["csv"])
        self["channels"] = _channels(self["channels"])
        self["threshold"] = _number("threshold", self["threshold"])
        self["zone"] = _zone(self["tz"])
        self["max-carry"] = _whole("max-carry", self["max-carry"])
        poll = _number("poll", self["poll"])
        if poll != 0 and poll < 1:
            raise usage.UsageError(f"--poll: 0 (off) or at least 1 second, got {poll:g}")
        self["poll"] = poll


def makeService(
    options: Options | dict[str, Any], reactor: IReactorTime | None = None
) -> IService:
    """Build the server: the devices' WebSocket and health on one port, and the minute tick."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    assert reactor is not None
    tracker = ChannelTracker(
        clock=reactor, threshold=options["threshold"], max_carry=options["max-carry"]
    )
    sink = CsvSink(path=options["csv"], zone=options["zone"])
    factory = ShellyServerFactory(
        sink=tracker,
        clock=reactor,
        channels=options["channels"],
        poll_interval=options["poll"],
    )
    health = HealthResource(
        devices=lambda: len(factory.devices), rows_written=lambda: sink.rows_written
    )
    site = build_site(factory, health)

    top = MultiService()
    # Added first, so it stops last: the port closes before the final minute is written.
    MinuteService(tracker, sink, reactor).setServiceParent(top)
    endpoint = endpoints.serverFromString(reactor, options["port"])
    listener = StreamServerEndpointService(endpoint, site)
    # As twisted.application.strports.service does: a port that cannot be listened on
    # (in use, out of range, no permission) fails the start, instead of being logged
    # while the process runs on without accepting any device.
    listener._raiseSynchronously = True
    listener.setServiceParent(top)
    return top
