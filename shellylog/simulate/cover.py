"""
The cover family of the device model: each C{cover:N} drives a roller shutter's motor
and meters it (a Pro Dual Cover PM, or a 2PM in cover mode). Pure, as
L{shellylog.simulate.model}.

A cover rests at a position and now and then moves to another: while it moves its motor
draws power, otherwise C{apower} is 0. It reports the start of a move (C{state},
C{source}, C{last_direction} and the power), the end (C{state}, C{source},
C{current_pos}, no power), power and current past their thresholds in between, the
voltage on its own, and once a minute C{aenergy}.
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
    DeviceMessage,
    EnergyCounter,
    Load,
    Meter,
    MeteredDevice,
    MeteredProfile,
    as_sent,
)

#: A roller shutter's motor.
MOTOR = Load(watts=130.0, pf=0.6, noise=0.03)


@frozen
class CoverPlan:
    """
    What hangs on one cover channel.

    @ivar motor: the motor's draw while it moves.
    @ivar travel: seconds from closed to open.
    @ivar every: minutes between moves, on average.
    """

    motor: Load = MOTOR
    travel: float = 25.0
    every: float = 20.0


@frozen
class CoverProfile(MeteredProfile["CoverDevice"]):
    """A cover device: what each of its C{cover:N} drives, and how many inputs it has."""

    covers: tuple[CoverPlan, ...]
    inputs: int = 2

    def device_type(self) -> type[CoverDevice]:
        return CoverDevice

    def parts(self, rng: random.Random, now: float) -> dict[str, Any]:
        return {
            "covers": [
                CoverState(
                    id=n,
                    plan=plan,
                    meter=Meter(
                        plan.motor, energy=EnergyCounter(total=as_sent(rng.uniform(0, 2e3), 3))
                    ),
                    position=(position := rng.choice((0.0, 100.0))),
                    state="open" if position else "closed",
                    last_direction="open" if position else "close",
                    next_move=now + rng.uniform(0, plan.every * MINUTE),
                )
                for n, plan in enumerate(self.covers)
            ],
            "updated_at": now,
        }


COVER_PROFILES: dict[str, CoverProfile] = {
    "dualcover": CoverProfile(
        name="dualcover",
        model="shellypro2cover",
        app="Pro2CoverPM",
        sku="SPSH-002PE16EU",
        pro=True,
        covers=(CoverPlan(), CoverPlan(motor=Load(watts=180.0, pf=0.65, noise=0.03), travel=32.0)),
        inputs=4,
    ),
}


@define
class CoverState:
    """
    One cover: where it is, whether it moves, and its motor's meter.

    @ivar target: the position it moves to; C{None} at rest.
    @ivar next_move: when it next starts to move, on the clock.
    """

    id: int
    plan: CoverPlan
    meter: Meter
    position: float
    state: str
    last_direction: str
    source: str = "init"
    target: float | None = None
    next_move: float = 0.0

    @property
    def moving(self) -> bool:
        return self.target is not None

    def status(self, voltage: float, minute_ts: int, temp: float) -> dict[str, Any]:
        """The C{cover:N} object of a full status, its keys as the device has them."""
        meter = self.meter
        return {
            "aenergy": meter.energy.aenergy(minute_ts),
            "apower": meter.power,
            "current": meter.current,
            "current_pos": round(self.position),
            "freq": 50.0,
            "id": self.id,
            "last_direction": self.last_direction,
            "pf": abs(meter.pf),
            "pos_control": True,
            "source": self.source,
            "state": self.state,
            "temperature": {"tC": as_sent(temp, 1), "tF": as_sent(temp * 9 / 5 + 32, 1)},
            "voltage": voltage,
        }


@define
class CoverDevice(MeteredDevice[CoverProfile]):
    """A simulated cover device: an input per input, a C{cover:N} per cover."""

    covers: list[CoverState] = field(factory=list)
    updated_at: float = 0.0
    #: The covers that started or ended a move at the last update.
    _started: list[int] = field(factory=list)
    _stopped: list[int] = field(factory=list)

    def meters(self) -> list[Meter]:
        return [cover.meter for cover in self.covers]

    def update(self) -> None:
        """Move the covers that move, start those due; measure."""
        self.wander()
        now = self.clock.seconds()
        elapsed = max(0.0, now - self.updated_at)
        self.updated_at = now
        self._started, self._stopped = [], []
        for cover in self.covers:
            if cover.target is not None:
                step = elapsed * 100 / cover.plan.travel
                if abs(cover.target - cover.position) <= step:
                    cover.position = cover.target
                    cover.target = None
                    cover.state = {0.0: "closed", 100.0: "open"}.get(cover.position, "stopped")
                    if cover.state != "stopped":
                        cover.source = "limit_switch"
                    cover.next_move = now + MINUTE + self.rng.expovariate(
                        1 / (cover.plan.every * MINUTE)
                    )
                    self._stopped.append(cover.id)
                else:
                    cover.position += step if cover.target > cover.position else -step
            elif now >= cover.next_move:
                # Open what is mostly closed, and the other way round; now and then halfway.
                cover.target = self.rng.choice((0.0, 100.0, 100.0, 50.0))
                if cover.target == round(cover.position):
                    cover.target = 100.0 - cover.target if cover.target != 50.0 else 0.0
                opening = cover.target > cover.position
                cover.state = "opening" if opening else "closing"
                cover.last_direction = "open" if opening else "close"
                cover.source = "timer"
                self._started.append(cover.id)
            self.measure(cover.meter, cover.moving)

    def components(self) -> dict[str, Any]:
        components: dict[str, Any] = {
            f"input:{n}": {"id": n, "state": False} for n in range(self.profile.inputs)
        }
        minute_ts = self.minute_ts()
        for cover in self.covers:
            components[f"cover:{cover.id}"] = cover.status(
                self.volts(), minute_ts, self.temperature
            )
        return components

    def reported(self) -> None:
        for cover in self.covers:
            meter = cover.meter
            meter.mark({"apower": meter.power, "current": meter.current, "voltage": self.volts()})

    def sample(self) -> list[DeviceMessage]:
        """
        A measurement is due: a cover that started or ended a move reports it, with its
        power; otherwise C{apower} and C{current} each when moved past its threshold; the
        voltage in a message of its own; just after a minute ends, each cover's
        C{aenergy} in a message of its own.
        """
        self.advance()
        self.update()
        messages: list[DeviceMessage] = []
        voltage = self.volts()
        voltages: dict[str, Any] = {}
        for cover in self.covers:
            meter = cover.meter
            key = f"cover:{cover.id}"
            change: dict[str, Any] = {"id": cover.id}
            if cover.id in self._started:
                change.update(
                    state=cover.state, source=cover.source, last_direction=cover.last_direction
                )
            elif cover.id in self._stopped:
                change.update(
                    state=cover.state, source=cover.source, current_pos=round(cover.position)
                )
            moved = len(change) > 1
            if moved or meter.moved("apower", meter.power, POWER_THRESHOLD):
                change["apower"] = meter.power
            if moved or meter.moved("current", meter.current, CURRENT_THRESHOLD):
                change["current"] = meter.current
            if moved:
                change["pf"] = abs(meter.pf)
            if len(change) > 1:
                meter.mark(change)
                messages.append(self.notification("NotifyStatus", {key: change}))
            if meter.moved("voltage", voltage, VOLTAGE_THRESHOLD):
                voltages[key] = {"id": cover.id, "voltage": voltage}
                meter.mark(voltages[key])
        if voltages:
            messages.append(self.notification("NotifyStatus", voltages))
        if self.minute_ended():
            minute_ts = self.minute_ts()
            for cover in self.covers:
                aenergy = {"id": cover.id, "aenergy": cover.meter.energy.aenergy(minute_ts)}
                messages.append(
                    self.notification("NotifyStatus", {f"cover:{cover.id}": aenergy})
                )
        return messages
