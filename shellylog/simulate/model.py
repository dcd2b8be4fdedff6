"""
The device model of the simulator: pure, no reactor and no I/O. What every simulated
device is, whatever its family.

A L{SimulatedDevice} has an identity (from its L{Profile} and its number), a boot time
and a clock sync; time comes in through an injected clock (anything with C{seconds()}) and
randomness through an injected L{random.Random}. It builds the messages a device sends,
following C{protocol.md}: C{NotifyFullStatus} on connect (C{ts} is the uptime until the
device has synced its clock), and the answers to requests (C{Shelly.GetStatus}, or an error
object for a method it does not have).

What a device's components are, how they evolve and which of their changes it reports
belong to its family: a subclass of L{SimulatedDevice} with its own subclass of L{Profile},
in a module of its own (L{shellylog.simulate.switch}, L{shellylog.simulate.pm1}, ...).
The metering families after the switch share L{MeteredDevice}: a mains voltage that
wanders, L{Meter}s that measure a L{Load} and count its energy per minute.
"""

from __future__ import annotations

import json
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from attrs import define, field, frozen

#: A JSON-RPC message the device sends (a notification or the answer to a request), as
#: the JSON-ready object that L{encode} turns into the text of one WebSocket message.
#: Not L{shellylog.rpc.Frame}, which is what the server decodes such a text into.
DeviceMessage = dict[str, Any]

MINUTE = 60

#: The error a Gen2 device answers for a method it does not have.
NOT_FOUND = -114


class Clock(Protocol):
    """The one thing the device model needs of C{IReactorTime}."""

    def seconds(self) -> float: ...


def as_sent(value: float, digits: int) -> float:
    """C{value} rounded as the device sends it, and never C{-0.0}."""
    return round(value, digits) + 0.0


