"""
A device's known status: full replacement, partial merge, channel readings out.

Pure: no reactor, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field

from shellylog.rpc import FrameError

Number = int | float

#: The key prefix of switch components (C{switch:0}, ...).
SWITCH = "switch:"

#: Components (top-level keys) a status frame may hold. The largest real device sends a
#: few dozen (a Pro 4PM's full status has 17); a frame with more is refused before it is
#: looked at, so its cost is bounded however many a peer makes up.
MAX_COMPONENTS = 64


#: The largest magnitude a value may have: a petawatt, or a petawatt-hour, far beyond any
#: meter. Up to it, C{repr} writes every float in plain notation (C{1e+16} is the first
#: in exponent notation) with at most 17 significant digits, and every integer in at most
#: 16 digits: cells a spreadsheet reads as the number they are.
MAX_MAGNITUDE = 1e15
_MAX_INT = 10**15


def number(value: object) -> Number | None:
    """
    C{value} if it is a JSON number a meter can send: finite and at most
    L{MAX_MAGNITUDE} either side of zero; else C{None}.

    Booleans are not numbers here (C{True} would otherwise write as C{1}).
    """
    kind = type(value)  # the exact types first: what JSON decoders make
    if kind is float:
        # Also false for NaN; inf is beyond any bound.
        if -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
            return value  # type: ignore[return-value]
        return None
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        # A JSON integer of any length is an exact Python int (400 digits, say).
        return value if -_MAX_INT <= value <= _MAX_INT else None  # type: ignore[operator, return-value]
    if isinstance(value, float) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        return value
    return None


@define(unsafe_hash=True)
class ChannelValues:
    """
    The values of one switch channel that go into a CSV row; C{None} is "missing".

    Treated as immutable (a device's status, the tracker and the rows share them); not
    frozen only because a frozen class costs half a microsecond more per instance, and
    frames make one for every change of a channel.
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

    def merged(self, partial: Mapping[str, Any]) -> ChannelValues:
        """
        These values after a partial C{switch:N} object is merged into the component they
        were read from: a key sent replaces (C{null} deletes), a key not sent stays.

        The same as merging into the whole JSON object and reading the values again: a
        value that is not a number reads as missing however it was merged.
        """
        apower, voltage, current, total = (
            self.apower, self.voltage, self.current, self.energy_total
        )
        if "apower" in partial:
            apower = number(partial["apower"])
        if "voltage" in partial:
            voltage = number(partial["voltage"])
        if "current" in partial:
            current = number(partial["current"])
        if "aenergy" in partial:
            aenergy = partial["aenergy"]
            if aenergy is None:
                total = None
            elif "total" in aenergy:
                total = number(aenergy["total"])
        return ChannelValues(apower, voltage, current, total)


def _check_components(components: Mapping[str, Any], keys: frozenset[str], *,
                      partial: bool) -> None:
    # Validate before changing anything, so a bad frame leaves no trace. Only the kept
    # components are looked at: the others are never read.
    if len(components) > MAX_COMPONENTS:
        raise FrameError("too_many_components",
                         f"{len(components)} components, more than {MAX_COMPONENTS}")
    for key, value in components.items():
        if key not in keys:
            continue
        if value is None and partial:
            continue
        if not isinstance(value, dict):
            raise FrameError("bad_component", f"{key} is a {type(value).__name__}, not an object")
        aenergy = value.get("aenergy")
        if aenergy is not None and not isinstance(aenergy, dict):
            raise FrameError("bad_component", f"{key}.aenergy is not an object")


def switch_key(channel: int) -> str:
    """The component key of C{channel}: C{switch:N}."""
    return f"{SWITCH}{channel}"


#: The component keys of the default channels (C{--channels 0,1,2,3}).
DEFAULT_KEYS = frozenset(f"{SWITCH}{channel}" for channel in range(4))


@define
class DeviceStatus:
    """
    What one connection knows of its device's status: the values of each C{switch:N}
    component of a logged channel, by component key.

    Only the four values a row holds are kept, not the device's JSON objects, and no other
    component (C{sys}, C{wifi}, a channel not logged, ...): a connection costs memory for
    as long as it is open, and a peer that makes up components must not make it grow.

    @ivar keys: the component keys kept (L{switch_key} of each logged channel).
    """

    keys: frozenset[str] = DEFAULT_KEYS
    switches: dict[str, ChannelValues] = field(factory=dict)

    def replace(self, full: Mapping[str, Any]) -> None:
        """
        Replace everything known with a full status (C{NotifyFullStatus}, C{Shelly.GetStatus}).

        @raise FrameError: if a kept switch component is not an object, or the status has
            more than L{MAX_COMPONENTS} components; nothing changes then.
        """
        keys = self.keys
        _check_components(full, keys, partial=False)
        self.switches = {
            k: ChannelValues.from_component(v) for k, v in full.items() if k in keys
        }

    def merge(self, partial: Mapping[str, Any]) -> None:
        """
        Overlay a partial status (C{NotifyStatus}): objects merge key by key, a C{null}
        deletes the key, anything else replaces.

        @raise FrameError: if a kept switch component is not an object, or the status has
            more than L{MAX_COMPONENTS} components; nothing changes then.
        """
        keys = self.keys
        _check_components(partial, keys, partial=True)
        switches = self.switches
        for key, value in partial.items():
            if key not in keys:
                continue
            if value is None:
                switches.pop(key, None)
                continue
            old = switches.get(key)
            switches[key] = (
                ChannelValues.from_component(value) if old is None else old.merged(value)
            )

    def channel_values(self, channels: Iterable[int]) -> dict[int, ChannelValues]:
        """The values of each of C{channels} that the status has a C{switch:N} for."""
        return self.values_for(tuple((channel, switch_key(channel)) for channel in channels))

    def values_for(self, keys: tuple[tuple[int, str], ...]) -> dict[int, ChannelValues]:
        """
        L{channel_values} for channels given with their keys (from L{switch_key}): the
        server makes the pairs once, not for every frame.
        """
        switches = self.switches
        out: dict[int, ChannelValues] = {}
        for channel, key in keys:
            values = switches.get(key)
            if values is not None:
                out[channel] = values
        return out
