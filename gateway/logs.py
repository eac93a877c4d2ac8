"""Logging of the gateway: the shared setup of ``swc_ops.logs`` (logfmt or JSON, on stderr)."""

from swc_ops.logs import setup_logging

__all__ = ["setup_logging"]