@frozen
class Profile(ABC):
    """
    A kind of device: the name C{--profile} gives it, and its identity. A family's
    subclass adds what its components drive, and makes its devices.

    @ivar pro: a Pro device (Ethernet, a C{ui} component, more memory).
    """

    name: str
    model: str
    app: str
    sku: str
    pro: bool

    @abstractmethod
    def create_device(
        self,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> SimulatedDevice[Any]:
        """
        Device number C{index} of this profile, booted C{uptime} seconds ago; its
        randomness comes from C{seed} and C{index}, so a run can be repeated.
        """


def device_mac(index: int) -> str:
    """The MAC of simulated device number C{index}: locally administered, unique per index."""
    return f"02{index:010X}"


def device_id(profile: Profile, index: int) -> str:
    """The id (C{<model>-<mac>}) of simulated device number C{index}."""
    return f"{profile.model}-{device_mac(index).lower()}"


def _component_order(key: str) -> tuple[str, int]:
    # As the device lists them: by type, then by number ("switch:10" after "switch:9").
    kind, _, number = key.partition(":")
    return kind, int(number) if number else -1


P = TypeVar("P", bound=Profile)


@define
class SimulatedDevice(ABC, Generic[P]):
    """
    One simulated Shelly Gen2 device.

    Everything it does happens when it is asked: L{connected} (the socket opened),
    L{sample} (a measurement is due), L{answer} (a request came in). Each first brings
    the device's state up to C{clock.seconds()}, then returns the messages a real device
    would send.

    A family implements L{components} and L{sample}, and if it needs to, L{advance} and
    L{reported}.

    @ivar booted_at: when the device booted, on C{clock}; C{ts} before the clock sync is
        the time since then.
    @ivar time_sync_after: seconds after boot at which the device has synced its clock
        (SNTP); from then on C{ts} and C{sys.unixtime} are Unix time.
    """

    profile: P
    index: int
    clock: Clock
    rng: random.Random
    booted_at: float
    time_sync_after: float = 10.0

    # -- the family's part -----------------------------------------------------------

    @abstractmethod
    def components(self) -> dict[str, Any]:
        """The family's components of the full status (C{switch:0}, ...), by key."""

    @abstractmethod
    def sample(self) -> list[DeviceMessage]:
        """A measurement is due: evolve, and return the messages it gives."""

    def advance(self) -> None:
        """Bring the state (energy counters, say) up to C{clock.seconds()}."""

    def reported(self) -> None:
        """The full status just went out: what is reported next counts from it."""

    # -- identity and time -----------------------------------------------------------

    @property
    def device_id(self) -> str:
        return device_id(self.profile, self.index)

    @property
    def mac(self) -> str:
        return device_mac(self.index)

    def uptime(self) -> float:
        return self.clock.seconds() - self.booted_at

    def synced(self) -> bool:
        """Has the device synced its clock?"""
        return self.uptime() >= self.time_sync_after

    def ts(self) -> float:
        """C{params.ts}: Unix time once synced, the uptime before."""
        now = self.clock.seconds()
        return as_sent(now if self.synced() else now - self.booted_at, 2)

    def device_time(self, unix: float) -> int:
        """The Unix time C{unix} on the device's time: the uptime then until synced."""
        return int(unix) if self.synced() else max(0, int(unix - self.booted_at))

    # -- messages --------------------------------------------------------------------

    def notification(self, method: str, components: dict[str, Any]) -> DeviceMessage:
        """A notification as the device sends it on the outbound socket."""
        params: dict[str, Any] = {"ts": self.ts()}
        params.update(components)
        return {"src": self.device_id, "dst": "ws", "method": method, "params": params}

    def full_status(self) -> dict[str, Any]:
        """The full status: C{NotifyFullStatus} params and C{Shelly.GetStatus} result."""
        self.advance()
        now = self.clock.seconds()
        synced = self.synced()
        pro = self.profile.pro
        status: dict[str, Any] = {"ble": {}, "cloud": {"connected": False}}
        if pro:
            status["eth"] = {"ip": None}
        status["mqtt"] = {"connected": False}
        status["sys"] = {
            "mac": self.mac,
            "restart_required": False,
            "time": time.strftime("%H:%M", time.gmtime(now)) if synced else None,
            "unixtime": int(now) if synced else None,
            "uptime": int(self.uptime()),
            "ram_size": 256388 if pro else 260728,
            "ram_free": 80320 if pro else 122072,
            "fs_size": 524288 if pro else 458752,
            "fs_free": 204800 if pro else 135168,
            "cfg_rev": 7,
            "kvs_rev": 0,
            "schedule_rev": 0,
            "webhook_rev": 0,
            "available_updates": {},
        }
        if pro:
            status["ui"] = {}
        status["wifi"] = {
            "sta_ip": f"10.{(self.index >> 16) & 255}.{(self.index >> 8) & 255}."
            f"{self.index & 255}",
            "status": "got ip",
            "ssid": "simulated",
            "rssi": -60 - self.index % 20,
        }
        status["ws"] = {"connected": True}
        status.update(self.components())
        return {key: status[key] for key in sorted(status, key=_component_order)}

    def connected(self) -> list[DeviceMessage]:
        """The socket opened: send the full status; deltas count from it from now on."""
        status = self.full_status()
        self.reported()
        return [self.notification("NotifyFullStatus", status)]

    def device_info(self) -> dict[str, Any]:
        """The C{Shelly.GetDeviceInfo} result."""
        return {
            "name": None,
            "id": self.device_id,
            "mac": self.mac,
            "slot": 0,
            "model": self.profile.sku,
            "gen": 2,
            "fw_id": "20231219-133934/1.1.0-g34b5d4f",
            "ver": "1.1.0",
            "app": self.profile.app,
            "auth_en": False,
            "auth_domain": None,
        }

    def answer(self, text: str | bytes) -> DeviceMessage | None:
        """
        The answer to a message from the server, or C{None} when it is no request (a
        notification or a response has no answer; neither has what is not JSON).
        Method names are case-insensitive, as on the device.
        """
        try:
            request = json.loads(text)
        except ValueError:
            return None
        if not isinstance(request, dict) or "id" not in request:
            return None
        method = request.get("method")
        if not isinstance(method, str):
            return None
        message: DeviceMessage = {"id": request["id"], "src": self.device_id}
        if isinstance(request.get("src"), str):
            message["dst"] = request["src"]
        name = method.lower()
        if name == "shelly.getstatus":
            message["result"] = self.full_status()
        elif name == "shelly.getdeviceinfo":
            message["result"] = self.device_info()
        else:
            message["error"] = {"code": NOT_FOUND, "message": f"Method {method} failed: not found"}
        return message


# -- what the metering families share ----------------------------------------------------

#: How far a value must move from the last one sent before a device reports it again.
POWER_THRESHOLD = 2.0  # W
CURRENT_THRESHOLD = 0.02  # A
VOLTAGE_THRESHOLD = 1.0  # V

DAY = 24 * 60 * MINUTE


def daylight(unix: float) -> float:
    """
    How much of its peak a solar panel makes at Unix time C{unix}, 0 to 1: from 06:00 to
    18:00 UTC of the simulated clock, most at noon.
    """
    hour = unix % DAY / 3600
    return max(0.0, math.sin(math.pi * (hour - 6) / 12))


@frozen
class Load:
    """
    What one metered channel measures.

    @ivar watts: drawn while running.
    @ivar pf: the load's power factor.
    @ivar noise: relative spread of the power around C{watts}.
    @ivar on_minutes: with C{off_minutes}, a cycle: runs C{on_minutes}, rests
        C{off_minutes}, and so on (a fridge). C{0}: no cycle.
    @ivar off_minutes: see C{on_minutes}.
    @ivar solar: watts that solar panels on the same line export at noon (L{daylight});
        the power is negative while they make more than the load draws.
    """

    watts: float
    pf: float = 0.95
    noise: float = 0.01
    on_minutes: float = 0.0
    off_minutes: float = 0.0
    solar: float = 0.0

    def running(self, now: float, phase: float) -> bool:
        """Does it run at C{now}, its cycle C{phase} seconds ahead?"""
        if self.watts <= 0:
            return False
        if not (self.on_minutes > 0 and self.off_minutes > 0):
            return True
        cycle = (self.on_minutes + self.off_minutes) * MINUTE
        return (now + phase) % cycle < self.on_minutes * MINUTE


@define
class EnergyCounter:
    """An energy counter: C{total} Wh, and the last three minutes' mWh, newest first."""

    total: float = 0.0
    by_minute: list[float] = field(factory=lambda: [0.0, 0.0, 0.0])

    def add(self, joules: float) -> None:
        self.total += joules / 3600  # Wh
        self.by_minute[0] += joules / 3.6  # mWh

    def roll(self) -> None:
        """A minute ended: the minute in progress becomes the last one."""
        self.by_minute = [0.0, self.by_minute[0], self.by_minute[1]]

    def aenergy(self, minute_ts: int) -> dict[str, Any]:
        """As C{aenergy} (or C{ret_aenergy}) shows it."""
        return {
            "total": as_sent(self.total, 3),
            "by_minute": [as_sent(v, 3) for v in self.by_minute],
            "minute_ts": minute_ts,
        }


@define
class Meter:
    """
    One metered channel: its present measurement, its energy counters (consumed, and
    returned while the power is negative), and the values last sent to the server.
    """

    load: Load
    energy: EnergyCounter = field(factory=EnergyCounter)
    returned: EnergyCounter = field(factory=EnergyCounter)
    #: Volts this channel's voltage is off the device's (the phases of a three-phase meter).
    offset: float = 0.0
    power: float = 0.0
    current: float = 0.0
    pf: float = 0.0
    noise: float = 0.0
    sent: dict[str, float] = field(factory=dict)

    def measure(self, voltage: float, rng: random.Random, running: bool, sun: float) -> None:
        """A new measurement at C{voltage}; the load draws if C{running}, C{sun} of 0 to 1."""
        drawn = 0.0
        if running:
            # Mean-reverting noise: the load wanders around its nominal power.
            spread = self.load.noise
            self.noise = max(
                -3 * spread, min(3 * spread, 0.7 * self.noise + rng.gauss(0, spread))
            )
            drawn = self.load.watts * (1 + self.noise)
        self.power = as_sent(drawn - self.load.solar * sun, 1)
        self.pf = as_sent(math.copysign(self.load.pf, self.power), 2) if self.power else 0.0
        self.current = as_sent(abs(self.power) / (voltage * self.load.pf), 3)

    @property
    def apparent(self) -> float:
        """Apparent power, VA."""
        return as_sent(abs(self.power) / self.load.pf, 1)

    def integrate(self, seconds: float, returned_in_energy: bool) -> None:
        """Count C{seconds} at the present power."""
        joules = self.power * seconds
        if joules >= 0:
            self.energy.add(joules)
        else:
            self.returned.add(-joules)
            if returned_in_energy:
                self.energy.add(-joules)

    def roll(self) -> None:
        self.energy.roll()
        self.returned.roll()

    def moved(self, name: str, value: float, threshold: float) -> bool:
        """Has C{value} moved past C{threshold} from the C{name} last sent?"""
        return abs(value - self.sent.get(name, value)) > threshold

    def mark(self, values: dict[str, Any]) -> None:
        """The numbers among C{values} went out."""
        for name, value in values.items():
            if isinstance(value, float | int) and not isinstance(value, bool):
                self.sent[name] = value


D = TypeVar("D", bound="MeteredDevice[Any]")


@define
class MeteredDevice(SimulatedDevice[P]):
    """
    A device whose L{Meter}s measure loads on a mains voltage that wanders, and count
    their energy per minute.

    A family implements L{meters} (every meter that counts energy), L{update} (a new
    measurement), and L{SimulatedDevice.components} and L{SimulatedDevice.sample}; a
    sample calls L{advance}, then L{update}, and just after a minute ended
    (L{minute_ended}) sends the energy counters.

    @ivar phase: seconds into its cycle a cycling load was at C{clock} zero, so that a fleet
        of devices does not switch in step.
    @ivar mains: volts; the level around which this device's voltage wanders.
    """

    #: Returned energy is also counted in the consumed counter (C{aenergy} of a C{pm1}).
    returned_in_energy: ClassVar[bool] = False

    phase: float = 0.0
    mains: float = 230.0
    voltage: float = 230.0
    voltage_noise: float = 0.3
    temperature: float = 40.0
    _integrated_to: float = 0.0
    _minute: int = 0
    # A minute ended since the last sample: the energy update is due.
    _minute_due: bool = False

    @classmethod
    def boot(
        cls: type[D],
        profile: Any,
        index: int,
        clock: Clock,
        seed: int | str,
        uptime: float,
        time_sync_after: float,
        nominal_voltage: float,
        voltage_noise: float,
        parts: Callable[[random.Random], dict[str, Any]],
    ) -> D:
        """
        Device number C{index} of C{profile}, booted C{uptime} seconds ago, with the
        family's C{parts} (made from the device's randomness), measured once.
        """
        now = clock.seconds()
        rng = random.Random(f"{seed}:{index}")
        mains = nominal_voltage + rng.uniform(-2, 2) * nominal_voltage / 230
        device = cls(
            profile=profile,
            index=index,
            clock=clock,
            rng=rng,
            booted_at=now - uptime,
            time_sync_after=time_sync_after,
            phase=rng.uniform(0, 3600),
            mains=mains,
            voltage=mains,
            voltage_noise=voltage_noise,
            temperature=rng.uniform(35, 48),
            **parts(rng),
        )
        device._integrated_to = now
        device._minute = int(now // MINUTE)
        device.update()
        return device

    @abstractmethod
    def meters(self) -> list[Meter]:
        """Every meter that counts energy."""

    @abstractmethod
    def update(self) -> None:
        """A new measurement of every meter (see L{measure})."""

    def wander(self) -> None:
        """The mains voltage moves a little."""
        self.voltage = (
            self.mains + 0.8 * (self.voltage - self.mains) + self.rng.gauss(0, self.voltage_noise)
        )

    def measure(self, meter: Meter, running: bool) -> None:
        """A new measurement of C{meter}, at the device's voltage and the sun now."""
        meter.measure(
            self.voltage + meter.offset, self.rng, running, daylight(self.clock.seconds())
        )

    def volts(self, meter: Meter | None = None) -> float:
        """The voltage as sent, of C{meter} or the device."""
        return as_sent(self.voltage + (meter.offset if meter else 0.0), 1)

    def minute_ts(self) -> int:
        """C{aenergy.minute_ts}: the start of the minute in progress, on the device's time."""
        return self.device_time(self._minute * MINUTE)

    def advance(self) -> None:
        """
        Count the energy drawn since the last call at the power then measured. At the end
        of a minute the energy update is due.
        """
        now = self.clock.seconds()
        t = self._integrated_to
        while True:
            boundary = (self._minute + 1) * MINUTE
            end = min(now, boundary)
            if end > t:
                for meter in self.meters():
                    meter.integrate(end - t, self.returned_in_energy)
                t = end
            if now < boundary:
                break
            for meter in self.meters():
                meter.roll()
            self._minute += 1
            self._minute_due = True
        self._integrated_to = max(t, now)

    def minute_ended(self) -> bool:
        """Did a minute end since last asked? (The energy update is due.)"""
        due, self._minute_due = self._minute_due, False
        return due


def encode(message: DeviceMessage) -> bytes:
    """C{message} as the text of one WebSocket message."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


@frozen
class MeteredProfile(Profile, Generic[D]):
    """
    A profile of a metering family: the family's device class (L{device_type}) and the
    parts a new device starts with (L{parts}); its devices measure on a supply of
    C{nominal_voltage}, which wanders by C{voltage_noise}.
    """

    nominal_voltage: float = field(default=230.0, kw_only=True)
    voltage_noise: float = field(default=0.3, kw_only=True)

    @abstractmethod
    def device_type(self) -> type[D]:
        """The family's device class."""

    @abstractmethod
    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        """The family's own fields of a device booted at C{now}, from its randomness."""

    def create_device(
        self,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> D:
        now = clock.seconds()
        return self.device_type().boot(
            self, index, clock, seed, uptime, time_sync_after, self.nominal_voltage,
            self.voltage_noise, lambda rng: self.parts(rng, now),
        )
