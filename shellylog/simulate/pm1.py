"""
The power-meter family of the device model: a C{pm1:N} meters a line and has no output
(a PM Mini Gen3). Pure, as L{shellylog.simulate.model}.

A C{pm1} reports as a switch does: C{apower} and C{current} when past their thresholds,
the voltage on its own, and once a minute C{aenergy} with C{ret_aenergy} (returned
energy, which C{aenergy} counts too).
"""

from __future__ import annotations

import random
from typing import Any

from attrs import define, field, frozen

from shellylog.simulate.model import (
    CURRENT_THRESHOLD,
    POWER_THRESHOLD,
    VOLTAGE_THRESHOLD,
    DeviceMessage,
    EnergyCounter,
    Load,
    Meter,
    MeteredDevice,
    MeteredProfile,
    as_sent,
)


@frozen
class Pm1Profile(MeteredProfile["Pm1Device"]):
    """A power meter: the load on each of its C{pm1} channels."""

    loads: tuple[Load, ...]
    gen: int = 3

    def device_type(self) -> type[Pm1Device]:
        return Pm1Device

    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        return {
            "channels": [
                Meter(load, energy=EnergyCounter(total=as_sent(rng.uniform(0, 5e4), 3)))
                for load in self.loads
            ]
        }


PM1_PROFILES: dict[str, Pm1Profile] = {
    "pmmini": Pm1Profile(
        name="pmmini",
        model="shellypmminig3",
        app="PMMiniG3",
        sku="S3PM-001PCEU16",
        pro=False,
        # A fridge: its compressor runs 12 minutes, rests 18.
        loads=(Load(watts=95.0, pf=0.8, noise=0.03, on_minutes=12, off_minutes=18),),
    ),
}


@define
class Pm1Device(MeteredDevice[Pm1Profile]):
    """A simulated power meter: a C{pm1:N} for each of its meters."""

    returned_in_energy = True

    channels: list[Meter] = field(factory=list)

    def meters(self) -> list[Meter]:
        return self.channels

    def update(self) -> None:
        self.wander()
        now = self.clock.seconds()
        for meter in self.channels:
            self.measure(meter, meter.load.running(now, self.phase))

    def device_info(self) -> dict[str, Any]:
        info = super().device_info()
        info["gen"] = self.profile.gen
        return info

    def status(self, n: int, meter: Meter) -> dict[str, Any]:
        """The C{pm1:N} object of a full status."""
        minute_ts = self.minute_ts()
        return {
            "id": n,
            "voltage": self.volts(meter),
            "current": meter.current,
            "apower": meter.power,
            "freq": 50.0,
            "aenergy": meter.energy.aenergy(minute_ts),
            "ret_aenergy": meter.returned.aenergy(minute_ts),
        }

    def components(self) -> dict[str, Any]:
        return {f"pm1:{n}": self.status(n, meter) for n, meter in enumerate(self.channels)}

    def reported(self) -> None:
        for meter in self.channels:
            meter.mark({"apower": meter.power, "current": meter.current,
                        "voltage": self.volts(meter)})

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: C{apower} and C{current} each when moved past its threshold,
        the voltage in a message of its own, and just after a minute ends each meter's
        C{aenergy} and C{ret_aenergy} in a message of its own.
        """
        self.advance()
        self.update()
        messages: list[DeviceMessage] = []
        voltages: dict[str, Any] = {}
        for n, meter in enumerate(self.channels):
            change: dict[str, Any] = {"id": n}
            if meter.moved("apower", meter.power, POWER_THRESHOLD):
                change["apower"] = meter.power
            if meter.moved("current", meter.current, CURRENT_THRESHOLD):
                change["current"] = meter.current
            if len(change) > 1:
                meter.mark(change)
                messages.append(self.notification("NotifyStatus", {f"pm1:{n}": change}))
            voltage = self.volts(meter)
            if meter.moved("voltage", voltage, VOLTAGE_THRESHOLD):
                voltages[f"pm1:{n}"] = {"id": n, "voltage": voltage}
                meter.mark(voltages[f"pm1:{n}"])
        if voltages:
            messages.append(self.notification("NotifyStatus", voltages))
        if self.minute_ended():
            minute_ts = self.minute_ts()
            for n, meter in enumerate(self.channels):
                energy = {
                    "id": n,
                    "aenergy": meter.energy.aenergy(minute_ts),
                    "ret_aenergy": meter.returned.aenergy(minute_ts),
                }
                messages.append(self.notification("NotifyStatus", {f"pm1:{n}": energy}))
        return messages
