"""Hydrology and sediment science for soil-and-water-conservation works.

Pure numpy/scipy functions, SI units in argument names, no I/O. Modules:
``rainfall``, ``runoff``, ``hydraulics``, ``storage``, ``sediment``, ``quality``,
``alerts``. Times are ``datetime64`` arrays or float seconds (see
:mod:`analytics.rainfall`).
"""

from . import alerts, hydraulics, quality, rainfall, runoff, sediment, storage

__all__ = ["alerts", "hydraulics", "quality", "rainfall", "runoff", "sediment", "storage"]
