"""
The device registry: which connection speaks for which device, what the server knows of
every device seen since start, and the counters the pages read.

One L{DeviceRegistry} belongs to the service (L{shellylog.tap.makeService} makes it). The
WebSocket factory's connections report to it (opened, bound, closed, frames received and
refused); C{/}, C{/status} and C{/metrics} read it. It knows nothing of Autobahn: a
connection is anything that has a device id, a peer and a way to be closed
(L{Connection}), and time is its C{clock}.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from attrs import Factory, define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from shellylog.logbudget import ACCESS_LINES_PER_MINUTE, PER_MINUTE, LogBudget
from shellylog.status import ChannelValues

# The namespace these lines had when the factory kept the registry: filters keep working.
log = Logger(namespace="shellylog.protocol")

#: Seconds after which a device that left is forgotten (its record and tracker state),
#: even while fewer than --max-devices are kept: a week.
FORGET_AFTER = 7 * 24 * 3600.0
#: Devices the tracker cannot forget yet that one look for devices to forget skips.
MAX_FORGET_MISSES = 4
#: The close code and reason of a connection replaced by a newer one of its device.
CLOSE_REPLACED = (1000, "replaced by a newer connection")


class ReadingSink(Protocol):
    """What the protocol and the registry need of the tracker."""

    def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None: ...

    def disconnected(self, device_id: str) -> None: ...

    def forget(self, device_id: str) -> bool: ...


class Connection(Protocol):
    """What the registry needs of one device connection."""

    @property
    def device_id(self) -> str | None:
        """The device the connection speaks for, once a frame named it."""

    @property
    def peer(self) -> str | None:
        """The peer's address, as shown in C{/status}."""

    def close_with(self, code: int, reason: str) -> bool:
        """Begin a close with C{code}; whether the connection was open."""


@define
class DeviceRecord:
    """What the server knows of one device id since it started, for C{/status}."""

    device_id: str
    connected: bool = False
    peer: str = ""
    connected_since: float | None = None
    last_frame_at: float | None = None
    frames: int = 0
    connections: int = 0
    #: When its last connection closed; None while connected (and before it ever was).
    left_at: float | None = None

    @property
    def reconnects(self) -> int:
        """Connections after the first."""
        return max(self.connections - 1, 0)


def _log_budget(registry: DeviceRegistry) -> LogBudget:
    return LogBudget(registry.clock, registry.max_warnings)


def _access_budget(registry: DeviceRegistry) -> LogBudget:
    # Access lines are info, and so is their summary: a browser polling the dashboard
    # over one connection passes the per-connection cap every minute, which is no warning.
    return LogBudget(registry.clock, ACCESS_LINES_PER_MINUTE, "access log lines",
                     LogLevel.info)


