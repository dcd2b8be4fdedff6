"""
The network side of the simulator: Autobahn WebSocket clients over Twisted.

A L{DeviceClientFactory} puts one L{SimulatedDevice}, of any family, on its outbound
WebSocket: it measures on a timer, sends what the device reports while connected, answers
the server's requests, and dials again with exponential back-off, like a device whose
server went away. A L{Fleet} is many of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from attrs import define
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IConnector, IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from shellylog.simulate.model import DeviceMessage, Profile, SimulatedDevice, encode

log = Logger(namespace="shellylog.simulate")

class DeviceClientProtocol(WebSocketClientProtocol):
    """The WebSocket of one simulated device: frames out, requests answered."""

    factory: DeviceClientFactory

    def onOpen(self) -> None:
        self.factory.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return
        answer = self.factory.device.answer(payload)
        if answer is not None:
            self.send_frame(answer)
            self.factory.answers += 1

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.closed(self)

    def send_frame(self, frame: DeviceMessage) -> None:
        """Send one frame as a text message."""
        self.sendMessage(encode(frame))
        self.factory.frames_sent += 1


class DeviceClientFactory(WebSocketClientFactory, ReconnectingClientFactory):
    """
    One simulated device and its outbound WebSocket: measures every C{1/rate} seconds
    whether connected or not (frames that find no socket are dropped, as on a device),
    and dials again after a drop or a failed attempt, waiting longer each time.
    """

    protocol = DeviceClientProtocol  # type: ignore[assignment]
    # Thousands of devices: no "Starting factory" or "will retry" line for each.
    noisy = False
    initialDelay = 1.0
    maxDelay = 60

    def __init__(
        self, url: str, device: SimulatedDevice[Any], clock: IReactorTime, rate: float = 1.0
    ) -> None:
        WebSocketClientFactory.__init__(self, url=url, reactor=clock)
        # The back-off's clock (ReconnectingClientFactory's attribute).
        self.clock = clock  # type: ignore[assignment]
        self.device = device
        self.rate = rate
        self.connection: DeviceClientProtocol | None = None
        self.frames_sent = 0
        self.answers = 0
        self.connects = 0
        self._sampler = LoopingCall(self.sample)
        self._sampler.clock = clock

    def start_sampling(self) -> None:
        """Start measuring, C{rate} times a second."""
        self._sampler.start(1.0 / self.rate, now=False)

    def stop(self) -> None:
        """Stop measuring and reconnecting; close the socket if open."""
        self.stopTrying()
        if self._sampler.running:
            self._sampler.stop()
        if self.connection is not None:
            self.connection.sendClose()

    def sample(self) -> None:
        """Measure; send what the device reports, if connected."""
        frames = self.device.sample()
        if self.connection is not None:
            for frame in frames:
                self.connection.send_frame(frame)

    def opened(self, connection: DeviceClientProtocol) -> None:
        """The WebSocket is open: send the full status, and count back-off from scratch."""
        self.resetDelay()
        self.connects += 1
        self.connection = connection
        log.debug("{device} connected", device=self.device.device_id)
        for frame in self.device.connected():
            connection.send_frame(frame)

    def closed(self, connection: DeviceClientProtocol) -> None:
        """The WebSocket closed."""
        if self.connection is connection:
            self.connection = None
            log.debug("{device} disconnected", device=self.device.device_id)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        log.debug(
            "{device} could not connect: {reason}",
            device=self.device.device_id,
            reason=reason.getErrorMessage(),
        )
        self.retry(connector)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        self.retry(connector)


@define
class Fleet:
    """
    C{count} simulated devices, each with its own factory: of one profile, or of several,
    which the devices take in turn (device C{n} has profile C{n} modulo their number).
    """

    factories: list[DeviceClientFactory]

    @classmethod
    def create(
        cls,
        url: str,
        profile: Profile | Sequence[Profile],
        count: int,
        clock: IReactorTime,
        rate: float = 1.0,
        seed: int = 0,
        first: int = 0,
    ) -> Fleet:
        profiles = [profile] if isinstance(profile, Profile) else list(profile)
        if not profiles:
            raise ValueError("a fleet needs a profile")
        return cls(
            [
                DeviceClientFactory(
                    url,
                    profiles[n % len(profiles)].create_device(
                        first + n,
                        clock,
                        seed=seed,
                        uptime=random.Random(f"{seed}:{first + n}:boot").uniform(3, 8),
                    ),
                    clock,
                    rate,
                )
                for n in range(count)
            ]
        )

    @property
    def connected(self) -> int:
        return sum(1 for f in self.factories if f.connection is not None)

    @property
    def frames_sent(self) -> int:
        return sum(f.frames_sent for f in self.factories)

    @property
    def answers(self) -> int:
        return sum(f.answers for f in self.factories)
