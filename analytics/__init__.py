"""Hydrology and sediment science for soil-and-water-conservation works.

Pure numpy/scipy functions, SI units in argument names, no I/O. Modules:
``rainfall``, ``runoff``, ``hydraulics``, ``storage``, ``sediment``, ``quality``,
``alerts``. Times are ``datetime64`` arrays or float seconds (see
:mod:`analytics.rainfall`).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import alerts, hydraulics, quality, rainfall, runoff, sediment, storage

__all__ = ["alerts", "hydraulics", "quality", "rainfall", "runoff", "sediment", "storage"]


def __getattr__(name: str) -> Any:
    # submodules load when first used (scipy.stats alone takes a second to import)
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
