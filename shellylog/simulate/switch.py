"""
The device model of the simulator: pure, no reactor and no I/O.

A L{SimulatedDevice} holds the state of one device's switch channels; time comes in through
an injected clock (anything with C{seconds()}) and randomness through an injected
L{random.Random}. It evolves power and energy, decides which values moved past the device's
reporting thresholds, and builds the messages a device sends, following C{protocol.md}:
C{NotifyFullStatus} on connect (C{ts} is the uptime until the device has synced its clock),
C{NotifyStatus} deltas, the per-minute C{aenergy} update, and the answers to requests
(C{Shelly.GetStatus}, or an error object for a method it does not have).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Protocol

from attrs import define, field, frozen

#: A JSON-RPC message the device sends (a notification or the answer to a request), as
#: the JSON-ready object that L{encode} turns into the text of one WebSocket message.
#: Not L{shellylog.rpc.Frame}, which is what the server decodes such a text into.
DeviceMessage = dict[str, Any]

MINUTE = 60

#: How far a value must move from the last one sent before the device reports it again.
APOWER_THRESHOLD = 2.0  # W
CURRENT_THRESHOLD = 0.02  # A
VOLTAGE_THRESHOLD = 1.0  # V

#: The error a Gen2 device answers for a method it does not have.
NOT_FOUND = -114


class Clock(Protocol):
    """The one thing the device model needs of C{IReactorTime}."""

    def seconds(self) -> float: ...


# -- profiles ----------------------------------------------------------------------------


@frozen
class ChannelPlan:
    """
    What hangs on one switch channel.

    @ivar load: watts drawn while the output is on.
    @ivar on: the output at boot.
    @ivar pf: the load's power factor.
    @ivar noise: relative spread of the power around C{load}.
    @ivar on_minutes: with C{off_minutes}, a cycle: the output is switched on for
        C{on_minutes}, then off for C{off_minutes}, and so on (a pump). C{0}: no cycle.
    @ivar off_minutes: see C{on_minutes}.
    """

    load: float
    on: bool = True
    pf: float = 0.95
    noise: float = 0.01
    on_minutes: float = 0.0
    off_minutes: float = 0.0

    @property
    def cycles(self) -> bool:
        return self.on_minutes > 0 and self.off_minutes > 0


@frozen
class Profile:
    """
    A kind of device: its id prefix, its identity and what its channels drive.

    @ivar pro: a Pro device (Ethernet, C{pf} and C{freq} in the switch status).
    @ivar voltage_noise: volts; how much the mains voltage wanders between measurements.
    """

    name: str
    model: str
    app: str
    sku: str
    channels: tuple[ChannelPlan, ...]
    pro: bool
    nominal_voltage: float = 230.0
    voltage_noise: float = 0.3


PROFILES: dict[str, Profile] = {
    "pro4pm": Profile(
        name="pro4pm",
        model="shellypro4pm",
        app="Pro4PM",
        sku="SPSW-004PE16EU",
        channels=(
            ChannelPlan(load=412.0, pf=0.98),  # a heater
            ChannelPlan(load=0.0, on=False),  # nothing
            ChannelPlan(load=60.0, pf=0.9, noise=0.03),  # lights
            ChannelPlan(load=2.5, pf=0.5, noise=0.05),  # standby, below any threshold
        ),
        pro=True,
    ),
    "plus1pm": Profile(
        name="plus1pm",
        model="shellyplus1pm",
        app="Plus1PM",
        sku="SNSW-001P16EU",
        channels=(ChannelPlan(load=120.0, pf=0.95, noise=0.02),),
        pro=False,
    ),
    "pump": Profile(
        name="pump",
        model="shellypro4pm",
        app="Pro4PM",
        sku="SPSW-004PE16EU",
        channels=(
            ChannelPlan(load=0.0, on=False),
            ChannelPlan(load=0.0, on=False),
            # A pump on switch:2: three minutes on, five off.
            ChannelPlan(load=750.0, on=False, pf=0.85, noise=0.02, on_minutes=3, off_minutes=5),
            ChannelPlan(load=0.0, on=False),
        ),
        pro=True,
    ),
}


def device_mac(index: int) -> str:
    """The MAC of simulated device number C{index}: locally administered, unique per index."""
    return f"02{index:010X}"


def device_id(profile: Profile, index: int) -> str:
    """The id (C{<model>-<mac>}) of simulated device number C{index}."""
    return f"{profile.model}-{device_mac(index).lower()}"


# -- the device model --------------------------------------------------------------------


def _r(value: float, digits: int) -> float:
    # Rounded as the device sends it, and never "-0.0".
    return round(value, digits) + 0.0


@define
class ChannelState:
    """One switch channel: its output, its present measurements and its energy counters."""

    id: int
    plan: ChannelPlan
    output: bool
    source: str = "init"
    apower: float = 0.0
    current: float = 0.0
    noise: float = 0.0
    #: Energy counter, Wh.
    total: float = 0.0
    #: Energy per minute, mWh, newest (the minute in progress) first.
    by_minute: list[float] = field(factory=lambda: [0.0, 0.0, 0.0])
    #: The values last sent to the server.
    sent_apower: float = 0.0
    sent_current: float = 0.0
    sent_voltage: float = 0.0

    def measure(self, voltage: float, rng: random.Random) -> None:
        """Take a new measurement of power and current at C{voltage}."""
        if not self.output or self.plan.load <= 0:
            self.apower = 0.0
            self.current = 0.0
            return
        # Mean-reverting noise: the load wanders around its nominal power.
        spread = self.plan.noise
        self.noise = max(-3 * spread, min(3 * spread, 0.7 * self.noise + rng.gauss(0, spread)))
        self.apower = _r(self.plan.load * (1 + self.noise), 1)
        self.current = _r(self.apower / (voltage * self.plan.pf), 3)

    def status(self, voltage: float, minute_ts: int, pro: bool, temp: float) -> dict[str, Any]:
        """The C{switch:N} object of a full status."""
        status: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "output": self.output,
            "apower": self.apower,
            "voltage": _r(voltage, 1),
            "current": self.current,
        }
        if pro:
            status["pf"] = _r(self.plan.pf if self.apower else 0.0, 2)
            status["freq"] = 50.0
        status["aenergy"] = self.aenergy(minute_ts)
        status["temperature"] = {"tC": _r(temp, 1), "tF": _r(temp * 9 / 5 + 32, 1)}
        return status

    def aenergy(self, minute_ts: int) -> dict[str, Any]:
        """The C{aenergy} object: total Wh, the last three minutes in mWh, newest first."""
        return {
            "total": _r(self.total, 3),
            "by_minute": [_r(v, 3) for v in self.by_minute],
            "minute_ts": minute_ts,
        }


@define
class SimulatedDevice:
    """
    One simulated Shelly Gen2 device.

    Everything it does happens when it is asked: L{connected} (the socket opened),
    L{sample} (a measurement is due), L{answer} (a request came in). Each first brings
    the energy counters up to C{clock.seconds()}, then returns the frames a real device
    would send.

    @ivar booted_at: when the device booted, on C{clock}; C{ts} before the clock sync is
        the time since then.
    @ivar time_sync_after: seconds after boot at which the device has synced its clock
        (SNTP); from then on C{ts} and C{sys.unixtime} are Unix time.
    @ivar phase: seconds into its on/off cycle a cycling channel was at C{clock} zero, so
        that a fleet of pumps does not switch in step.
    @ivar mains: volts; the level around which this device's voltage wanders.
    """

    profile: Profile
    index: int
    clock: Clock
    rng: random.Random
    booted_at: float
    time_sync_after: float = 10.0
    phase: float = 0.0
    mains: float = 230.0
    voltage: float = 230.0
    temperature: float = 40.0
    channels: list[ChannelState] = field(factory=list)
    _integrated_to: float = 0.0
    _minute: int = 0
    # A minute ended since the last sample: the aenergy update is due.
    _aenergy_due: bool = False

    @classmethod
    def create(
        cls,
        profile: Profile,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> SimulatedDevice:
        """
        Device number C{index} of C{profile}, booted C{uptime} seconds ago; its randomness
        comes from C{seed} and C{index}, so a run can be repeated.
        """
        now = clock.seconds()
        rng = random.Random(f"{seed}:{index}")
        device = cls(
            profile=profile,
            index=index,
            clock=clock,
            rng=rng,
            booted_at=now - uptime,
            time_sync_after=time_sync_after,
            phase=rng.uniform(0, 3600),
            mains=(mains := profile.nominal_voltage + rng.uniform(-2, 2)),
            voltage=mains,
            temperature=rng.uniform(35, 48),
            channels=[
                ChannelState(id=n, plan=plan, output=plan.on, total=_r(rng.uniform(0, 5e4), 3))
                for n, plan in enumerate(profile.channels)
            ],
        )
        device._integrated_to = now
        device._minute = int(now // MINUTE)
        for channel in device.channels:
            scheduled = device._scheduled_output(channel.plan, now)
            if scheduled is not None:
                channel.output = scheduled
            channel.measure(device.voltage, rng)
        return device

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
        return _r(now if self.synced() else now - self.booted_at, 2)

    def minute_ts(self) -> int:
        """C{aenergy.minute_ts}: the start of the minute in progress, on the device's time."""
        start = self._minute * MINUTE
        return start if self.synced() else max(0, int(start - self.booted_at))

    # -- evolution -------------------------------------------------------------------

    def _scheduled_output(self, plan: ChannelPlan, now: float) -> bool | None:
        """The output a cycling channel must have at C{now}; C{None} if it does not cycle."""
        if not plan.cycles:
            return None
        cycle = (plan.on_minutes + plan.off_minutes) * MINUTE
        return (now + self.phase) % cycle < plan.on_minutes * MINUTE

    def _integrate(self) -> None:
        """
        Count the energy drawn since the last call at the power then measured. At the end
        of a minute its energy moves to C{by_minute[1]} and the C{aenergy} update is due.
        """
        now = self.clock.seconds()
        t = self._integrated_to
        while True:
            boundary = (self._minute + 1) * MINUTE
            end = min(now, boundary)
            if end > t:
                for channel in self.channels:
                    joules = channel.apower * (end - t)
                    channel.total += joules / 3600  # Wh
                    channel.by_minute[0] += joules / 3.6  # mWh
                t = end
            if now < boundary:
                break
            for channel in self.channels:
                channel.by_minute = [0.0, channel.by_minute[0], channel.by_minute[1]]
            self._minute += 1
            self._aenergy_due = True
        self._integrated_to = max(t, now)

    def _update(self) -> list[int]:
        """Switch cycling channels as scheduled and measure; return the switched channels."""
        now = self.clock.seconds()
        self.voltage = (
            self.mains
            + 0.8 * (self.voltage - self.mains)
            + self.rng.gauss(0, self.profile.voltage_noise)
        )
        switched = []
        for channel in self.channels:
            scheduled = self._scheduled_output(channel.plan, now)
            if scheduled is not None and scheduled != channel.output:
                channel.output = scheduled
                channel.source = "timer"
                switched.append(channel.id)
            channel.measure(self.voltage, self.rng)
        return switched

    # -- frames ----------------------------------------------------------------------

    def notification(self, method: str, components: dict[str, Any]) -> DeviceMessage:
        """A notification frame as the device sends it on the outbound socket."""
        params: dict[str, Any] = {"ts": self.ts()}
        params.update(components)
        return {"src": self.device_id, "dst": "ws", "method": method, "params": params}

    def full_status(self) -> dict[str, Any]:
        """The full status: C{NotifyFullStatus} params and C{Shelly.GetStatus} result."""
        self._integrate()
        now = self.clock.seconds()
        synced = self.synced()
        pro = self.profile.pro
        status: dict[str, Any] = {"ble": {}, "cloud": {"connected": False}}
        if pro:
            status["eth"] = {"ip": None}
        for channel in self.channels:
            status[f"input:{channel.id}"] = {"id": channel.id, "state": False}
        status["mqtt"] = {"connected": False}
        minute_ts = self.minute_ts()
        for channel in self.channels:
            status[f"switch:{channel.id}"] = channel.status(
                self.voltage, minute_ts, pro, self.temperature
            )
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
        return status

    def connected(self) -> list[DeviceMessage]:
        """The socket opened: send the full status; deltas count from it from now on."""
        status = self.full_status()
        for channel in self.channels:
            channel.sent_apower = channel.apower
            channel.sent_current = channel.current
            channel.sent_voltage = _r(self.voltage, 1)
        return [self.notification("NotifyFullStatus", status)]

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: the frames it gives. A channel that was switched reports
        C{output}, C{source}, C{apower} and C{current}; otherwise C{apower} and C{current}
        are each sent only when they moved past their threshold since last sent, the
        voltage (in a frame of its own) likewise; just after a minute ends, each channel
        sends its C{aenergy} in a frame of its own.
        """
        self._integrate()
        switched = self._update()
        frames: list[DeviceMessage] = []
        voltage = _r(self.voltage, 1)
        voltages: dict[str, Any] = {}
        for channel in self.channels:
            key = f"switch:{channel.id}"
            change: dict[str, Any] = {"id": channel.id}
            if channel.id in switched:
                change.update(output=channel.output, source=channel.source)
                change.update(apower=channel.apower, current=channel.current)
            else:
                if abs(channel.apower - channel.sent_apower) > APOWER_THRESHOLD:
                    change["apower"] = channel.apower
                if abs(channel.current - channel.sent_current) > CURRENT_THRESHOLD:
                    change["current"] = channel.current
            if len(change) > 1:
                channel.sent_apower = change.get("apower", channel.sent_apower)
                channel.sent_current = change.get("current", channel.sent_current)
                frames.append(self.notification("NotifyStatus", {key: change}))
            if abs(voltage - channel.sent_voltage) > VOLTAGE_THRESHOLD:
                voltages[key] = {"id": channel.id, "voltage": voltage}
                channel.sent_voltage = voltage
        if voltages:
            frames.append(self.notification("NotifyStatus", voltages))
        if self._aenergy_due:
            self._aenergy_due = False
            minute_ts = self.minute_ts()
            for channel in self.channels:
                aenergy = {"id": channel.id, "aenergy": channel.aenergy(minute_ts)}
                frames.append(self.notification("NotifyStatus", {f"switch:{channel.id}": aenergy}))
        return frames

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
        The answer to a frame from the server, or C{None} when it is no request (a
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
        frame: DeviceMessage = {"id": request["id"], "src": self.device_id}
        if isinstance(request.get("src"), str):
            frame["dst"] = request["src"]
        name = method.lower()
        if name == "shelly.getstatus":
            frame["result"] = self.full_status()
        elif name == "shelly.getdeviceinfo":
            frame["result"] = self.device_info()
        else:
            frame["error"] = {"code": NOT_FOUND, "message": f"Method {method} failed: not found"}
        return frame


def encode(message: DeviceMessage) -> bytes:
    """C{message} as the text of one WebSocket message."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")
