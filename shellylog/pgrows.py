"""
The database's side of the rows, pure: the table's definition for the configured columns,
the statements that write a minute's rows and read where to resume, and the conversion of
L{Row}s to the tuples those statements take (the same values as the CSV file's cells).

No I/O and no database driver here: L{shellylog.pgsink} runs these statements.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timezone

from shellylog.channels import ChannelKey, channel_name, parse_channel_name
from shellylog.csvlog import number_columns, values_getter
from shellylog.status import Number
from shellylog.tracker import MINUTE, Row

#: The table rows go to unless C{--db-table} names another.
DEFAULT_TABLE = "shellylog_minutes"

#: The session's staging table: a minute's rows are copied into it, then inserted from it
#: into the table in the same transaction (emptied at commit).
STAGING = "shellylog_incoming"

# A plain lower-case identifier, perhaps after a schema's: nothing that needs quoting
# rules beyond double quotes, and the name a user writes unquoted in a query is the same.
_TABLE_NAME = re.compile(r"(?:[a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}")

#: One value of a row tuple: the minute, a text, or a number (C{None}: NULL).
Value = datetime | str | Number | None


def check_table_name(name: str) -> str:
    """
    C{name} if it is a table name we accept (C{table} or C{schema.table}, lower-case
    letters, digits and C{_}, not starting with a digit, at most 63 characters a part).

    @raise ValueError: naming what is accepted.
    """
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(
            f"not a table name: {name!r} (lower-case letters, digits and _, not starting "
            "with a digit, at most 63 characters; schema.table for another schema)"
        )
    return name


def quoted(table: str) -> str:
    """The checked C{table} as an SQL identifier (each part in double quotes)."""
    return ".".join(f'"{part}"' for part in check_table_name(table).split("."))


def column_names(columns: tuple[str, ...] = ()) -> tuple[str, ...]:
    """
    The table's columns for the CSV's C{--columns}: C{minute}, C{device_id}, C{channel},
    then each number column under the CSV header's name in lower case (C{apower_w}, ...).
    """
    return ("minute", "device_id", "channel", *(c.lower() for c in number_columns(columns)))


def create_table(table: str, columns: tuple[str, ...] = ()) -> str:
    """
    The table's definition: one row per (device, channel, minute), which its primary key
    makes sure of (rule 4); C{double precision} for the numbers, NULL for an empty cell.
    """
    numbers = "".join(f",\n    {name} double precision" for name in column_names(columns)[3:])
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted(table)} (\n"
        "    minute timestamptz NOT NULL,\n"
        "    device_id text NOT NULL,\n"
        f"    channel text NOT NULL{numbers},\n"
        "    PRIMARY KEY (device_id, channel, minute)\n"
        ")"
    )


#: Whether the TimescaleDB extension is installed in the database (nothing requires it).
HAS_TIMESCALEDB = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"

#: Whether a table exists: to_regclass of its name, bound as the one parameter.
TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"

#: Waits for, then holds until the transaction ends, the table's setup lock (its key,
#: L{setup_lock_key}, bound as the one parameter): instances that start at once check and
#: make the table one at a time. CREATE TABLE IF NOT EXISTS is no guard against itself:
#: two sessions running it at once can both find no table, and the second then fails on
#: PostgreSQL's catalog (duplicate key in C{pg_type_typname_nsp_index}).
SETUP_LOCK = "SELECT pg_advisory_xact_lock(%s)"


def setup_lock_key(table: str) -> int:
    """
    The advisory lock key of C{table}'s setup: the same in every instance (not Python's
    C{hash}, which differs between processes), a signed 64-bit number as PostgreSQL takes.
    """
    digest = hashlib.blake2b(f"shellylog table setup {table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)

#: The columns of a table (its name bound as the one parameter).
TABLE_COLUMNS = (
    "SELECT attname FROM pg_attribute "
    "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
)


def missing_columns(table: str, columns: tuple[str, ...], found: Iterable[str]) -> str | None:
    """
    What is wrong with an existing table that lacks some of the columns the rows have
    (another C{--columns} made it), and how to mend it; C{None} if it has them all.
    """
    have = set(found)
    missing = [name for name in column_names(columns) if name not in have]
    if not missing:
        return None
    adds = ", ".join(f"ADD COLUMN {name} double precision" for name in missing)
    return (f"table {table} has no column {', '.join(missing)} (--columns): "
            f"ALTER TABLE {quoted(table)} {adds}; or choose another --db-table")


def make_hypertable(table: str) -> str:
    """TimescaleDB's hypertable of the table, partitioned by minute (run when made)."""
    return (f"SELECT create_hypertable('{quoted(table)}', 'minute', "
            "if_not_exists => TRUE, migrate_data => TRUE)")


