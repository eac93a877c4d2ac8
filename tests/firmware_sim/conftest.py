"""Fixtures of the simulator tests: a small county cut out of the default one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from firmware_sim.scenario import DEFAULT_SCENARIO


def small_county(extra: dict | None = None) -> dict:
    """Gully C (six dams in series and branches), one gauge, one cistern, one plot."""
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["check_dams"] = [d for d in data["check_dams"] if d["gully"] == "C"]
    data["rain_gauges"] = data["rain_gauges"][-1:]
    data["cisterns"] = data["cisterns"][:1]
    data["runoff_plots"] = data["runoff_plots"][:1]
    data.update(extra or {})
    return data


@pytest.fixture
def small_scenario(tmp_path: Path):
    def make(extra: dict | None = None) -> Path:
        p = tmp_path / "small.yaml"
        p.write_text(yaml.safe_dump(small_county(extra), allow_unicode=True, sort_keys=False))
        return p

    return make