@define(eq=False)
class DeviceRegistry:
    """
    The devices and connections of the server, and what it counted of them.

    The counters are plain integers and L{Counter}s, cheap on the per-frame path; the
    pages read them when asked.

    @ivar sink: the tracker: told when a device's connection is gone, and asked to
        forget a device.
    @ivar clock: when devices bind and leave.
    @ivar max_devices: device records kept (C{--max-devices}); beyond it, those of the
        devices that left longest ago are forgotten first.
    @ivar max_warnings: warnings peers may cause per minute (C{--max-warnings}).
    @ivar devices: the current connection of each bound device id.
    @ivar records: what is known of every device id seen since start (and not forgotten).
    @ivar open_connections: every connection whose WebSocket opened and has not closed.
    @ivar per_address: open WebSocket connections (past the handshake's checks) by the
        peer's IP address.
    @ivar rejected: frames, requests and connections refused, by reason.
    @ivar received: frames received from devices, by method.
    @ivar connections_opened: WebSocket connections opened since start.
    @ivar connections_closed: WebSocket connections (that had opened) closed since start.
    @ivar devices_forgotten: device records forgotten (with the tracker's state).
    @ivar log_budget: how many warnings peers may cause (the site's share it).
    @ivar access_budget: how many lines of the site's access log they may cause.
    """

    sink: ReadingSink
    clock: IReactorTime
    max_devices: int = 20000
    max_warnings: int = PER_MINUTE
    devices: dict[str, Connection] = field(factory=dict, init=False)
    records: dict[str, DeviceRecord] = field(factory=dict, init=False)
    open_connections: set[Connection] = field(factory=set, init=False)
    per_address: Counter[str] = field(factory=Counter, init=False)
    rejected: Counter[str] = field(factory=Counter, init=False)
    received: Counter[str] = field(factory=Counter, init=False)
    connections_opened: int = field(default=0, init=False)
    connections_closed: int = field(default=0, init=False)
    devices_forgotten: int = field(default=0, init=False)
    log_budget: LogBudget = field(default=Factory(_log_budget, takes_self=True), init=False)
    access_budget: LogBudget = field(default=Factory(_access_budget, takes_self=True),
                                     init=False)
    # Devices that left, by when, oldest first: the ones that may be forgotten.
    _gone: dict[str, float] = field(factory=dict, init=False)
    # Who waits for every open connection to close (close_all).
    _all_closed: list[Deferred[None]] = field(factory=list, init=False)

    # -- connections -------------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        """C{connection}'s WebSocket opened."""
        self.connections_opened += 1
        self.open_connections.add(connection)

    def closed(self, connection: Connection) -> None:
        """C{connection}'s WebSocket, which had opened, has closed."""
        self.connections_closed += 1
        self.open_connections.discard(connection)
        if not self.open_connections:
            waiting, self._all_closed = self._all_closed, []
            for done in waiting:
                done.callback(None)

    def close_all(self, code: int, reason: str) -> Deferred[None]:
        """
        Begin a close of every open connection with C{code}; fires once all have closed
        (Autobahn drops a peer that does not answer the close within its timeout).
        """
        done: Deferred[None] = Deferred()
        if not self.open_connections:
            done.callback(None)
            return done
        self._all_closed.append(done)
        for connection in list(self.open_connections):
            connection.close_with(code, reason)
        return done

    def address_opened(self, address: str, limit: int) -> bool:
        """
        Count one more connection from C{address}, unless C{limit} are open from it
        already; whether it was counted.
        """
        if self.per_address[address] >= limit:
            return False
        self.per_address[address] += 1
        return True

    def address_closed(self, address: str) -> None:
        """A connection counted under C{address} has closed."""
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            # Not kept at zero: one entry per address ever seen would grow for good.
            del self.per_address[address]

    # -- devices -----------------------------------------------------------------------

    def is_current(self, connection: Connection) -> bool:
        """Whether C{connection} speaks for its device (no newer one replaced it)."""
        device_id = connection.device_id
        return device_id is not None and self.devices.get(device_id) is connection

    def bind(self, connection: Connection) -> DeviceRecord:
        """
        C{connection} now speaks for its device; an older connection of it is done.
        Returns the device's record.
        """
        device_id = connection.device_id
        assert device_id is not None
        old = self.devices.get(device_id)
        self.devices[device_id] = connection
        self._gone.pop(device_id, None)
        record = self.records.get(device_id)
        if record is None:
            record = self.records[device_id] = DeviceRecord(device_id)
            self.forget_gone()
        record.connected = True
        record.left_at = None
        record.peer = connection.peer or ""
        record.connected_since = self.clock.seconds()
        record.connections += 1
        if old is not None and old is not connection:
            # The device dialled again: the old socket is dead to it, and its readings
            # must not be carried into the new connection (rule 5).
            self.sink.disconnected(device_id)
            log.info("device {device} reconnected; closing its older connection",
                     event="device_replaced", device=device_id)
            old.close_with(*CLOSE_REPLACED)
        return record

    def unbind(self, connection: Connection) -> None:
        """C{connection} closed; if it spoke for its device, the device is gone."""
        device_id = connection.device_id
        if device_id is not None and self.devices.get(device_id) is connection:
            del self.devices[device_id]
            record = self.records[device_id]
            record.connected = False
            record.left_at = left_at = self.clock.seconds()
            self.sink.disconnected(device_id)
            self._gone[device_id] = left_at
            self.forget_gone()

    def forget_gone(self) -> None:
        """
        Forget the devices that left longest ago while more than C{max_devices} records
        are kept, and those gone for L{FORGET_AFTER}; a device the tracker cannot forget
        yet (its row for the open minute is not written) goes to the back of the line.
        """
        gone = self._gone
        now = self.clock.seconds()
        limit = self.max_devices
        misses = 0
        # A few misses at most per call: however many devices wait for their row, a new
        # device costs a bounded amount of work.
        while gone and misses < MAX_FORGET_MISSES:
            device_id, since = next(iter(gone.items()))
            if len(self.records) <= limit and now - since < FORGET_AFTER:
                return
            del gone[device_id]
            if not self.sink.forget(device_id):
                gone[device_id] = since
                misses += 1
                continue
            del self.records[device_id]
            self.devices_forgotten += 1
