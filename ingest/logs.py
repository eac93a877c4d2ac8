"""Logging of the server's processes: the shared setup of ``swc_ops.logs`` (logfmt or JSON)."""

from swc_ops.logs import setup_logging

__all__ = ["setup_logging"]
