"""
C{GET /api/day?device=ID&channel=switch:0&date=YYYY-MM-DD}: one channel's local day (its
minute power, its runs, its energy) as JSON, read from the CSV log and its rotated files
through the report's code (L{shellylog.dayview}). The files are read in a thread, never
on the reactor's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date, tzinfo
from typing import Any

import orjson
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from shellylog.dayview import ChannelDay, api_channel, channel_day, log_files
from shellylog.queryargs import BadQueryError, bad_query_answer, text_arg
from shellylog.report.output import run_values
from shellylog.report.rows import NotShellylogError
from shellylog.rpc import is_safe_id
from shellylog.threads import RunInThread

log = Logger(namespace="shellylog.dashboard.day")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Characters of a bad argument shown in a 400 answer.
_SHOWN = 80
#: Days read at once, beyond which a request is answered 503 at once: pages that ask
#: faster than the files are read must not queue reads without end.
MAX_READS = 4
#: Distinct warnings remembered, so that each is logged once and not at every poll.
_WARNINGS_KEPT = 256


def parse_query(request: Request, today: date) -> tuple[str, str, str, date]:
    """
    The device id, the channel (as the dashboard names it, and as the CSV does) and the
    date of a request; the date is C{today} when not given.

    @raise BadQueryError: for a missing or bad argument.
    """
    device = text_arg(request, "device")
    if not device:
        raise BadQueryError("device: missing (device=ID, as in /api/fleet)")
    if not is_safe_id(device, None):
        raise BadQueryError(f"device: {device[:_SHOWN]!a} is not a device id")
    name = text_arg(request, "channel")
    if not name:
        raise BadQueryError("channel: missing (channel=switch:0, pm1:0, em:0:a, ...)")
    channel = api_channel(name)
    if channel is None:
        raise BadQueryError(f"channel: {name[:_SHOWN]!a} is not a channel "
                       "(switch:0, pm1:0, em:0:a, ...)")
    text = text_arg(request, "date")
    if text is None or text == "":
        day = today
    else:
        try:
            if not _DATE.fullmatch(text):
                raise ValueError
            day = date.fromisoformat(text)
        except ValueError:
            raise BadQueryError(f"date: {text[:_SHOWN]!a} is not a date (YYYY-MM-DD)") from None
        if day == date.max:
            # Its end, the next midnight, is beyond what a date holds.
            raise BadQueryError(f"date: {text!a} is out of range")
    return device, channel[0], channel[1], day


def day_document(result: ChannelDay, name: str, zone: tzinfo) -> dict[str, Any]:
    """
    The JSON document of a channel's day; C{name}: the channel as the API names it
    (C{switch:2}, where the CSV says C{2}). Each run has the report's keys and values
    (L{run_values}) but its C{channel}, which is C{name} too: a script that reads a run
    finds the same channel as in the document and in C{/api/fleet}.
    """
    times, powers = result.points
    return {
        "device_id": result.device_id,
        "channel": name,
        "date": result.day.isoformat(),
        "tz": str(zone),
        "points": {"time": list(times), "apower_W": list(powers)},
        # Replacing the value keeps the key where the report has it.
        "runs": [{**run_values(run, zone), "channel": name} for run in result.runs],
        "energy_Wh": result.energy_Wh,
    }


class DayResource(Resource):
    """
    C{GET /api/day}: see the module docstring and the README's JSON API.

    @param csv_path: the CSV file (C{--csv}); its rotated siblings are read too.
    @param zone: the zone of the days and times (C{--tz}).
    @param today: the server's date in C{zone}, the default of C{date}.
    @param run: runs work in a thread and fires with its result (the web's threads,
        L{shellylog.threads.WebThreads}; tests run it at once).
    @param rejected: where a request refused because L{MAX_READS} days are being read
        is counted (C{api_busy}).
    """

    isLeaf = True

    def __init__(self, csv_path: str, zone: tzinfo, today: Callable[[], date],
                 run: RunInThread, rejected: Counter[str] | None = None,
                 max_reads: int = MAX_READS) -> None:
        super().__init__()
        self._csv_path = csv_path
        self._zone = zone
        self._today = today
        self._run = run
        self._rejected: Counter[str] = Counter() if rejected is None else rejected
        self._max_reads = max_reads
        #: Days being read now.
        self.reading = 0
        self._warned: set[str] = set()

    def render_GET(self, request: Request) -> bytes | int:
        # A leaf sees every path below it: only /api/day itself is this document.
        if request.postpath not in ([], [b""]):
            return NoResource().render(request)  # type: ignore[no-any-return]
        request.setHeader(b"cache-control", b"no-store")
        try:
            device, name, channel, day = parse_query(request, self._today())
        except BadQueryError as e:
            return bad_query_answer(request, e)
        if self.reading >= self._max_reads:
            self._rejected["api_busy"] += 1
            request.setHeader(b"retry-after", b"1")
            return _text(request, 503, f"busy: {self.reading} days are being read; "
                                       "try again in a second")
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        warnings: list[str] = []
        csv_path, zone = self._csv_path, self._zone
        self.reading += 1
        d = self._run(lambda: _read(csv_path, device, channel, day, zone, warnings.append))

        def read(result: object) -> object:
            self.reading -= 1
            return result

        d.addBoth(read)

        def done(result: ChannelDay) -> None:
            self._log_warnings(warnings)
            if gone:
                return  # the client went away meanwhile: nothing to write to
            body = orjson.dumps(day_document(result, name, self._zone))
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            self._log_warnings(warnings)
            if failure.check(NotShellylogError, OSError):
                message = str(failure.value)
                log.error("/api/day: cannot read the CSV log: {error}", error=message)
            else:
                message = "internal error (logged)"
                log.failure("/api/day: reading the CSV log failed", failure)
            if not gone:
                request.write(_text(request, 500, f"cannot read the CSV log: {message}"))
                request.finish()

        d.addCallbacks(done, failed)
        return NOT_DONE_YET

    def _log_warnings(self, warnings: list[str]) -> None:
        # Each distinct warning once: a torn line in a rotated file would otherwise be
        # logged at every poll of every open page.
        for message in warnings:
            if message not in self._warned:
                if len(self._warned) >= _WARNINGS_KEPT:
                    self._warned.clear()
                self._warned.add(message)
                log.warn("/api/day: {problem}", problem=message)


def _read(csv_path: str, device: str, channel: str, day: date, zone: tzinfo,
          warn: Callable[[str], None]) -> ChannelDay:
    """In a thread: the log's files, and the channel's day from them."""
    return channel_day(log_files(csv_path), device, channel, day, zone, warn)


def _text(request: Request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return f"{message}\n".encode()
