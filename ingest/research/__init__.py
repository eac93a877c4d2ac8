"""Researchers' derived products: storm events, check-dam event balances and retention,
runoff-plot and cistern events, versioned stage-storage curves and turbidity
calibrations, and the validation against the simulator's ground truth.

Every function takes a psycopg connection and returns pydantic models; see
docs/research.md, "Derived products".
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import DEFAULT_EXCLUDE_QUALITY, ResearchError
    from .products import cistern_events, dam_events, dam_retention, plot_events, storm_events
    from .versions import (
        add_calibration,
        add_stage_storage_curve,
        fit_calibration,
        list_calibrations,
        list_stage_storage_curves,
    )

# where each name lives: imported when first used, so that `swc` starts fast
_HOME = {
    "DEFAULT_EXCLUDE_QUALITY": "data",
    "ResearchError": "data",
    "cistern_events": "products",
    "dam_events": "products",
    "dam_retention": "products",
    "plot_events": "products",
    "storm_events": "products",
    "add_calibration": "versions",
    "add_stage_storage_curve": "versions",
    "fit_calibration": "versions",
    "list_calibrations": "versions",
    "list_stage_storage_curves": "versions",
}

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


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
