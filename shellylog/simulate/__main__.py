"""
The simulator's command line: a fleet of simulated devices against a server, until
interrupted::

    python -m shellylog.simulate ws://127.0.0.1:5000/ws --devices 10 --profile pump

C{--profile} takes a list (C{pro4pm,pro3em,pmmini}): the devices take its profiles in turn.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence

from autobahn.twisted.websocket import connectWS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from shellylog.simulate.client import Fleet
from shellylog.simulate.profiles import PROFILES

log = Logger(namespace="shellylog.simulate")


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(needed, hard), max(needed, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < needed:
            log.warn("open-file limit {hard} is below the {needed} needed", hard=hard,
                     needed=needed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shellylog.simulate",
        description="Simulated Shelly Gen2 devices that connect to a server's outbound "
        "WebSocket URL, report their channels' power like real ones, and answer "
        "its requests.",
    )
    parser.add_argument("url", help="the server's WebSocket URL, e.g. ws://127.0.0.1:5000/ws")
    parser.add_argument("--devices", type=int, default=1, help="how many devices (1)")
    parser.add_argument(
        "--profile",
        default="pro4pm",
        metavar="NAME[,NAME...]",
        help="pro4pm: four channels (heater, nothing, lights, standby); plus1pm: one "
        "channel; pump: a Pro 4PM whose switch:2 runs a pump 3 minutes on, 5 off; "
        "pmmini: a PM Mini Gen3 (pm1:0) metering a fridge; pro3em: a Pro 3EM (em:0, "
        "emdata:0) whose phase c exports around noon UTC; proem50: a Pro EM-50 (em1:0, "
        "em1:1, em1data:0, em1data:1, an unmetered switch:0); dualcover: a Pro Dual "
        "Cover PM (cover:0, cover:1) that moves now and then; rgbwpm: a Plus RGBW PM "
        "(light:0 to light:3). A list, e.g. pro4pm,pro3em,pmmini, mixes them: the "
        "devices take the profiles in turn (default pro4pm)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="measurements per second per device; each sends a delta only for values "
        "that moved past their threshold (1)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds over which the devices first connect (devices/100, at most 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomness (0)")
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="number of the first device; ids are unique per number, so simulators "
        "given disjoint ranges do not collide (0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connect")
    args = parser.parse_args(argv)
    args.profiles = args.profile.split(",")
    unknown = [name for name in args.profiles if name not in PROFILES]
    if unknown:
        parser.error(
            f"--profile: unknown profile {unknown[0]!r} (choose from "
            f"{', '.join(sorted(PROFILES))})"
        )
    if args.devices < 1:
        parser.error("--devices: at least 1")
    if not args.rate > 0:
        parser.error("--rate: must be more than 0")
    if args.ramp is None:
        args.ramp = min(10.0, args.devices / 100)
    if args.ramp < 0:
        parser.error("--ramp: 0 or more")
    if not args.url.startswith(("ws://", "wss://")):
        parser.error("url: must start with ws:// or wss://")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until interrupted."""
    args = parse_args(argv)
    from twisted.internet import reactor

    level = LogLevel.debug if args.verbose else LogLevel.info
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=level)],
            )
        ]
    )
    _raise_file_limit(args.devices + 256)
    profiles = [PROFILES[name] for name in args.profiles]
    clock: IReactorTime = reactor
    fleet = Fleet.create(
        args.url, profiles, args.devices, clock, rate=args.rate, seed=args.seed, first=args.first
    )
    log.info(
        "simulating {count} {profile} devices ({first_id} ...) against {url}",
        count=args.devices,
        profile=",".join(profile.name for profile in profiles),
        first_id=fleet.factories[0].device.device_id,
        url=args.url,
    )
    step = args.ramp / args.devices
    for n, factory in enumerate(fleet.factories):
        # Each device measures on its own phase, and they dial in over the ramp.
        clock.callLater(n * step, connectWS, factory)
        clock.callLater(n * step + (n % 97) / 97 / args.rate, factory.start_sampling)

    def report() -> None:
        log.info(
            "{connected}/{count} devices connected; {frames} frames sent, {answers} requests "
            "answered",
            connected=fleet.connected,
            count=args.devices,
            frames=fleet.frames_sent,
            answers=fleet.answers,
        )

    LoopingCall(report).start(10.0, now=False)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
