"""Researchers' derived products: storm events, check-dam event balances and retention,
runoff-plot and cistern events, versioned stage-storage curves and turbidity
calibrations, and the validation against the simulator's ground truth.

Every function takes a psycopg connection and returns pydantic models; see
docs/research.md, "Derived products".
"""

from .data import DEFAULT_EXCLUDE_QUALITY, ResearchError
from .products import cistern_events, dam_events, dam_retention, plot_events, storm_events
from .versions import (
    add_calibration,
    add_stage_storage_curve,
    fit_calibration,
    list_calibrations,
    list_stage_storage_curves,
)

__all__ = [
    "DEFAULT_EXCLUDE_QUALITY",
    "ResearchError",
    "add_calibration",
    "add_stage_storage_curve",
    "cistern_events",
    "dam_events",
    "dam_retention",
    "fit_calibration",
    "list_calibrations",
    "list_stage_storage_curves",
    "plot_events",
    "storm_events",
]
