"""
A device's known status: full replacement, partial merge, channel readings out (rule 8).

Pure: no reactor, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field

from shellylog.channels import (
    DEFAULT_SELECTION,
    ENERGY_OF,
    METER_OF,
    SWITCH_LIKE,
    ChannelKey,
    ChannelSelection,
    channel_key,
)
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
    The values of one channel that go into a CSV row; C{None} is "missing".

    Treated as immutable (a device's status, the tracker and the rows share them); not
    frozen only because a frozen class costs half a microsecond more per instance, and
    frames make one for every change of a channel.

    @ivar apower: watts; negative while a meter sees energy exported (rule 8).
    @ivar ret_energy_total: returned energy, Wh (the C{ret_energy_total_Wh} column, rule 9).
    """

    apower: Number | None
    voltage: Number | None
    current: Number | None
    energy_total: Number | None
    ret_energy_total: Number | None = None

    @classmethod
    def from_component(cls, component: Mapping[str, Any]) -> ChannelValues:
        """Read the values out of a C{switch:N} status object (or C{pm1:N}, C{cover:N}, ...)."""
        aenergy = component.get("aenergy")
        total = aenergy.get("total") if isinstance(aenergy, dict) else None
        ret_aenergy = component.get("ret_aenergy")
        ret = ret_aenergy.get("total") if isinstance(ret_aenergy, dict) else None
        return cls(
            apower=number(component.get("apower")),
            voltage=number(component.get("voltage")),
            current=number(component.get("current")),
            energy_total=number(total),
            ret_energy_total=number(ret),
        )

    def merged(self, partial: Mapping[str, Any]) -> ChannelValues:
        """
        These values after a partial C{switch:N} object is merged into the component they
        were read from: a key sent replaces (C{null} deletes), a key not sent stays.

        The same as merging into the whole JSON object and reading the values again: a
        value that is not a number reads as missing however it was merged.
        """
        apower, voltage, current, total, ret = (
            self.apower, self.voltage, self.current, self.energy_total, self.ret_energy_total
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
        if "ret_aenergy" in partial:
            ret_aenergy = partial["ret_aenergy"]
            if ret_aenergy is None:
                ret = None
            elif "total" in ret_aenergy:
                ret = number(ret_aenergy["total"])
        return ChannelValues(apower, voltage, current, total, ret)


#: The fields read of each meter family's components and of their energy components
#: (rule 8): these components are flat, so a field is merged by replacing it.
METER_FIELDS: dict[str, tuple[str, ...]] = {
    "em": (
        *(f"{phase}_{name}" for phase in "abc" for name in ("act_power", "voltage", "current")),
        "total_act_power",
        "total_current",
    ),
    "emdata": (
        *(f"{phase}_{name}" for phase in "abc"
          for name in ("total_act_energy", "total_act_ret_energy")),
        "total_act",
        "total_act_ret",
    ),
    "em1": ("act_power", "voltage", "current"),
    "em1data": ("total_act_energy", "total_act_ret_energy"),
}

#: The numbers kept of one meter component, by field (see L{METER_FIELDS}).
Fields = dict[str, Number | None]
_NO_FIELDS: Fields = {}


def _kept_components(components: Mapping[str, Any], selection: ChannelSelection, *,
                     partial: bool) -> list[str]:
    """
    The keys of C{components} that C{selection} keeps, in order, once they are checked:
    validated before anything changes, so a bad frame leaves no trace. Only the kept
    components are looked at: the others are never read.
    """
    if len(components) > MAX_COMPONENTS:
        raise FrameError("too_many_components",
                         f"{len(components)} components, more than {MAX_COMPONENTS}")
    fixed = selection.components
    keeps = selection.keeps if selection.families else None
    kept = [key for key in components
            if key in fixed or (keeps is not None and keeps(key))]
    for key in kept:
        value = components[key]
        if value is None and partial:
            continue
        if type(value) is not dict:
            raise FrameError("bad_component", f"{key} is a {type(value).__name__}, not an object")
        # Most frames have neither: one look-up each, not a loop.
        inner = value.get("aenergy")
        if inner is not None and type(inner) is not dict:
            raise FrameError("bad_component", f"{key}.aenergy is not an object")
        inner = value.get("ret_aenergy")
        if inner is not None and type(inner) is not dict:
            raise FrameError("bad_component", f"{key}.ret_aenergy is not an object")
    return kept


def switch_key(channel: int) -> str:
    """The component key of C{channel}: C{switch:N}."""
    return f"{SWITCH}{channel}"


#: The component keys of the default channels (C{--channels 0,1,2,3}).
DEFAULT_KEYS = DEFAULT_SELECTION.components


def _fields(family: str, component: Mapping[str, Any]) -> Fields:
    return {name: number(component.get(name)) for name in METER_FIELDS[family]}


@define
class DeviceStatus:
    """
    What one connection knows of its device's status: the values of each component a
    logged channel reads (rule 8), by component key, and the channels' readings.

    Only the values a row holds are kept, not the device's JSON objects, and no other
    component (C{sys}, C{wifi}, a channel not logged, ...): a connection costs memory for
    as long as it is open, and a peer that makes up components must not make it grow
    (at most L{MAX_COMPONENTS} are kept).

    @ivar selection: the channels logged (C{--channels}).
    @ivar switches: the values of each kept component of a switch-like family
        (C{switch}, C{pm1}, C{cover}, C{light}, ...), by component key.
    @ivar meters: the fields of each kept C{em}, C{emdata}, C{em1} and C{em1data}
        component, by component key.
    @ivar readings: every logged channel the merged status has, with its values; a
        channel's values are the same object until a frame changes one of its components.
    """

    selection: ChannelSelection = DEFAULT_SELECTION
    switches: dict[str, ChannelValues] = field(factory=dict)
    meters: dict[str, Fields] = field(factory=dict)
    readings: dict[ChannelKey, ChannelValues] = field(factory=dict)

    def replace(self, full: Mapping[str, Any]) -> None:
        """
        Replace everything known with a full status (C{NotifyFullStatus}, C{Shelly.GetStatus}).

        @raise FrameError: if a kept component is not an object, or the status has
            more than L{MAX_COMPONENTS} components; nothing changes then.
        """
        parts = self.selection.component_parts
        kept = _kept_components(full, self.selection, partial=False)
        self.switches = {}
        self.meters = {}
        self.readings = {}
        touched = set()
        for key in kept:
            value = full[key]
            family, component_id = parts(key)
            if family in SWITCH_LIKE:
                self.switches[key] = ChannelValues.from_component(value)
            else:
                self.meters[key] = _fields(family, value)
            touched.add((METER_OF.get(family, family), component_id))
        for family, component_id in touched:
            self._refresh(family, component_id)

    def merge(self, partial: Mapping[str, Any]) -> None:
        """
        Overlay a partial status (C{NotifyStatus}): objects merge key by key, a C{null}
        deletes the key, anything else replaces.

        @raise FrameError: if a kept component is not an object, or the status has
            more than L{MAX_COMPONENTS} components (in the frame, or kept after it);
            nothing changes then.
        """
        selection = self.selection
        kept = _kept_components(partial, selection, partial=True)
        switches = self.switches
        meters = self.meters
        if not kept:
            return
        # Only with a wildcard can a peer make up components to keep; a fixed selection
        # keeps at most its own.
        if selection.families and len(switches) + len(meters) + len(kept) > MAX_COMPONENTS:
            added = sum(1 for key in kept if partial[key] is not None
                        and key not in switches and key not in meters)
            if len(switches) + len(meters) + added > MAX_COMPONENTS:
                raise FrameError("too_many_components",
                                 f"more than {MAX_COMPONENTS} components kept")
        readings = self.readings
        known = selection.switch_channels
        parts = selection.component_parts
        touched = set()
        for key in kept:
            value = partial[key]
            channel = known.get(key)
            if channel is not None:
                # The usual frame: a selected switch-like component, read straight into
                # its channel (what _refresh would do, without looking anything up again).
                if value is None:
                    switches.pop(key, None)
                    readings.pop(channel, None)
                    continue
                old = switches.get(key)
                switches[key] = readings[channel] = (
                    ChannelValues.from_component(value) if old is None else old.merged(value)
                )
                continue
            family, component_id = parts(key)
            touched.add((METER_OF.get(family, family), component_id))
            if family in SWITCH_LIKE:
                if value is None:
                    switches.pop(key, None)
                    continue
                old = switches.get(key)
                switches[key] = (
                    ChannelValues.from_component(value) if old is None else old.merged(value)
                )
            else:
                if value is None:
                    meters.pop(key, None)
                    continue
                fields = meters.get(key)
                if fields is None:
                    meters[key] = _fields(family, value)
                else:
                    for name in METER_FIELDS[family]:
                        if name in value:
                            fields[name] = number(value[name])
        for family, component_id in touched:
            self._refresh(family, component_id)

    def _refresh(self, family: str, component_id: int) -> None:
        """Read again the channels of one component (rule 8), after it or its energy changed."""
        readings = self.readings
        selects = self.selection.selects
        key = f"{family}:{component_id}"
        if family in SWITCH_LIKE:
            channel = channel_key(family, component_id)
            values = self.switches.get(key)
            if values is None or not selects(channel):
                readings.pop(channel, None)
            else:
                readings[channel] = values
            return
        own = self.meters.get(key)
        energy = self.meters.get(f"{ENERGY_OF[family]}:{component_id}", _NO_FIELDS)
        if family == "em1":
            channel = channel_key("em1", component_id)
            if own is None or not selects(channel):
                readings.pop(channel, None)
            else:
                readings[channel] = ChannelValues(
                    own["act_power"], own["voltage"], own["current"],
                    energy.get("total_act_energy"), energy.get("total_act_ret_energy"),
                )
            return
        for phase, prefix in enumerate(("total", "a", "b", "c")):
            channel = channel_key("em", component_id, phase)
            if own is None or not selects(channel):
                readings.pop(channel, None)
            elif phase == 0:
                # The total has no voltage of its own: an empty cell (rule 8).
                readings[channel] = ChannelValues(
                    own["total_act_power"], None, own["total_current"],
                    energy.get("total_act"), energy.get("total_act_ret"),
                )
            else:
                readings[channel] = ChannelValues(
                    own[f"{prefix}_act_power"], own[f"{prefix}_voltage"],
                    own[f"{prefix}_current"], energy.get(f"{prefix}_total_act_energy"),
                    energy.get(f"{prefix}_total_act_ret_energy"),
                )

    def channel_values(self, channels: Iterable[int]) -> dict[int, ChannelValues]:
        """The values of each of C{channels} (keys) that the status has."""
        readings = self.readings
        return {channel: readings[channel] for channel in channels if channel in readings}

    def values_for(self, keys: tuple[tuple[int, str], ...]) -> dict[int, ChannelValues]:
        """L{channel_values} for channels given with their component keys (unused here)."""
        return self.channel_values(channel for channel, _ in keys)

    def current(self) -> dict[ChannelKey, ChannelValues]:
        """Every logged channel the status has, with its values: a new dict."""
        return dict(self.readings)
