"""Channel names and their units: the one place where the wire's units are defined.

A channel name carries its unit as a suffix (``stage_m``, ``rain_mm``), so a
reader never guesses a unit. Channels not listed here are accepted and stored
with the unit their suffix names (or none): loggers gain sensors before the
registry learns of them.

Units are UCUM codes (The Unified Code for Units of Measure, case-sensitive
form ``c/s``): ``m``, ``mm``, ``kg/m3``, ``m3/s``, ``V``, ``Cel``, ``%``,
``dB[mW]`` for a power level relative to 1 mW, ``[NTU]`` for nephelometric
turbidity units. They are metadata: devices send channel names, never units,
so changing a unit code here changes no message on the wire.

NetCDF (CF) wants UDUNITS strings instead: :func:`udunits_of` maps one to the
other, here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHANNEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
_CHANNEL_NAME_RE = re.compile(CHANNEL_NAME_PATTERN)

POINT = "time: point"  # the value at the reading's time
SUM = "time: sum"  # the total over the interval that ends at the reading's time


@dataclass(frozen=True)
class Channel:
    """A known measurement channel.

    ``cf_standard_name`` is a name of the CF standard name table, or None where
    the table has none for what is measured (``cf_note`` then says why; with a
    name, ``cf_note`` says how the name is meant). A channel without a name is
    not a geophysical quantity CF can describe (logger health, a temperature of
    unknown medium): a NetCDF export holds it only when it is asked for by name;
    ``cell_methods`` is the CF cell method of a value over time.
    """

    name: str
    unit: str  # UCUM code
    description: str
    cf_standard_name: str | None = None
    cell_methods: str = POINT
    cf_note: str | None = None


# CF names these quantities after sea water only; CF applies the sea_water names to
# every natural water body, rivers and lakes included, until it has names for water on
# land (cf-convention/discuss #6, #73, #266, #327), so they are used, and said so.
_FRESH_WATER = (
    "the water is fresh (a pond, cistern, tank or stream); CF's sea_water names are "
    "used for all natural waters until CF has names for water on land"
)

CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(
            "stage_m",
            "m",
            "water level (stage) above the gauge datum",
            "water_surface_height_above_reference_datum",
        ),
        Channel(
            "level_m",
            "m",
            "water level in a cistern or tank above its floor (the reference datum)",
            "water_surface_height_above_reference_datum",
        ),
        Channel(
            "turbidity_ntu",
            "[NTU]",
            "turbidity of the water (nephelometric turbidity units, NTU)",
            "sea_water_turbidity",
            cf_note=_FRESH_WATER,
        ),
        Channel(
            "ssc_kg_m3",
            "kg/m3",
            "suspended sediment concentration",
            "mass_concentration_of_suspended_matter_in_sea_water",
            cf_note=_FRESH_WATER,
        ),
        Channel(
            "rain_mm",
            "mm",
            "rain depth fallen during the interval ending at the reading time",
            "thickness_of_rainfall_amount",
            cell_methods=SUM,
        ),
        Channel("flow_m3_s", "m3/s", "discharge", "water_volume_transport_in_river_channel"),
        Channel("battery_v", "V", "logger battery voltage", cf_note="not a geophysical quantity"),
        Channel(
            "rssi_dbm",
            "dB[mW]",
            "received signal strength of the logger's radio",
            cf_note="not a geophysical quantity",
        ),
        Channel(
            "temperature_c",
            "Cel",
            "temperature (air or water, not said which)",
            cf_note="the channel does not say whether air or water is measured; "
            "use air_temperature_c or water_temperature_c",
        ),
        Channel("air_temperature_c", "Cel", "air temperature", "air_temperature"),
        Channel(
            "water_temperature_c",
            "Cel",
            "water temperature",
            "sea_water_temperature",
            cf_note=_FRESH_WATER,
        ),
    )
}

# Suffix -> UCUM code, used to guess the unit of a channel not in the registry.
_SUFFIX_UNITS = {
    "_m": "m",
    "_mm": "mm",
    "_m3": "m3",
    "_m3_s": "m3/s",
    "_kg_m3": "kg/m3",
    "_ntu": "[NTU]",
    "_v": "V",
    "_dbm": "dB[mW]",
    "_c": "Cel",
    "_pct": "%",
    "_s": "s",
}

# UCUM code -> UDUNITS string (CF). Codes that read the same in both are absent.
# UDUNITS has no nephelometric unit: CF's turbidity (sea_water_turbidity) has
# canonical units "1", and the NTU is named in long_name.
_UDUNITS = {
    "Cel": "degC",
    "kg/m3": "kg m-3",
    "m3/s": "m3 s-1",
    "%": "percent",
    "[NTU]": "1",
    "dB[mW]": "dBm",
}
# units stored before the registry used UCUM codes (migration 0070 rewrites them)
LEGACY_UNITS = {"NTU": "[NTU]", "dBm": "dB[mW]"}


def is_valid_channel_name(name: str) -> bool:
    """True if ``name`` is a well-formed channel name (lower case, digits, underscores)."""
    return bool(_CHANNEL_NAME_RE.match(name))


def unit_of(channel: str) -> str | None:
    """The UCUM unit of a channel: from the registry, else from its suffix, else None."""
    known = CHANNELS.get(channel)
    if known is not None:
        return known.unit
    for suffix in sorted(_SUFFIX_UNITS, key=len, reverse=True):
        if channel.endswith(suffix):
            return _SUFFIX_UNITS[suffix]
    return None


def udunits_of(ucum: str) -> str:
    """The UDUNITS string (as CF's ``units`` attribute wants it) of a UCUM code."""
    ucum = LEGACY_UNITS.get(ucum, ucum)
    return _UDUNITS.get(ucum, ucum)
