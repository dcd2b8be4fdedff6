"""
The three-phase energy-meter family of the device model: an C{em:0} meters phases
C{a}, C{b} and C{c} and their total, and C{emdata:0} counts their energy (a Pro 3EM).
Pure, as L{shellylog.simulate.model}.

The power of a phase is negative while it exports (solar panels at noon); its energy then
grows C{*_total_act_ret_energy}. C{em:0} reports the phases that moved past the threshold
with the totals; C{emdata:0} is sent whole, on its own, just after each minute.
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

PHASES = ("a", "b", "c")


@frozen
class EmProfile(MeteredProfile["EmDevice"]):
    """A three-phase meter: the load on each phase, C{a}, C{b}, C{c}."""

    phases: tuple[Load, Load, Load]

    def device_type(self) -> type[EmDevice]:
        return EmDevice

    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        return {
            "phases": [
                Meter(
                    load,
                    energy=EnergyCounter(total=as_sent(rng.uniform(1e5, 2e6), 2)),
                    returned=EnergyCounter(
                        total=as_sent(rng.uniform(0, 1e3) if load.solar else 0.0, 2)
                    ),
                    offset=rng.uniform(-0.5, 0.5),
                )
                for load in self.phases
            ]
        }


EM_PROFILES: dict[str, EmProfile] = {
    "pro3em": EmProfile(
        name="pro3em",
        model="shellypro3em",
        app="Pro3EM",
        sku="SPEM-003CEBEU",
        pro=True,
        phases=(
            Load(watts=375.0, pf=0.76, noise=0.03),
            Load(watts=170.0, pf=0.78, noise=0.03),
            # Solar panels on phase c: it exports around noon.
            Load(watts=300.0, pf=0.9, noise=0.05, solar=2400.0),
        ),
    ),
}


@define
class EmDevice(MeteredDevice[EmProfile]):
    """A simulated three-phase meter: C{em:0}, C{emdata:0} and C{temperature:0}."""

    phases: list[Meter] = field(factory=list)

    def meters(self) -> list[Meter]:
        return self.phases

    def update(self) -> None:
        self.wander()
        for meter in self.phases:
            self.measure(meter, running=True)

    def phase_values(self, name: str, meter: Meter) -> dict[str, Any]:
        """The fields of phase C{name} in C{em:0}, but its voltage."""
        return {
            f"{name}_act_power": meter.power,
            f"{name}_aprt_power": meter.apparent,
            f"{name}_current": meter.current,
            f"{name}_pf": meter.pf,
        }

    def totals(self) -> dict[str, Any]:
        """The C{total_*} fields of C{em:0}."""
        return {
            "total_act_power": as_sent(sum(m.power for m in self.phases), 3),
            "total_aprt_power": as_sent(sum(m.apparent for m in self.phases), 3),
            "total_current": as_sent(sum(m.current for m in self.phases), 3),
        }

    def em(self) -> dict[str, Any]:
        """The C{em:0} object of a full status, its keys in the order the device has them."""
        status: dict[str, Any] = {}
        for name, meter in zip(PHASES, self.phases, strict=True):
            values = self.phase_values(name, meter)
            status[f"{name}_act_power"] = values[f"{name}_act_power"]
            status[f"{name}_aprt_power"] = values[f"{name}_aprt_power"]
            status[f"{name}_current"] = values[f"{name}_current"]
            status[f"{name}_freq"] = 50.0
            status[f"{name}_pf"] = values[f"{name}_pf"]
            status[f"{name}_voltage"] = self.volts(meter)
        status["id"] = 0
        # No neutral current transformer.
        status["n_current"] = None
        status.update(self.totals())
        status["user_calibrated_phase"] = []
        return status

    def emdata(self) -> dict[str, Any]:
        """The C{emdata:0} object: each phase's energy, then their sums, in Wh."""
        status: dict[str, Any] = {}
        for name, meter in zip(PHASES, self.phases, strict=True):
            status[f"{name}_total_act_energy"] = as_sent(meter.energy.total, 2)
            status[f"{name}_total_act_ret_energy"] = as_sent(meter.returned.total, 2)
        status["id"] = 0
        status["total_act"] = as_sent(sum(m.energy.total for m in self.phases), 2)
        status["total_act_ret"] = as_sent(sum(m.returned.total for m in self.phases), 2)
        return status

    def components(self) -> dict[str, Any]:
        return {
            "em:0": self.em(),
            "emdata:0": self.emdata(),
            "temperature:0": {
                "id": 0,
                "tC": as_sent(self.temperature, 1),
                "tF": as_sent(self.temperature * 9 / 5 + 32, 1),
            },
        }

    def reported(self) -> None:
        for meter in self.phases:
            meter.mark({"power": meter.power, "voltage": self.volts(meter)})

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: an C{em:0} delta with each phase whose power moved past the
        threshold (its power, apparent power, current and power factor) or whose voltage
        did, and with the totals when a power did; just after a minute ends, the whole
        C{emdata:0} in a message of its own.
        """
        self.advance()
        self.update()
        messages: list[DeviceMessage] = []
        change: dict[str, Any] = {"id": 0}
        powers = False
        for name, meter in zip(PHASES, self.phases, strict=True):
            if meter.moved("power", meter.power, POWER_THRESHOLD):
                change.update(self.phase_values(name, meter))
                meter.mark({"power": meter.power})
                powers = True
            voltage = self.volts(meter)
            if meter.moved("voltage", voltage, VOLTAGE_THRESHOLD):
                change[f"{name}_voltage"] = voltage
                meter.mark({"voltage": voltage})
        if powers:
            change.update(self.totals())
        if len(change) > 1:
            messages.append(self.notification("NotifyStatus", {"em:0": change}))
        if self.minute_ended():
            emdata = self.emdata()
            # In a delta, as the device sends it: the id first.
            delta = {"id": emdata.pop("id"), **emdata}
            messages.append(self.notification("NotifyStatus", {"emdata:0": delta}))
        return messages
