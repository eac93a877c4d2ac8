"""Conventions every process of swc-monitor shares: log lines and Prometheus metrics.

``swc_ops.logs`` sets up logging (logfmt or JSON lines, ``SWC_LOG_LEVEL`` and
``SWC_LOG_FORMAT``) with structlog; ``swc_ops.metrics`` names and serves
metrics (``swc_<process>_<what>``). Any package but ``protocol`` and
``analytics`` may import it; it imports only structlog and prometheus_client.
"""
