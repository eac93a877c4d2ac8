"""The field store-and-forward gateway: local loggers in, a disk queue, upstream out in order."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("swc-monitor")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
