"""
A device's known status: full replacement, partial deep-merge, channel readings out.

Pure: no reactor, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field, frozen

from shellylog.rpc import FrameError

Number = int | float

#: The key prefix of switch components (C{switch:0}, ...).
SWITCH = "switch:"


def number(value: object) -> Number | None:
    """
    C{value} if it is a finite JSON number, else C{None}.

    Booleans are not numbers here (C{True} would otherwise write as C{1}).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


@frozen
class ChannelValues:
    """
    The values of one switch channel that go into a CSV row; C{None} is "missing".
    """

    apower: Number | None
    voltage: Number | None
    current: Number | None
    energy_total: Number | None

    @classmethod
    def from_component(cls, component: Mapping[str, Any]) -> ChannelValues:
        """Read the values out of a C{switch:N} status object."""
        aenergy = component.get("aenergy")
        total = aenergy.get("total") if isinstance(aenergy, dict) else None
        return cls(
            apower=number(component.get("apower")),
            voltage=number(component.get("voltage")),
            current=number(component.get("current")),
            energy_total=number(total),
        )


def _strip_nulls(value: Any) -> Any:
    # A null inside a newly added object deletes nothing and means "absent".
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if value is None:
            into.pop(key, None)
            continue
        old = into.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            _merge(old, value)
        else:
            into[key] = _strip_nulls(value)


def _check_components(components: Mapping[str, Any], *, partial: bool) -> None:
    # Validate before changing anything, so a bad frame leaves no trace.
    for key, value in components.items():
        if not key.startswith(SWITCH):
            continue
        if value is None and partial:
            continue
        if not isinstance(value, dict):
            raise FrameError("bad_component", f"{key} is a {type(value).__name__}, not an object")
        aenergy = value.get("aenergy")
        if aenergy is not None and not isinstance(aenergy, dict):
            raise FrameError("bad_component", f"{key}.aenergy is not an object")


@define
class DeviceStatus:
    """
    What one connection knows of its device's status: its C{switch:N} components, kept as
    the device's JSON objects. Other components (C{sys}, C{wifi}, ...) carry no power and
    are not kept: a connection costs memory for as long as it is open.
    """

    components: dict[str, Any] = field(factory=dict)
    # The values of each switch component, made again only when a frame touches it: most
    # frames change one channel, and every frame asks for all of them.
    _values: dict[str, ChannelValues] = field(factory=dict)

    def replace(self, full: Mapping[str, Any]) -> None:
        """
        Replace everything known with a full status (C{NotifyFullStatus}, C{Shelly.GetStatus}).

        @raise FrameError: if a switch component is not an object; nothing changes then.
        """
        _check_components(full, partial=False)
        self.components = {
            k: _strip_nulls(v) for k, v in full.items() if v is not None and k.startswith(SWITCH)
        }
        self._values.clear()

    def merge(self, partial: Mapping[str, Any]) -> None:
        """
        Overlay a partial status (C{NotifyStatus}): objects merge key by key, a C{null}
        deletes the key, anything else replaces.

        @raise FrameError: if a switch component is not an object; nothing changes then.
        """
        _check_components(partial, partial=True)
        switches = {k: v for k, v in partial.items() if k.startswith(SWITCH)}
        _merge(self.components, switches)
        for key in switches:
            self._values.pop(key, None)

    def channel_values(self, channels: Iterable[int]) -> dict[int, ChannelValues]:
        """The values of each of C{channels} that the status has a C{switch:N} for."""
        out: dict[int, ChannelValues] = {}
        for channel in channels:
            key = f"{SWITCH}{channel}"
            values = self._values.get(key)
            if values is None:
                component = self.components.get(key)
                if not isinstance(component, dict):
                    continue
                values = self._values[key] = ChannelValues.from_component(component)
            out[channel] = values
        return out
