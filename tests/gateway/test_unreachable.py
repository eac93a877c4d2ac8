"""An upstream the gateway cannot reach on its first connect is reported at once (log line
and retained status), not only after a connection that once worked was lost (issue 13)."""

from __future__ import annotations

import logging

from gateway.config import GatewayConfig
from gateway.service import Gateway
from ingest.broker import free_port

from .gwtest_support import gateway_options, retained, wait_until


def test_an_upstream_unreachable_from_the_start_is_reported(tmp_path, brokers, root, caplog):
    local = brokers("local").start()
    closed = free_port()  # nothing listens there
    cfg = GatewayConfig.model_validate(gateway_options(tmp_path, "gw-1", root, local.port, closed))
    caplog.set_level(logging.INFO, logger="gateway.service")
    gw = Gateway(cfg).start()
    try:
        wait_until(lambda: gw.uplink_error is not None, 15, "the first failed connect")
        status = gw.status().details
        assert status["uplink"] == "unreachable"
        assert "refused" in status["uplink_error"].lower()
        assert status["uplink_failed_attempts"] >= 1
        lines = [r.getMessage() for r in caplog.records if "uplink unreachable" in r.getMessage()]
        assert lines and f"url=mqtt://127.0.0.1:{closed}" in lines[0]
        # the retained status on the local broker says so too
        wait_until(
            lambda: (
                retained(local.port, f"{root}/gw-1/status")["details"].get("uplink")
                == "unreachable"
            ),
            15,
            "the local status",
        )
    finally:
        gw.stop(drain_s=0.5)
