"""
Rows into PostgreSQL, measured: a minute's batch of C{--rows} rows (40,000: 10,000
four-channel devices, every channel active) through the real L{PgSink} on the real
reactor, into a real local PostgreSQL.

For each of C{--repeat} minutes it reports:
  - C{write_ms}: what the tick spends on the reactor for the database (the rows made
    into tuples and queued: L{PgSink.write});
  - C{batch_s}: from that write until the batch is committed (in the sink's thread:
    COPY into the staging table, INSERT … ON CONFLICT DO NOTHING, commit);
  - C{reactor_lag_ms}: the longest a 5 ms heartbeat on the reactor was late while the
    batch ran (the GIL is shared with the writer's thread: what a tick would wait).
With C{--csv}, the tick writes to the CSV file too, as the server does with both (a
L{FanOut}; the fsync in the reactor's threads): C{write_ms} is then the whole of what the
tick spends writing the minute (the tracker's part: C{bench/tick.py}).
With C{--method executemany}, the batch is instead one C{executemany} of the INSERT in a
pipeline, in the same thread (for comparison; the sink uses COPY).

With C{--resume-rows N}, the table is first filled with N rows (server-side, 250 minutes
of the devices' channels, say) and the time of the resume query is reported
(C{resume_s}, and the number of channels it found).

Without C{--dsn}, a private cluster is made in a scratch folder (tests/support/postgres.py;
Debian's postgresql package) and removed after.

    python bench/db.py [--rows 40000] [--repeat 5] [--method copy|executemany] [--csv]
                       [--resume-rows 10000000] [--dsn DSN]

prints one JSON object of results on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, ensureDeferred

from shellylog import pgrows
from shellylog.csvlog import CsvSink
from shellylog.minutes import RowSink
from shellylog.pgsink import PgSink, PgWriter, describe
from shellylog.sinks import FanOut
from shellylog.status import ChannelValues
from shellylog.threads import OneThread, reactor_threads
from shellylog.tracker import Row

T0 = 29_000_000  # a minute (2025-02-19T21:20Z)
CHANNELS = 4
RET = ("ret_energy_total_Wh",)


class ManyWriter(PgWriter):
    """The other way to write a batch: C{executemany} of the INSERT, in a pipeline."""

    def write(self, batch: list[tuple[pgrows.Value, ...]]) -> None:
        try:
            connection = self._connect()
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(pgrows.insert_rows(self.table, self.columns), batch)
        except BaseException:
            self._failed()
            raise


def minute_rows(minute: int, count: int) -> list[Row]:
    rows = []
    for n in range(count // CHANNELS):
        device = f"shellypro4pm-{n:012x}"
        for channel in range(CHANNELS):
            power = 100.0 + (n + minute + 37 * channel) % 400 + 0.5
            rows.append(Row(minute, device, channel, ChannelValues(
                power, 230.1, round(power / 230.1, 3), 1234.567 + minute + channel, None)))
    return rows


def fill(dsn: str, rows: int) -> None:
    """C{rows} rows of earlier minutes, made by the server (10,000 devices' channels)."""
    import psycopg

    devices = 10_000
    minutes = max(1, rows // (devices * CHANNELS))
    with psycopg.connect(dsn, autocommit=True) as connection:
        PgWriter(dsn, columns=RET).resume()  # the table
        connection.execute(
            "INSERT INTO shellylog_minutes (minute, device_id, channel, apower_w) "
            "SELECT to_timestamp((%s - m) * 60), 'shellypro4pm-' || lpad(to_hex(d), 12, '0'),"
            " c::text, 100 "
            "FROM generate_series(1, %s) AS m, generate_series(0, %s) AS d, "
            "generate_series(0, 3) AS c ON CONFLICT DO NOTHING",
            (T0, minutes, devices - 1))
        connection.execute("VACUUM ANALYZE shellylog_minutes")


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": args.rows, "method": args.method, "csv": args.csv}
    if args.resume_rows:
        t0 = time.perf_counter()
        fill(dsn, args.resume_rows)
        results["fill_s"] = round(time.perf_counter() - t0, 1)
        writer = PgWriter(dsn, columns=RET)
        t0 = time.perf_counter()
        points = writer.resume()
        results["resume_s"] = round(time.perf_counter() - t0, 3)
        results["resume_channels"] = len(points)
        writer.close()
    kind = ManyWriter if args.method == "executemany" else PgWriter
    sink = PgSink(describe(dsn), kind(dsn, columns=RET), OneThread(reactor, "bench-db"),
                  reactor, columns=RET)
    sink.open()
    writes_to: RowSink = sink
    if args.csv:
        folder = tempfile.mkdtemp(prefix="bench-db-")
        csv_sink = CsvSink(os.path.join(folder, "power.csv"), ZoneInfo("Europe/Berlin"),
                           columns=RET, in_thread=reactor_threads(reactor))
        writes_to = FanOut([csv_sink, sink])
        csv_sink.open()
    lag = [0.0]
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        lag[0] = max(lag[0], now - last[0] - 0.005)
        last[0] = now

    heartbeat = task.LoopingCall(beat)
    heartbeat.start(0.005)
    writes, batches, lags = [], [], []
    for n in range(args.repeat):
        rows = minute_rows(T0 + 1 + n, args.rows)
        written = sink.rows_written
        await task.deferLater(reactor, 0.05, lambda: None)
        lag[0], last[0] = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        writes_to.write(rows)
        writes.append(time.perf_counter() - t0)
        while sink.rows_written < written + len(rows):
            if sink.problem:
                raise SystemExit(sink.problem)
            await task.deferLater(reactor, 0.001, lambda: None)
        batches.append(time.perf_counter() - t0)
        lags.append(lag[0])
    heartbeat.stop()
    writes_to.close()
    if args.csv:
        shutil.rmtree(folder)
    results.update(
        write_ms=[round(w * 1000, 1) for w in writes],
        batch_s=[round(b, 3) for b in batches],
        reactor_lag_ms=[round(g * 1000, 1) for g in lags],
        batch_s_median=round(statistics.median(batches), 3),
        write_ms_max=round(max(writes) * 1000, 1),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Time a minute's batch into PostgreSQL.")
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--method", choices=("copy", "executemany"), default="copy")
    parser.add_argument("--csv", action="store_true", help="write a CSV file too")
    parser.add_argument("--resume-rows", type=int, default=0)
    parser.add_argument("--dsn", default=None, help="a database (else a private cluster)")
    args = parser.parse_args()
    cluster = None
    dsn = args.dsn
    if dsn is None:
        from tests.support.postgres import Cluster

        cluster = Cluster(durable=True)  # commits fsynced, as in production
        cluster.start()
        dsn = cluster.dsn
    out: dict[str, Any] = {}

    def done(result: dict[str, Any]) -> None:
        out.update(result)

    d: Deferred[None] = ensureDeferred(run(args, dsn)).addCallback(done)
    d.addErrback(lambda f: out.update(error=f.getErrorMessage()))
    d.addBoth(lambda _: reactor.stop())
    try:
        reactor.run()
    finally:
        if cluster is not None:
            cluster.remove()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
