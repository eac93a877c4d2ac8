"""Tests for analytics.storage."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from analytics import storage
from analytics.hydraulics import broad_crested_weir_m3_s, orifice_m3_s


def test_fit_power_stage_storage_exact():
    # Hand-worked: points on V = 1200 h^2.4 are fitted exactly; (0, 0) is dropped.
    h = np.array([0.0, 1.0, 2.0, 4.0, 7.5])
    v = 1200.0 * h**2.4
    a, b = storage.fit_power_stage_storage(h, v)
    assert_allclose([a, b], [1200.0, 2.4], rtol=1e-12)


def test_fit_power_stage_storage_survey_points():
    # Hand-worked log-log least squares on three survey points
    # (h, V) = (1, 500), (2, 2600), (4, 12000):
    # slope b = Sxy / Sxx over ln h, ln V; a = exp(mean(ln V) - b mean(ln h)).
    h = np.array([1.0, 2.0, 4.0])
    v = np.array([500.0, 2600.0, 12000.0])
    x, y = np.log(h), np.log(v)
    b = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    a = math.exp(y.mean() - b * x.mean())
    assert_allclose(storage.fit_power_stage_storage(h, v), (a, b), rtol=1e-12)
    assert 2.2 < b < 2.4


def test_fit_power_stage_storage_errors():
    with pytest.raises(ValueError, match="stage_m"):
        storage.fit_power_stage_storage([-1.0, 2.0], [10.0, 20.0])
    with pytest.raises(ValueError, match="volume_m3"):
        storage.fit_power_stage_storage([1.0, 2.0], [0.0, 20.0])
    with pytest.raises(ValueError, match="lengths differ"):
        storage.fit_power_stage_storage([1.0, 2.0], [10.0])
    with pytest.raises(ValueError, match="distinct"):
        storage.fit_power_stage_storage([1.0, 1.0], [10.0, 11.0])


def test_power_curve_round_trip():
    h = np.array([-1.0, 0.0, 0.5, 3.0, 12.0, np.nan])
    v = storage.power_storage_m3(h, 850.0, 2.6)
    assert_allclose(v[:2], 0.0)
    assert np.isnan(v[-1])
    back = storage.power_stage_m(v, 850.0, 2.6)
    assert_allclose(back[2:5], h[2:5], rtol=1e-13)
    with pytest.raises(ValueError, match="a must be"):
        storage.power_storage_m3(1.0, -850.0, 2.6)


def test_table_curve_monotone_and_inverse():
    th = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    tv = np.array([0.0, 300.0, 1900.0, 5200.0, 21000.0])
    h = np.linspace(0, 5, 201)
    v = storage.table_storage_m3(h, th, tv)
    assert_allclose(storage.table_storage_m3(th, th, tv), tv)  # exact at survey points
    assert np.all(np.diff(v) > 0)
    back = storage.table_stage_m(v, th, tv)
    assert_allclose(back, h, atol=1e-9)
    assert np.isnan(storage.table_storage_m3(5.5, th, tv))
    assert np.isnan(storage.table_stage_m(30000.0, th, tv))
    with pytest.raises(ValueError, match="table_volume_m3"):
        storage.table_storage_m3(1.0, th, tv[::-1])


# ----------------------------------------------------------------- level-pool routing
def _closure(inflow, dt, res):
    inflow_volume = np.sum(0.5 * (inflow[1:] + inflow[:-1]) * dt)
    dv = res["storage_m3"][-1] - res["storage_m3"][0]
    return (inflow_volume - res["outflow_volume_m3"].sum() - dv) / inflow_volume


def test_linear_reservoir_matches_analytic_step():
    # Hand-worked: O = k S with the trapezoidal rule has the closed form
    # S2 = (S1 (2/dt - k) + I1 + I2) / (2/dt + k).
    k, dt = 1e-3, 60.0
    step = storage.level_pool_step(1000.0, 2.0, 4.0, dt, lambda s: k * s)
    expected = (1000.0 * (2 / dt - k) + 6.0) / (2 / dt + k)
    assert step.storage_m3 == pytest.approx(expected, rel=1e-10)
    assert step.outflow_m3_s == pytest.approx(k * expected, rel=1e-10)
    assert step.outflow_volume_m3 == pytest.approx(0.5 * (1.0 + k * expected) * dt, rel=1e-9)


def _dam():
    return storage.CheckDam(
        storage_a=2000.0,
        storage_b=2.5,
        spillway_crest_m=4.0,
        spillway_width_m=6.0,
        spillway_coefficient=0.35,
        culvert_centre_m=0.5,
        culvert_area_m2=0.05,
        dam_crest_m=6.0,
        dam_crest_length_m=80.0,
    )


def test_check_dam_outflow_components():
    dam = _dam()
    c = dam.outflow_components_m3_s(np.array([0.2, 4.5, 6.2]))
    assert_allclose(c["spillway_m3_s"], [0.0, *broad_crested_weir_m3_s([0.5, 2.2], 6.0, 0.35)])
    assert_allclose(c["culvert_m3_s"], [0.0, *orifice_m3_s([4.0, 5.7], 0.05)])
    assert c["overtopping_m3_s"][2] > 0 and c["overtopping_m3_s"][1] == 0
    s = float(dam.storage_m3(4.5))
    assert dam.outflow_of_storage(s) == pytest.approx(float(dam.outflow_m3_s(4.5)), rel=1e-12)
    with pytest.raises(ValueError, match="spillway_coefficient"):
        storage.CheckDam(2000.0, 2.5, 4.0, 6.0, spillway_coefficient=0.5)
    with pytest.raises(ValueError, match="dam_crest_m"):
        storage.CheckDam(2000.0, 2.5, 4.0, 6.0, dam_crest_m=3.0)


def test_route_check_dam_mass_balance_and_attenuation():
    dt = 60.0
    t = np.arange(0, 6 * 3600 + dt, dt)
    inflow = 25.0 * (t / 3600.0) * np.exp(1.0 - t / 3600.0)  # gamma-shaped, peak 25 m3/s at 1 h
    res = storage.route_check_dam(inflow, dt, _dam(), initial_stage_m=3.0)
    # Closure of the water balance to 1e-9 relative (requirement; it is ~1e-15).
    assert abs(_closure(inflow, dt, res)) < 1e-9
    assert res["outflow_m3_s"].max() < inflow.max()  # attenuation
    assert np.argmax(res["outflow_m3_s"]) > np.argmax(inflow)  # delay
    assert np.all(res["storage_m3"] >= 0)
    # Level-pool property: the outflow peaks where it crosses the falling inflow.
    kp = np.argmax(res["outflow_m3_s"])
    assert abs(res["outflow_m3_s"][kp] - inflow[kp]) < 0.05 * inflow.max()
    total = res["spillway_m3_s"] + res["culvert_m3_s"] + res["overtopping_m3_s"]
    assert_allclose(total, res["outflow_m3_s"], rtol=1e-6, atol=1e-9)


def test_routing_empties_pool_without_negative_storage():
    # Huge outlet, long step: the pool empties within a step.
    res = storage.level_pool_route([0.0, 0.0, 0.0], 3600.0, lambda s: 10.0 * s, 500.0)
    assert res["storage_m3"][-1] == 0.0
    assert res["outflow_volume_m3"].sum() == pytest.approx(500.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 80, allow_nan=False), min_size=3, max_size=40),
    st.floats(0, 8),
    st.sampled_from([10.0, 60.0, 600.0]),
)
def test_routing_mass_balance_property(inflow, stage0, dt):
    inflow = np.array(inflow)
    res = storage.route_check_dam(inflow, dt, _dam(), initial_stage_m=stage0)
    inflow_volume = np.sum(0.5 * (inflow[1:] + inflow[:-1]) * dt)
    dv = res["storage_m3"][-1] - res["storage_m3"][0]
    err = inflow_volume - res["outflow_volume_m3"].sum() - dv
    scale = max(inflow_volume, res["storage_m3"][0], 1.0)
    assert abs(err) / scale < 1e-9


def test_dams_in_series_conserve_volume():
    # A dam system (坝系) is routed dam by dam from the top (SL/T 804-2020).
    dt = 120.0
    t = np.arange(0, 8 * 3600 + dt, dt)
    inflow = 15.0 * (t / 5400.0) * np.exp(1.0 - t / 5400.0)
    upper = storage.route_check_dam(inflow, dt, _dam(), initial_stage_m=3.9)
    lower = storage.route_check_dam(upper["outflow_m3_s"], dt, _dam(), initial_stage_m=3.9)
    iv = np.sum(0.5 * (inflow[1:] + inflow[:-1]) * dt)
    stored = (upper["storage_m3"][-1] - upper["storage_m3"][0]) + (
        lower["storage_m3"][-1] - lower["storage_m3"][0]
    )
    assert abs(iv - stored - lower["outflow_volume_m3"].sum()) / iv < 1e-9


def test_routing_errors():
    with pytest.raises(ValueError, match="dt_s"):
        storage.level_pool_step(0.0, 1.0, 1.0, 0.0, lambda s: 0.0)
    with pytest.raises(ValueError, match="inflow_m3_s"):
        storage.level_pool_route([1.0, -1.0], 60.0, lambda s: 0.0)
    with pytest.raises(ValueError, match="storage_m3"):
        storage.level_pool_step(-5.0, 1.0, 1.0, 60.0, lambda s: 0.0)


# ------------------------------------------------------------------------ cisterns
def test_cylinder_cistern():
    # pi * 3^2 / 4 * 2 = 14.137 m3 (hand-worked).
    assert_allclose(storage.cylinder_cistern_volume_m3(2.0, 3.0), 14.1372, atol=1e-4)
    assert_allclose(
        storage.cylinder_cistern_volume_m3([-1.0, 9.0], 3.0, depth_m=4.0), [0.0, 9 * math.pi]
    )
    assert_allclose(storage.cylinder_cistern_level_m(14.1372, 3.0), 2.0, atol=1e-5)
    with pytest.raises(ValueError, match="diameter_m"):
        storage.cylinder_cistern_volume_m3(1.0, -3.0)


def test_bottle_cistern_hand_worked():
    # Hand-worked: body cylinder D = 3 m, 4 m high (pi * 1.5^2 * 4 = 28.274 m3);
    # conical shoulder from r 1.5 to 0.4 m over 1.5 m:
    # pi * 1.5 / 3 * (1.5^2 + 1.5 * 0.4 + 0.4^2) = 4.728 m3; neck 0.8 m dia, 0.5 m:
    # pi * 0.4^2 * 0.5 = 0.2513 m3. Full = 33.254 m3.
    geo = dict(body_diameter_m=3.0, body_height_m=4.0, neck_diameter_m=0.8, shoulder_height_m=1.5,
               neck_height_m=0.5)  # fmt: skip
    v = storage.bottle_cistern_volume_m3([2.0, 4.0, 5.5, 6.0, 7.0], **geo)
    body = math.pi * 1.5**2 * 4
    shoulder = math.pi * 1.5 / 3 * (1.5**2 + 1.5 * 0.4 + 0.4**2)
    neck = math.pi * 0.4**2 * 0.5
    assert_allclose(v, [body / 2, body, body + shoulder, body + shoulder + neck,
                        body + shoulder + neck])  # fmt: skip
    assert_allclose(body + shoulder + neck, 33.254, atol=1e-3)
    h = np.linspace(0, 6, 61)
    back = storage.bottle_cistern_level_m(storage.bottle_cistern_volume_m3(h, **geo), **geo)
    assert_allclose(back, h, atol=1e-9)
    assert np.isnan(storage.bottle_cistern_level_m(40.0, **geo))
    # Tapered body: frustum from D 2 m to 3 m over 4 m = pi*4/3*(1 + 1.5 + 2.25).
    vt = storage.bottle_cistern_volume_m3(4.0, **geo, bottom_diameter_m=2.0)
    assert_allclose(vt, math.pi * 4 / 3 * (1 + 1.5 + 2.25))
    with pytest.raises(ValueError, match="neck_diameter_m"):
        storage.bottle_cistern_volume_m3(1.0, 3.0, 4.0, 3.5, 1.5)
    with pytest.raises(ValueError, match="body_height_m"):
        storage.bottle_cistern_volume_m3(1.0, 3.0, -4.0, 0.8, 1.5)


def test_routing_step_from_empty_pool_below_outlets():
    # Regression (found by hypothesis): an empty pool filling with no outflow
    # yet; the root lies exactly at the bracket end.
    dam = _dam()
    res = storage.route_check_dam([0.0, 0.0, 13.427239049552334], 10.0, dam)
    assert res["storage_m3"][-1] == pytest.approx(0.5 * 13.427239049552334 * 10.0)
    assert res["outflow_volume_m3"].sum() == 0.0