def create_staging(table: str) -> str:
    """The session's staging table, shaped like C{table}, emptied at each commit."""
    return (f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} "
            f"(LIKE {quoted(table)}) ON COMMIT DELETE ROWS")


def copy_to_staging(columns: tuple[str, ...] = ()) -> str:
    """The COPY that takes a minute's rows into the staging table."""
    return f"COPY {STAGING} ({', '.join(column_names(columns))}) FROM STDIN"


def insert_from_staging(table: str, columns: tuple[str, ...] = ()) -> str:
    """
    Moves the staged rows into the table; a (device, channel, minute) it already has
    keeps the row it has (rule 4: written once, whatever a second writer says).
    """
    names = ", ".join(column_names(columns))
    return (f"INSERT INTO {quoted(table)} ({names}) SELECT {names} FROM {STAGING} "
            "ON CONFLICT DO NOTHING")


def insert_rows(table: str, columns: tuple[str, ...] = ()) -> str:
    """One row's INSERT, for C{executemany}: the other way to write a batch."""
    names = column_names(columns)
    marks = ", ".join(["%s"] * len(names))
    return (f"INSERT INTO {quoted(table)} ({', '.join(names)}) VALUES ({marks}) "
            "ON CONFLICT DO NOTHING")


def newest_minutes(table: str) -> str:
    """
    The newest minute of each (device, channel) in the table: a skip scan of the primary
    key's index (a recursive walk from one (device, channel) to the next, then the last
    minute of each), so the cost grows with the channels, not with the rows.
    """
    t = quoted(table)
    return (
        "WITH RECURSIVE keys AS (\n"
        f"    (SELECT device_id, channel FROM {t} ORDER BY device_id, channel LIMIT 1)\n"
        "    UNION ALL\n"
        "    SELECT later.device_id, later.channel FROM keys, LATERAL (\n"
        f"        SELECT device_id, channel FROM {t}\n"
        "        WHERE (device_id, channel) > (keys.device_id, keys.channel)\n"
        "        ORDER BY device_id, channel LIMIT 1) AS later\n"
        ")\n"
        "SELECT keys.device_id, keys.channel, (\n"
        f"    SELECT minute FROM {t} AS t\n"
        "    WHERE t.device_id = keys.device_id AND t.channel = keys.channel\n"
        "    ORDER BY minute DESC LIMIT 1)\n"
        "FROM keys"
    )


def row_tuples(rows: Iterable[Row], columns: tuple[str, ...] = ()) -> list[tuple[Value, ...]]:
    """
    The tuples of C{rows} in the order of L{column_names}: the minute's start (UTC), the
    device id, the channel's CSV cell (rule 8) and the numbers the CSV cells show
    (C{None} for an empty cell, NULL in the table).
    """
    numbers = values_getter(columns)
    out: list[tuple[Value, ...]] = []
    append = out.append
    minute: int | None = None
    start = datetime.fromtimestamp(0, timezone.utc)
    for row in rows:
        if row.minute != minute:
            minute = row.minute
            start = datetime.fromtimestamp(minute * MINUTE, timezone.utc)
        append((start, row.device_id, channel_name(row.channel), *numbers(row.values)))
    return out


def resume_points(
    found: Iterable[tuple[str, str, datetime]],
) -> dict[tuple[str, ChannelKey], int]:
    """
    The newest minute per (device id, channel key) of L{newest_minutes}' records; a
    channel whose name this version does not know is left out.
    """
    points: dict[tuple[str, ChannelKey], int] = {}
    for device_id, name, stamp in found:
        key = parse_channel_name(name)
        if key is None or stamp is None:
            continue
        points[(device_id, key)] = int(stamp.timestamp()) // MINUTE
    return points
