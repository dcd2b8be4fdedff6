"""
Every profile the simulator offers, by name: what C{--profile} chooses from. Each family's
module defines its own; they are gathered here.
"""

from __future__ import annotations

from shellylog.simulate.model import Profile
from shellylog.simulate.switch import SWITCH_PROFILES

PROFILES: dict[str, Profile] = {**SWITCH_PROFILES}
