"""Channel names and their units: the one place where the wire's units are defined.

A channel name carries its SI unit as a suffix (``stage_m``, ``rain_mm``), so a
reader never guesses a unit. Channels not listed here are accepted and stored
with an unknown unit: loggers gain sensors before the registry learns of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHANNEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
_CHANNEL_NAME_RE = re.compile(CHANNEL_NAME_PATTERN)


@dataclass(frozen=True)
class Channel:
    """A known measurement channel."""

    name: str
    unit: str  # UCUM-style unit symbol
    description: str
    cf_standard_name: str | None = None


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(
            "stage_m",
            "m",
            "water level (stage) above the gauge datum",
            "water_surface_height_above_reference_datum",
        ),
        Channel("level_m", "m", "water level in a cistern or tank above its floor"),
        # CF has only sea_water_turbidity, which is not our water: no standard name
        Channel("turbidity_ntu", "NTU", "turbidity of the water (nephelometric)"),
        Channel(
            "ssc_kg_m3",
            "kg/m3",
            "suspended sediment concentration",
            "mass_concentration_of_suspended_matter_in_water",
        ),
        Channel(
            "rain_mm",
            "mm",
            "rain depth fallen during the interval ending at the reading time",
            "thickness_of_rainfall_amount",
        ),
        Channel("flow_m3_s", "m3/s", "discharge", "water_volume_transport_in_river_channel"),
        Channel("battery_v", "V", "logger battery voltage"),
        Channel("rssi_dbm", "dBm", "received signal strength of the logger's radio"),
        Channel("temperature_c", "Cel", "air or water temperature", "air_temperature"),
    )
}

# Suffix -> unit, used to guess the unit of a channel not in the registry.
_SUFFIX_UNITS = {
    "_m": "m",
    "_mm": "mm",
    "_m3": "m3",
    "_m3_s": "m3/s",
    "_kg_m3": "kg/m3",
    "_ntu": "NTU",
    "_v": "V",
    "_dbm": "dBm",
    "_c": "Cel",
    "_pct": "%",
    "_s": "s",
}


def is_valid_channel_name(name: str) -> bool:
    """True if ``name`` is a well-formed channel name (lower case, digits, underscores)."""
    return bool(_CHANNEL_NAME_RE.match(name))


def unit_of(channel: str) -> str | None:
    """The unit of a channel: from the registry, else from its suffix, else None."""
    known = CHANNELS.get(channel)
    if known is not None:
        return known.unit
    for suffix in sorted(_SUFFIX_UNITS, key=len, reverse=True):
        if channel.endswith(suffix):
            return _SUFFIX_UNITS[suffix]
    return None
