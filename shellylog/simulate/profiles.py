"""
Every profile the simulator offers, by name: what C{--profile} chooses from. Each family's
module defines its own; they are gathered here.
"""

from __future__ import annotations

from shellylog.simulate.cover import COVER_PROFILES
from shellylog.simulate.em import EM_PROFILES
from shellylog.simulate.em1 import EM1_PROFILES
from shellylog.simulate.light import LIGHT_PROFILES
from shellylog.simulate.model import Profile
from shellylog.simulate.pm1 import PM1_PROFILES
from shellylog.simulate.switch import SWITCH_PROFILES

PROFILES: dict[str, Profile] = {
    **SWITCH_PROFILES,
    **PM1_PROFILES,
    **EM_PROFILES,
    **EM1_PROFILES,
    **COVER_PROFILES,
    **LIGHT_PROFILES,
}
