"""
C{/status}: what the server knows, as one JSON document for people and scripts, in pages
of at most L{PAGE_SIZE} devices.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from shellylog.channels import ChannelSelection, ChannelSpec, channel_name
from shellylog.config import public_values
from shellylog.csvlog import minute_timestamp
from shellylog.pgsink import describe

if TYPE_CHECKING:
    from shellylog.config import Config
    from shellylog.csvlog import CsvSink
    from shellylog.pgsink import PgSink
    from shellylog.registry import DeviceRegistry
    from shellylog.tracker import ChannelTracker

#: Devices in one page of C{/status}: the most C{?limit=} may ask for, and its default.
PAGE_SIZE = 1000


def _when(t: float | None, zone: tzinfo) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, zone).isoformat()


def public_options(config: Config) -> dict[str, Any]:
    """
    The options in force: every field of C{config} but the secret ones (the tokens, of
    which only whether one is required is shown; the database's password; its connection
    string, shown without the password).
    """
    shown: dict[str, Any] = {}
    for name, value in public_values(config).items():
        if name == "db-password-file":
            # In its place: the connection string, which may hold a password, as its
            # settings without it.
            shown["db"] = None if config.db is None else describe(config.db)
        shown[name] = value
    shown["token_required"] = bool(config.admission.tokens)
    return shown


def status_report(
    *,
    now: float,
    started_at: float,
    version: str,
    zone: tzinfo,
    options: dict[str, Any],
    registry: DeviceRegistry,
    channels: tuple[ChannelSpec, ...],
    tracker: ChannelTracker,
    sink: CsvSink | PgSink,
    columns: tuple[str, ...] = (),
    database: PgSink | None = None,
    instance: str,
) -> dict[str, Any]:
    """
    The C{/status} document: the server, then every device seen since start (and not
    forgotten) with those of its C{channels} the server logs, named as in the CSV file and
    in its rows' order (rule 8); with the C{ret_energy_total_Wh} column (rule 9), each
    channel shows it too. With a C{database}, the server part shows its state (named
    without its password). C{instance} is this instance's name (C{--instance}).
    """
    returned = "ret_energy_total_Wh" in columns
    selection = ChannelSelection.from_specs(channels)
    devices = []
    for device_id, record in sorted(registry.records.items()):
        shown = {}
        for channel, view in tracker.view(device_id).items():
            if not selection.selects(channel):
                continue
            latest = view.latest
            entry: dict[str, Any] = {
                "apower_W": latest.apower if latest else None,
                "voltage_V": latest.voltage if latest else None,
                "current_A": latest.current if latest else None,
                "energy_total_Wh": latest.energy_total if latest else None,
            }
            if returned:
                entry["ret_energy_total_Wh"] = latest.ret_energy_total if latest else None
            entry["active"] = view.active
            entry["last_minute_written"] = (
                None if view.last_written is None
                else minute_timestamp(view.last_written, zone)
            )
            shown[channel_name(channel)] = entry
        devices.append({
            "device_id": device_id,
            "connected": record.connected,
            "peer": record.peer,
            "connected_since": _when(record.connected_since, zone),
            "last_frame_at": _when(record.last_frame_at, zone),
            "frames_received": record.frames,
            "reconnects": record.reconnects,
            "channels": shown,
        })
    server: dict[str, Any] = {
        # First: behind a load balancer, which of the instances answered.
        "instance": instance,
        "version": version,
        "started_at": _when(started_at, zone),
        "uptime_s": round(now - started_at, 3),
        "connected_devices": len(registry.devices),
        "rows_written": sink.rows_written,
        "rows_pending": sink.pending,
        "rows_dropped": sink.rows_dropped,
        "write_problem": sink.problem if sink.pending else None,
        # Frames, requests and connections refused since start, by reason (as /metrics'
        # shellylog_frames_rejected_total): web_auth counts wrong web credentials.
        "rejected": dict(sorted(registry.rejected.items())),
        "options": options,
    }
    if database is not None:
        server["database"] = {
            "target": database.target,
            "up": database.up,
            "rows_written": database.rows_written,
            "rows_pending": database.pending,
            "rows_dropped": database.rows_dropped,
            "write_errors": database.write_errors,
            # Shown while nothing waits too: a database that does not answer at all.
            "problem": database.problem,
        }
    return {"server": server, "devices": devices}


def status_page(document: dict[str, Any], offset: int, limit: int) -> dict[str, Any]:
    """
    One page of a L{status_report} document: its server part, the devices from C{offset}
    (counted from 0), at most C{limit} of them, and where the next page is.
    """
    devices = document["devices"]
    page = devices[offset:offset + limit]
    after = offset + len(page)
    return {
        "server": document["server"],
        "devices": page,
        "page": {
            "offset": offset,
            "limit": limit,
            "total": len(devices),
            "next": f"/status?offset={after}&limit={limit}" if after < len(devices) else None,
        },
    }
