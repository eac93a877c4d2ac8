"""Sensors and loggers: protocol-valid messages, sampling modes, sensor errors and faults."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.loggers import generate_messages
from firmware_sim.physics import simulate
from firmware_sim.rain import design_storm_rain
from firmware_sim.scenario import load_scenario, registry_yaml
from protocol.messages import MAX_PAYLOAD_BYTES, decode_telemetry
from protocol.topics import Topic


def _sim(path=None, storm="100y"):
    sc = load_scenario(path)
    rain = design_storm_rain(sc, storm)
    return sc, simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)


@pytest.fixture(scope="module")
def county():
    sc, res = _sim()
    return sc, res, generate_messages(sc, res, root="swc/v1")


def _readings(msgs):
    rows = defaultdict(list)
    for m in msgs:
        for t, ch, v, _ in decode_telemetry(m.payload).rows:
            rows[ch].append((t, v))
    return {ch: sorted(v) for ch, v in rows.items()}


def test_every_message_validates_and_is_numbered(county):
    sc, _res, outs = county
    assert set(outs) == {s.id for s in sc.sites()}
    for dev, out in outs.items():
        assert [m.seq for m in out.messages] == list(range(1, len(out.messages) + 1))
        for m in out.messages:
            assert len(m.payload) <= MAX_PAYLOAD_BYTES
            tel = decode_telemetry(m.payload)
            assert tel.device == dev and tel.seq == m.seq
            assert Topic.parse(m.topic) == Topic.telemetry(dev)
            assert tel.sent_at >= max(r[0] for r in tel.rows)


def test_dry_and_event_sampling_intervals(county):
    sc, _res, outs = county
    stage = _readings(outs["dam-a08"].messages)["stage_m"]
    times = np.array([t.timestamp() for t, _ in stage])
    gaps = np.diff(times)
    assert set(np.unique(gaps)) <= {60.0, 600.0} | set(range(60, 600, 60))
    assert (gaps == 60).sum() > 100  # event mode during the storm
    assert (gaps == 600).sum() > 100  # dry weather before and after
    storm_start = sc.start + timedelta(hours=sc.rainfall.design.lead_h)
    first_fast = datetime.fromtimestamp(times[1:][gaps == 60][0] - 60, UTC)
    assert abs((first_fast - storm_start).total_seconds()) <= 600


def test_sensors_measure_the_truth_with_errors(county):
    sc, res, outs = county
    truth = res.sites["dam-a08"].columns
    r = _readings(outs["dam-a08"].messages)
    t0 = sc.start.timestamp()
    ts = np.array([t.timestamp() - t0 for t, _ in r["stage_m"]])
    measured = np.array([v for _, v in r["stage_m"]])
    true = np.interp(ts, res.t_s, truth["stage_m"])
    err = measured - true
    assert 0 < np.std(err) < 0.01 and abs(np.mean(err)) < 0.005
    # tipping bucket: 0.2 mm steps, total within one tip of the truth
    rain = np.array([v for _, v in r["rain_mm"]])
    assert np.allclose(np.round(rain / 0.2), rain / 0.2)
    assert abs(rain.sum() - truth["rain_mm"].sum()) <= 0.2 + 1e-9
    # turbidity: invertible through the calibration in the registry, within the scatter
    spec = next(s for s in sc.check_dams if s.id == "dam-a08")
    turb = next(s for s in spec.sensors if s.channel == "turbidity_ntu")
    tt = np.array([t.timestamp() - t0 for t, _ in r["turbidity_ntu"]])
    ntu = np.array([v for _, v in r["turbidity_ntu"]])
    ssc_true = np.interp(tt, res.t_s, truth["inflow_ssc_kg_m3"])
    wet = ssc_true > 20
    assert wet.sum() > 10
    ratio = turb.calibration.ssc_kg_m3(ntu[wet]) / ssc_true[wet]
    assert 0.8 < np.median(ratio) < 1.2
    assert ntu.max() <= turb.range_ntu
    assert "battery_v" in r and "rssi_dbm" in r


def test_turbidity_saturates_at_the_sensor_range(small_scenario):
    path = small_scenario()
    import yaml

    data = yaml.safe_load(path.read_text())
    for d in data["check_dams"]:
        for s in d["sensors"]:
            if s["channel"] == "turbidity_ntu":
                s["range_ntu"] = 300.0
    path.write_text(yaml.safe_dump(data))
    sc, res = _sim(path)
    outs = generate_messages(sc, res)
    dev = next(d.id for d in sc.check_dams if any(s.channel == "turbidity_ntu" for s in d.sensors))
    ntu = [v for _, v in _readings(outs[dev].messages)["turbidity_ntu"]]
    assert max(ntu) == 300.0


def test_faults_on_demand(small_scenario):
    faults = [
        {"device": "dam-c06", "kind": "stuck", "channel": "stage_m", "start_offset_h": 2,
         "duration_h": 3},
        {"device": "dam-c04", "kind": "dropout", "start_offset_h": 2, "duration_h": 2},
        {"device": "dam-c06", "kind": "spikes", "channel": "turbidity_ntu", "start_offset_h": 1,
         "duration_h": 10, "probability": 0.3, "magnitude": 1000},
        {"device": "rg-05", "kind": "clock_drift", "drift_ppm": 5000, "start_offset_h": 0},
        {"device": "dam-c04", "kind": "fouling", "channel": "stage_m", "magnitude": 0.5,
         "start_offset_h": 24, "duration_h": 24},
    ]  # fmt: skip
    sc, res = _sim(small_scenario({"faults": faults}))
    clean_sc, _ = _sim(small_scenario())
    outs = generate_messages(sc, res)
    clean = generate_messages(clean_sc, res)
    t0 = sc.start
    stage = _readings(outs["dam-c06"].messages)["stage_m"]
    stuck = [v for t, v in stage if t0 + timedelta(hours=2) <= t < t0 + timedelta(hours=5)]
    assert len(stuck) > 30 and len(set(stuck)) == 1
    c04 = _readings(outs["dam-c04"].messages)
    gap = [t for t, _ in c04["stage_m"] if t0 + timedelta(hours=2) <= t < t0 + timedelta(hours=4)]
    assert gap == []
    turb = np.array([v for _, v in _readings(outs["dam-c06"].messages)["turbidity_ntu"]])
    turb_clean = np.array([v for _, v in _readings(clean["dam-c06"].messages)["turbidity_ntu"]])
    assert (np.abs(turb - turb_clean) > 900).sum() > 10
    # a clock running 5000 ppm fast: 48 h later it is 864 s ahead
    last = _readings(outs["rg-05"].messages)["rain_mm"][-1][0]
    last_clean = _readings(clean["rg-05"].messages)["rain_mm"][-1][0]
    assert (last - last_clean).total_seconds() == pytest.approx(
        5000e-6 * (last_clean - t0).total_seconds(), abs=1
    )
    fouled = dict(c04["stage_m"])
    base = dict(_readings(clean["dam-c04"].messages)["stage_m"])
    late = [fouled[t] - base[t] for t in fouled if t >= t0 + timedelta(hours=47) and t in base]
    assert np.mean(late) > 0.4


def test_registry_matches_the_ingest_loader(tmp_path: Path):
    from ingest.store.registry import read_registry_file

    sc = load_scenario()
    p = tmp_path / "sites.yaml"
    p.write_text(registry_yaml(sc))
    reg = read_registry_file(p)
    assert len(reg.sites) == len(sc.sites())
    dam = next(s for s in reg.sites if s.id == "dam-a08")
    assert dam.kind == "check_dam"
    assert dam.devices[0].id == "dam-a08"
    assert {"stage_m", "turbidity_ntu", "battery_v", "rssi_dbm"} <= set(dam.devices[0].channels)
    for key in ("spillway_crest_m", "stage_storage", "catchment_area_km2", "dam_crest_m",
                "dry_bulk_density_t_m3", "turbidity_calibration", "stage_datum"):  # fmt: skip
        assert key in dam.params
