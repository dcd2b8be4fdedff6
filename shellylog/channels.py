"""
The channels of every metering family (rule 8 of C{docs/minute-log.md}): their keys, their
names, and which of them C{--channels} selects.

A channel is keyed by one C{int} whose order is the rows' order (rule 8): switch N is N
itself, as before (so every switch-only caller keeps its numbers), and a channel of any
other family is C{rank << 48 | id << 2 | phase}, where C{rank} is the family's place in
L{FAMILIES} and C{phase} is 0 for a component's own channel (or an C{em} total) and 1, 2,
3 for C{em} phases a, b, c. The tracker's per-tick loop then compares, hashes and sorts
plain integers; names are made only where people read them (the CSV cell, C{/status}).

Pure: no reactor, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import field, frozen

#: Channel key: see the module docstring.
ChannelKey = int

#: The metering families, in the rows' order (rule 8): switches first, then by name.
FAMILIES = ("switch", "cct", "cover", "em", "em1", "light", "pm1", "rgb", "rgbw")
_RANK = {family: rank for rank, family in enumerate(FAMILIES)}

#: Families whose component holds a channel's four values itself, as C{switch:N} does.
SWITCH_LIKE = frozenset({"switch", "pm1", "cover", "light", "rgb", "rgbw", "cct"})

#: The separate energy component of each meter family, and the other way round.
ENERGY_OF = {"em": "emdata", "em1": "em1data"}
METER_OF = {energy: meter for meter, energy in ENERGY_OF.items()}

#: The phases of an C{em:N} component: its total ("") first, then a, b, c (rule 8).
PHASES = ("", "a", "b", "c")

_FAMILY_SHIFT = 48
_ID_SHIFT = 2
#: The largest component id read or accepted: far beyond any device, and short enough
#: that a key stays below 2**52 (what a float holds exactly, should anyone look).
MAX_ID = 999_999_999
_ID_MASK = (1 << (_FAMILY_SHIFT - _ID_SHIFT)) - 1


def channel_key(family: str, component_id: int, phase: int = 0) -> ChannelKey:
    """The key of a channel: switch N is N; see the module docstring for the others."""
    if family == "switch":
        return component_id
    return (_RANK[family] << _FAMILY_SHIFT) | (component_id << _ID_SHIFT) | phase


def family_of(key: ChannelKey) -> str:
    """The family of a channel key."""
    return FAMILIES[key >> _FAMILY_SHIFT]


def component_of(key: ChannelKey) -> str:
    """The status component a channel's values come from: C{switch:N}, C{em:N}, ..."""
    if key >> _FAMILY_SHIFT == 0:
        return f"switch:{key}"
    return f"{family_of(key)}:{(key >> _ID_SHIFT) & _ID_MASK}"


_names: dict[ChannelKey, str] = {}


def channel_name(key: ChannelKey) -> str:
    """
    The channel's CSV cell: C{N} for C{switch:N} (as the seed), C{pm1:0}, C{em:0} (the
    total), C{em:0:a}, ...

    Cached: only keys of channels that were logged come here.
    """
    name = _names.get(key)
    if name is None:
        if key >> _FAMILY_SHIFT == 0:
            name = str(key)
        else:
            phase = PHASES[key & 3]
            name = component_of(key) + (f":{phase}" if phase else "")
        _names[key] = name
    return name


def _component_id(text: str) -> int | None:
    # As devices write ids: decimal, no sign, no leading zero.
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_component(key: str) -> tuple[str, int] | None:
    """
    C{(family, id)} of a status component key of a metering family or its energy
    (C{switch:0}, C{em:1}, C{emdata:1}); C{None} for any other key (C{sys}, C{input:0}).
    """
    family, colon, rest = key.partition(":")
    if not colon or (family not in _RANK and family not in METER_OF):
        return None
    component_id = _component_id(rest)
    return None if component_id is None else (family, component_id)


def parse_channel_name(name: str) -> ChannelKey | None:
    """The key of a channel's CSV cell (L{channel_name}); C{None} if it names none."""
    if name.isascii() and name.isdigit():
        value = int(name)
        return value if value <= MAX_ID else None
    parts = name.split(":")
    if len(parts) not in (2, 3) or parts[0] not in _RANK or parts[0] == "switch":
        return None
    component_id = _component_id(parts[1])
    if component_id is None:
        return None
    if len(parts) == 2:
        return channel_key(parts[0], component_id)
    if parts[0] != "em" or parts[2] not in PHASES[1:]:
        return None
    return channel_key("em", component_id, PHASES.index(parts[2]))


def channels_of_component(family: str, component_id: int) -> tuple[ChannelKey, ...]:
    """Every channel of one component: one, or an C{em}'s total and three phases."""
    if family == "em":
        return tuple(channel_key("em", component_id, phase) for phase in range(4))
    return (channel_key(family, component_id),)


#: What C{--channels} holds once checked: switch ids as numbers, anything else as text.
ChannelSpec = int | str


