"""
A simulated fleet for tests with real processes: the simulator's command line
(C{python -m shellylog.simulate}) against a server, under libfaketime if asked; and a
CSV file with earlier minutes of a day, written by the project's own code (the simulator's
model through the whole in-memory server: tracker, minute tick, CSV sink), for a server to
go on with.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, time, timedelta, tzinfo

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from shellylog.report.rows import Reading, RowFilter, read_rows
from shellylog.simulate.client import DeviceClientFactory, DeviceClientProtocol
from shellylog.simulate.profiles import PROFILES
from shellylog.tracker import MINUTE
from tests.support.processes import OutputProcess, child_environment
from tests.support.stack import Stack
from tests.support.tools import faketime_library


class Simulator(OutputProcess):
    """The simulator's process: its output, and its end."""

    async def stop(self) -> None:
        """SIGTERM, if it still runs; wait for its end."""
        if not self.ended.called:
            assert self.transport is not None
            self.transport.signalProcess("TERM")
        await self.ended


def spawn_simulator(case: SynchronousTestCase, folder: str, url: str, profiles: list[str],
                    seed: int, faketime: str | None = None) -> Simulator:
    """
    C{python -m shellylog.simulate} in C{folder}: one device of each of C{profiles}, in
    order (device number I{n} plays C{profiles[n]}), against C{url}; stopped at cleanup.
    """
    env = child_environment()
    if faketime is not None:
        env["LD_PRELOAD"] = faketime_library()
        env["FAKETIME"] = faketime
    simulator = Simulator()
    reactor.spawnProcess(
        simulator, sys.executable,
        [sys.executable, "-m", "shellylog.simulate", "--devices", str(len(profiles)),
         "--profile", ",".join(profiles), "--seed", str(seed), url],
        env=env, path=folder,
    )
    case.addCleanup(simulator.stop)
    return simulator


def seed_csv(case: SynchronousTestCase, profile: str, index: int, seed: int, start: float,
             end: float, *args: str) -> str:
    """
    A CSV file as the server writes it (options C{args}) while device number C{index} of
    C{profile} (the simulator's, with randomness C{seed}: the same device as the
    simulator's command line plays) is connected from C{start} to C{end} (Unix times), all
    on a L{task.Clock<twisted.internet.task.Clock>}; returns its path.
    """
    stack = Stack(case, *args, start=start)
    device = PROFILES[profile].create_device(index, stack.clock, seed=seed)
    factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", device, stack.clock)
    client = factory.buildProtocol(None)
    assert isinstance(client, DeviceClientProtocol)
    assert stack.harness._connect(client, client).upgraded
    factory.start_sampling()
    stack.advance_to(end)
    factory.stop()
    stack.stop()
    return stack.csv


def day_bounds(day: date, zone: tzinfo) -> tuple[int, int]:
    """The UTC epoch minutes of C{day}'s local midnight in C{zone}, and of the next day's."""
    first = datetime.combine(day, time(), zone)
    after = datetime.combine(day + timedelta(days=1), time(), zone)
    return int(first.timestamp()) // MINUTE, int(after.timestamp()) // MINUTE


def day_readings(path: str, device: str, channel: str, day: date, zone: tzinfo) -> list[Reading]:
    """
    The readings of C{device}'s C{channel} (its CSV cell, as C{2}) on C{day} in C{zone},
    from the CSV file C{path}, read by the report's code.
    """
    since, until = day_bounds(day, zone)
    keep = RowFilter(device=device, channels=frozenset({channel}), since=since, until=until)

    def warn(message: str) -> None:
        # A torn last line is the row being written right now: left out, as the report does.
        pass

    with open(path, encoding="utf-8", newline="") as f:
        return list(read_rows(f, path, warn, keep))
