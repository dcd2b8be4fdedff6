"""
The single-channel energy-meter family of the device model: each C{em1:N} meters one line
and C{em1data:N} counts its energy (a Pro EM-50, with its contactor, an unmetered
C{switch:0}). Pure, as L{shellylog.simulate.model}.

An C{em1:N} reports its power, apparent power, current and power factor when its power
moved past the threshold, its voltage when that did; just after each minute the
C{em1data:N} go out whole, together, in a message of their own.
"""

from __future__ import annotations

import random
from typing import Any

from attrs import define, field, frozen

from shellylog.simulate.model import (
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
class Em1Profile(MeteredProfile["Em1Device"]):
    """
    A meter of single lines: the load on each C{em1} channel, and its relay.

    @ivar relay: the C{switch:0} output (a contactor it drives, unmetered), C{None}
        for none.
    """

    loads: tuple[Load, ...]
    relay: bool | None = None

    def device_type(self) -> type[Em1Device]:
        return Em1Device

    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        return {
            "channels": [
                Meter(
                    load,
                    energy=EnergyCounter(total=as_sent(rng.uniform(0, 5e5), 2)),
                    returned=EnergyCounter(total=as_sent(rng.uniform(0, 2e3), 2)),
                )
                for load in self.loads
            ]
        }


EM1_PROFILES: dict[str, Em1Profile] = {
    "proem50": Em1Profile(
        name="proem50",
        model="shellyproem50",
        app="ProEM",
        sku="SPEM-002CEBEU50",
        pro=True,
        loads=(
            Load(watts=850.0, pf=0.92, noise=0.04),  # the house
            # A heat pump: 20 minutes on, 25 off.
            Load(watts=1800.0, pf=0.85, noise=0.02, on_minutes=20, off_minutes=25),
        ),
        relay=True,
    ),
}


@define
class Em1Device(MeteredDevice[Em1Profile]):
    """A simulated meter of single lines: an C{em1:N} and C{em1data:N} per line."""

    channels: list[Meter] = field(factory=list)

    def meters(self) -> list[Meter]:
        return self.channels

    def update(self) -> None:
        self.wander()
        now = self.clock.seconds()
        for meter in self.channels:
            self.measure(meter, meter.load.running(now, self.phase))

    @staticmethod
    def power_values(meter: Meter) -> dict[str, Any]:
        """The fields of an C{em1} that move with its power."""
        return {
            "act_power": meter.power,
            "aprt_power": meter.apparent,
            "current": meter.current,
            "pf": meter.pf,
        }

    def em1(self, n: int, meter: Meter) -> dict[str, Any]:
        """The C{em1:N} object of a full status."""
        return {
            "act_power": meter.power,
            "aprt_power": meter.apparent,
            "calibration": "factory",
            "current": meter.current,
            "freq": 50.0,
            "id": n,
            "pf": meter.pf,
            "voltage": self.volts(meter),
        }

    @staticmethod
    def em1data(n: int, meter: Meter) -> dict[str, Any]:
        """The C{em1data:N} object: energy in and out, Wh."""
        return {
            "id": n,
            "total_act_energy": as_sent(meter.energy.total, 2),
            "total_act_ret_energy": as_sent(meter.returned.total, 2),
        }

    def components(self) -> dict[str, Any]:
        components: dict[str, Any] = {}
        for n, meter in enumerate(self.channels):
            components[f"em1:{n}"] = self.em1(n, meter)
            components[f"em1data:{n}"] = self.em1data(n, meter)
        if self.profile.relay is not None:
            components["switch:0"] = {
                "id": 0,
                "source": "init",
                "output": self.profile.relay,
                "temperature": {
                    "tC": as_sent(self.temperature, 1),
                    "tF": as_sent(self.temperature * 9 / 5 + 32, 1),
                },
            }
        return components

    def reported(self) -> None:
        for meter in self.channels:
            meter.mark({"act_power": meter.power, "voltage": self.volts(meter)})

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: an C{em1:N} delta for each channel whose power or voltage
        moved past its threshold; just after a minute ends, every C{em1data:N} in one
        message of their own.
        """
        self.advance()
        self.update()
        messages: list[DeviceMessage] = []
        for n, meter in enumerate(self.channels):
            change: dict[str, Any] = {"id": n}
            if meter.moved("act_power", meter.power, POWER_THRESHOLD):
                change.update(self.power_values(meter))
            voltage = self.volts(meter)
            if meter.moved("voltage", voltage, VOLTAGE_THRESHOLD):
                change["voltage"] = voltage
            if len(change) > 1:
                meter.mark(change)
                messages.append(self.notification("NotifyStatus", {f"em1:{n}": change}))
        if self.minute_ended():
            energy = {
                f"em1data:{n}": self.em1data(n, meter) for n, meter in enumerate(self.channels)
            }
            messages.append(self.notification("NotifyStatus", energy))
        return messages
