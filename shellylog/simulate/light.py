"""
The light family of the device model: each C{light:N} dims a lamp or an LED strip and
meters it (a Plus RGBW PM in light mode, a Pro Dimmer). Pure, as
L{shellylog.simulate.model}.

A light reports as a switch does: C{apower} and C{current} when past their thresholds,
the voltage on its own (the supply's, 24 V DC on a Plus RGBW PM), and once a minute
C{aenergy}.
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
class LightPlan:
    """
    What one light channel dims.

    @ivar load: the draw at full brightness (C{watts}), with its power factor and noise.
    @ivar brightness: percent, while on.
    @ivar on: the output.
    """

    load: Load
    brightness: int = 100
    on: bool = True

    @property
    def dimmed(self) -> Load:
        """The load at C{brightness}."""
        return Load(
            watts=self.load.watts * self.brightness / 100, pf=self.load.pf, noise=self.load.noise
        )


@frozen
class LightProfile(MeteredProfile["LightDevice"]):
    """A dimmer: what each of its C{light:N} drives, and how many inputs it has."""

    lights: tuple[LightPlan, ...]
    inputs: int = 0

    def device_type(self) -> type[LightDevice]:
        return LightDevice

    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        return {
            "channels": [
                Meter(plan.dimmed, energy=EnergyCounter(total=as_sent(rng.uniform(0, 2e4), 3)))
                for plan in self.lights
            ]
        }


#: An LED strip of the Plus RGBW PM: 24 V DC, so a power factor of 1.
def _strip(watts: float) -> Load:
    return Load(watts=watts, pf=1.0, noise=0.01)


LIGHT_PROFILES: dict[str, LightProfile] = {
    "rgbwpm": LightProfile(
        name="rgbwpm",
        model="shellyplusrgbwpm",
        app="PlusRGBWPM",
        sku="SNDC-0D4P10WW",
        pro=False,
        lights=(
            LightPlan(_strip(48.0), brightness=100),  # kitchen worktop
            LightPlan(_strip(36.0), brightness=60),  # shelves, dimmed
            LightPlan(_strip(24.0), brightness=100, on=False),  # off
            LightPlan(_strip(12.0), brightness=30),  # a night light
        ),
        inputs=4,
        nominal_voltage=24.0,
        voltage_noise=0.02,
    ),
}


@define
class LightDevice(MeteredDevice[LightProfile]):
    """A simulated dimmer: an input per input, a C{light:N} per channel."""

    channels: list[Meter] = field(factory=list)

    def meters(self) -> list[Meter]:
        return self.channels

    def update(self) -> None:
        self.wander()
        for plan, meter in zip(self.profile.lights, self.channels, strict=True):
            self.measure(meter, plan.on)

    def status(self, n: int, meter: Meter, minute_ts: int) -> dict[str, Any]:
        """The C{light:N} object of a full status, its keys as the device has them."""
        plan = self.profile.lights[n]
        temp = self.temperature
        return {
            "id": n,
            "source": "init",
            "output": plan.on,
            "brightness": plan.brightness,
            "temperature": {"tC": as_sent(temp, 1), "tF": as_sent(temp * 9 / 5 + 32, 1)},
            "aenergy": meter.energy.aenergy(minute_ts),
            "apower": meter.power,
            "current": meter.current,
            "voltage": self.volts(meter),
        }

    def components(self) -> dict[str, Any]:
        components: dict[str, Any] = {
            f"input:{n}": {"id": n, "state": False} for n in range(self.profile.inputs)
        }
        minute_ts = self.minute_ts()
        for n, meter in enumerate(self.channels):
            components[f"light:{n}"] = self.status(n, meter, minute_ts)
        return components

    def reported(self) -> None:
        for meter in self.channels:
            meter.mark({"apower": meter.power, "current": meter.current,
                        "voltage": self.volts(meter)})

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: C{apower} and C{current} each when moved past its threshold,
        the voltage in a message of its own, and just after a minute ends each light's
        C{aenergy} in a message of its own.
        """
        self.advance()
        self.update()
        messages: list[DeviceMessage] = []
        voltages: dict[str, Any] = {}
        for n, meter in enumerate(self.channels):
            key = f"light:{n}"
            change: dict[str, Any] = {"id": n}
            if meter.moved("apower", meter.power, POWER_THRESHOLD):
                change["apower"] = meter.power
            if meter.moved("current", meter.current, CURRENT_THRESHOLD):
                change["current"] = meter.current
            if len(change) > 1:
                meter.mark(change)
                messages.append(self.notification("NotifyStatus", {key: change}))
            voltage = self.volts(meter)
            if meter.moved("voltage", voltage, VOLTAGE_THRESHOLD):
                voltages[key] = {"id": n, "voltage": voltage}
                meter.mark(voltages[key])
        if voltages:
            messages.append(self.notification("NotifyStatus", voltages))
        if self.minute_ended():
            minute_ts = self.minute_ts()
            for n, meter in enumerate(self.channels):
                aenergy = {"id": n, "aenergy": meter.energy.aenergy(minute_ts)}
                messages.append(self.notification("NotifyStatus", {f"light:{n}": aenergy}))
        return messages
