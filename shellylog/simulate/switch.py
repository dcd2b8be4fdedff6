"""
The switch family of the device model: Shelly Plus and Pro xPM devices, whose switch
channels each drive a load and meter it. Pure, as L{shellylog.simulate.model}.

A L{SwitchDevice} evolves the power and energy of its channels, decides which values moved
past the device's reporting thresholds, and sends them as C{NotifyStatus} deltas, with the
per-minute C{aenergy} update; a L{SwitchProfile} says what hangs on each channel.
"""

from __future__ import annotations

import random
from typing import Any

from attrs import define, field, frozen

from shellylog.simulate.model import (
    CURRENT_THRESHOLD,
    MINUTE,
    POWER_THRESHOLD,
    VOLTAGE_THRESHOLD,
    Clock,
    DeviceMessage,
    EnergyCounter,
    Profile,
    SimulatedDevice,
    as_sent,
)

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
class SwitchProfile(Profile):
    """
    A switch device: what its channels drive. A Pro has C{pf} and C{freq} in its switch
    status.

    @ivar voltage_noise: volts; how much the mains voltage wanders between measurements.
    """

    channels: tuple[ChannelPlan, ...]
    nominal_voltage: float = 230.0
    voltage_noise: float = 0.3

    def create_device(
        self,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> SwitchDevice:
        return SwitchDevice.create(self, index, clock, seed, uptime, time_sync_after)


SWITCH_PROFILES: dict[str, SwitchProfile] = {
    "pro4pm": SwitchProfile(
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
    "plus1pm": SwitchProfile(
        name="plus1pm",
        model="shellyplus1pm",
        app="Plus1PM",
        sku="SNSW-001P16EU",
        channels=(ChannelPlan(load=120.0, pf=0.95, noise=0.02),),
        pro=False,
    ),
    "pump": SwitchProfile(
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


# -- the device --------------------------------------------------------------------------


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
    #: Its energy counter (total Wh, the last three minutes' mWh).
    energy: EnergyCounter = field(factory=EnergyCounter)
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
        self.apower = as_sent(self.plan.load * (1 + self.noise), 1)
        self.current = as_sent(self.apower / (voltage * self.plan.pf), 3)

    def status(self, voltage: float, minute_ts: int, pro: bool, temp: float) -> dict[str, Any]:
        """The C{switch:N} object of a full status."""
        status: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "output": self.output,
            "apower": self.apower,
            "voltage": as_sent(voltage, 1),
            "current": self.current,
        }
        if pro:
            status["pf"] = as_sent(self.plan.pf if self.apower else 0.0, 2)
            status["freq"] = 50.0
        status["aenergy"] = self.aenergy(minute_ts)
        status["temperature"] = {"tC": as_sent(temp, 1), "tF": as_sent(temp * 9 / 5 + 32, 1)}
        return status

    @property
    def total(self) -> float:
        """The energy counter, Wh."""
        return self.energy.total

    def aenergy(self, minute_ts: int) -> dict[str, Any]:
        """The C{aenergy} object: total Wh, the last three minutes in mWh, newest first."""
        return self.energy.aenergy(minute_ts)


@define
class SwitchDevice(SimulatedDevice[SwitchProfile]):
    """
    A simulated switch device: L{SimulatedDevice} with switch channels, an input for
    each, and their energy counters.

    @ivar phase: seconds into its on/off cycle a cycling channel was at C{clock} zero, so
        that a fleet of pumps does not switch in step.
    @ivar mains: volts; the level around which this device's voltage wanders.
    """

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
        profile: SwitchProfile,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> SwitchDevice:
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
                ChannelState(
                    id=n, plan=plan, output=plan.on,
                    energy=EnergyCounter(total=as_sent(rng.uniform(0, 5e4), 3)),
                )
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

    def minute_ts(self) -> int:
        """C{aenergy.minute_ts}: the start of the minute in progress, on the device's time."""
        return self.device_time(self._minute * MINUTE)

    # -- evolution -------------------------------------------------------------------

    def _scheduled_output(self, plan: ChannelPlan, now: float) -> bool | None:
        """The output a cycling channel must have at C{now}; C{None} if it does not cycle."""
        if not plan.cycles:
            return None
        cycle = (plan.on_minutes + plan.off_minutes) * MINUTE
        return (now + self.phase) % cycle < plan.on_minutes * MINUTE

    def advance(self) -> None:
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
                    channel.energy.add(joules)
                t = end
            if now < boundary:
                break
            for channel in self.channels:
                channel.energy.roll()
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

    # -- messages --------------------------------------------------------------------

    def components(self) -> dict[str, Any]:
        """An C{input:N} and a C{switch:N} for each channel."""
        components: dict[str, Any] = {}
        minute_ts = self.minute_ts()
        for channel in self.channels:
            components[f"input:{channel.id}"] = {"id": channel.id, "state": False}
            components[f"switch:{channel.id}"] = channel.status(
                self.voltage, minute_ts, self.profile.pro, self.temperature
            )
        return components

    def reported(self) -> None:
        """Deltas count from the values of the full status just sent."""
        for channel in self.channels:
            channel.sent_apower = channel.apower
            channel.sent_current = channel.current
            channel.sent_voltage = as_sent(self.voltage, 1)

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: the messages it gives. A channel that was switched reports
        C{output}, C{source}, C{apower} and C{current}; otherwise C{apower} and C{current}
        are each sent only when they moved past their threshold since last sent, the
        voltage (in a message of its own) likewise; just after a minute ends, each channel
        sends its C{aenergy} in a message of its own.
        """
        self.advance()
        switched = self._update()
        messages: list[DeviceMessage] = []
        voltage = as_sent(self.voltage, 1)
        voltages: dict[str, Any] = {}
        for channel in self.channels:
            key = f"switch:{channel.id}"
            change: dict[str, Any] = {"id": channel.id}
            if channel.id in switched:
                change.update(output=channel.output, source=channel.source)
                change.update(apower=channel.apower, current=channel.current)
            else:
                if abs(channel.apower - channel.sent_apower) > POWER_THRESHOLD:
                    change["apower"] = channel.apower
                if abs(channel.current - channel.sent_current) > CURRENT_THRESHOLD:
                    change["current"] = channel.current
            if len(change) > 1:
                channel.sent_apower = change.get("apower", channel.sent_apower)
                channel.sent_current = change.get("current", channel.sent_current)
                messages.append(self.notification("NotifyStatus", {key: change}))
            if abs(voltage - channel.sent_voltage) > VOLTAGE_THRESHOLD:
                voltages[key] = {"id": channel.id, "voltage": voltage}
                channel.sent_voltage = voltage
        if voltages:
            messages.append(self.notification("NotifyStatus", voltages))
        if self._aenergy_due:
            self._aenergy_due = False
            minute_ts = self.minute_ts()
            for channel in self.channels:
                aenergy = {"id": channel.id, "aenergy": channel.aenergy(minute_ts)}
                messages.append(
                    self.notification("NotifyStatus", {f"switch:{channel.id}": aenergy})
                )
        return messages