def parse_channel_spec(text: str) -> ChannelSpec:
    """
    One item of C{--channels}, checked and written one way: a number (a switch id, as
    before), a channel name (C{pm1:0}, C{em:0:b}, C{switch:2} is 2), a component
    (C{em:0}: its total and its three phases), a family wildcard (C{pm1:*}) or C{*}.

    @raise ValueError: for an unknown family or a malformed item, saying which.
    """
    item = text.strip()
    if item == "*":
        return item
    if item.isascii() and item.isdigit():
        value = int(item)
        if value > MAX_ID:
            raise ValueError(f"switch id {item} is larger than {MAX_ID}")
        return value
    parts = item.split(":")
    family = parts[0]
    if family not in _RANK:
        known = ", ".join(FAMILIES)
        hint = f" (its channels are those of {METER_OF[family]}:N)" if family in METER_OF else ""
        raise ValueError(f"unknown family {family!r} in {item!r}{hint}; known: {known}")
    if len(parts) == 2 and parts[1] == "*":
        return f"{family}:*"
    if len(parts) in (2, 3) and parts[1].isascii() and parts[1].isdigit():
        value = int(parts[1])
        if value > MAX_ID:
            raise ValueError(f"id {parts[1]} in {item!r} is larger than {MAX_ID}")
        if len(parts) == 2:
            return value if family == "switch" else f"{family}:{value}"
        if family == "em" and parts[2] in PHASES[1:]:
            return f"em:{value}:{parts[2]}"
    raise ValueError(
        f"malformed channel {item!r}: a switch id (2), a channel (pm1:0, em:0:b), a component "
        "(em:0), a family wildcard (pm1:*) or *"
    )


def spec_order(spec: ChannelSpec) -> tuple[int, int, int, int]:
    """Where a checked C{--channels} item sorts: switch ids, then rule 8's order, then C{*}."""
    if isinstance(spec, int):
        return (0, spec, 0, 0)
    if spec == "*":
        return (2, 0, 0, 0)
    parts = spec.split(":")
    rank = _RANK[parts[0]]
    if parts[1] == "*":
        return (1, rank, -1, 0)
    phase = PHASES.index(parts[2]) if len(parts) == 3 else 0
    return (1, rank, int(parts[1]), phase)


@frozen
class ChannelSelection:
    """
    The channels C{--channels} selects, and the status components they need.

    @ivar keys: channels selected by name (or by component: an C{em}'s four).
    @ivar families: families selected whole (a wildcard; all of them for C{*}).
    """

    keys: frozenset[ChannelKey] = frozenset()
    families: frozenset[str] = frozenset()
    #: The components of L{keys} and their energy components: kept without looking
    #: further at their key.
    components: frozenset[str] = field(init=False)

    #: C{(family, id)} of each of L{components}: parsed once, not for every frame.
    parts: dict[str, tuple[str, int]] = field(init=False, eq=False)

    @components.default
    def _components(self) -> frozenset[str]:
        kept = set()
        for key in self.keys:
            component = component_of(key)
            kept.add(component)
            energy = ENERGY_OF.get(family_of(key))
            if energy is not None:
                kept.add(f"{energy}:{component.split(':')[1]}")
        return frozenset(kept)

    @parts.default
    def _parts(self) -> dict[str, tuple[str, int]]:
        parts = {}
        for component in self.components:
            parsed = parse_component(component)
            assert parsed is not None
            parts[component] = parsed
        return parts

    #: The channel of each switch-like component of L{components} (C{switch:2} is 2,
    #: C{pm1:0} its key): a frame's usual component is read into its channel with one
    #: look-up (see L{shellylog.status.DeviceStatus.merge}).
    switch_channels: dict[str, ChannelKey] = field(init=False, eq=False)

    @switch_channels.default
    def _switch_channels(self) -> dict[str, ChannelKey]:
        return {
            component: channel_key(family, component_id)
            for component, (family, component_id) in self.parts.items()
            if family in SWITCH_LIKE and channel_key(family, component_id) in self.keys
        }

    def component_parts(self, component: str) -> tuple[str, int]:
        """C{(family, id)} of a component that L{keeps}."""
        parsed = self.parts.get(component) or parse_component(component)
        assert parsed is not None
        return parsed

    @classmethod
    def from_specs(cls, specs: Iterable[ChannelSpec]) -> ChannelSelection:
        """The selection of checked C{--channels} items (L{parse_channel_spec})."""
        keys: set[ChannelKey] = set()
        families: set[str] = set()
        for spec in specs:
            if isinstance(spec, int):
                keys.add(spec)
                continue
            if spec == "*":
                families.update(FAMILIES)
                continue
            parts = spec.split(":")
            if parts[1] == "*":
                families.add(parts[0])
            elif len(parts) == 3:
                keys.add(channel_key("em", int(parts[1]), PHASES.index(parts[2])))
            else:
                keys.update(channels_of_component(parts[0], int(parts[1])))
        return cls(keys=frozenset(keys), families=frozenset(families))

    def selects(self, key: ChannelKey) -> bool:
        """Whether channel C{key} is logged."""
        return key in self.keys or (
            bool(self.families) and FAMILIES[key >> _FAMILY_SHIFT] in self.families
        )

    def keeps(self, component: str) -> bool:
        """Whether a device's status component is needed for a selected channel."""
        if component in self.components:
            return True
        if not self.families:
            return False
        parsed = parse_component(component)
        if parsed is None:
            return False
        # A component of a key in L{keys} is in L{components} already.
        return METER_OF.get(parsed[0], parsed[0]) in self.families


#: The default C{--channels 0,1,2,3}.
DEFAULT_SELECTION = ChannelSelection.from_specs((0, 1, 2, 3))
