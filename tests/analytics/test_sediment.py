"""Tests for analytics.sediment."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from analytics import sediment as sd


# Gill (1979) equations for Brune's (1953) curves, values hand-worked:
# median x/(0.012 + 1.02x); coarse x^2/(3e-6 + 0.0063x + 0.9947x^2);
# fine x^3/(1.0e-6 - 0.000133x + 0.02621x^2 + 1.02655x^3) (coefficients of the
# 2026 audit against Gill 1979; see test_gill_fine_curve_coefficients).
@pytest.mark.parametrize(
    ("x", "sediment", "te"),
    [
        (0.01, "median", 0.45045),  # 0.01 / 0.0222
        (0.1, "median", 0.87719),  # 0.1 / 0.114
        (1.0, "median", 0.96899),  # 1 / 1.032
        (0.01, "coarse", 0.60434),  # 1e-4 / 1.6547e-4
        (0.1, "coarse", 0.94518),  # 0.01 / 0.01058
        (10.0, "coarse", 1.0),  # 100 / 99.533 = 1.0047 -> clipped to 1
        (0.01, "fine", 0.30143),  # 1e-6 / 3.31755e-6
        (0.1, "fine", 0.78348),  # 1e-3 / 1.276345e-3
        (0.0, "median", 0.0),
    ],
)
def test_trap_efficiency_gill(x, sediment, te):
    assert_allclose(sd.trap_efficiency_gill(x, sediment), te, atol=5e-5)


def test_gill_fine_curve_coefficients():
    # Issue 14 audit: Gill (1979) prints the fine (colloidal, dispersed) curve as
    # x^3 / (1.0e-6 - 0.000133 x + 0.02621 x^2 + 1.02655 x^3); the project had a
    # rounded variant with 1.02e-6. At x = 0.005 (hand-worked):
    # 1.25e-7 / (1e-6 - 6.65e-7 + 6.5525e-7 + 1.2832e-7) = 0.11175, not 0.10838.
    assert_allclose(sd.trap_efficiency_gill(0.005, "fine"), 0.11175, atol=5e-5)
    old = 0.005**3 / (1.02e-6 - 0.00013 * 0.005 + 0.0262 * 0.005**2 + 1.0266 * 0.005**3)
    assert abs(float(sd.trap_efficiency_gill(0.005, "fine")) - old) > 0.003
    # Both fits agree to 0.1 % once x >= 0.05 (check dams usually sit there).
    x = np.logspace(np.log10(0.05), 1, 50)
    old = x**3 / (1.02e-6 - 0.00013 * x + 0.0262 * x**2 + 1.0266 * x**3)
    assert_allclose(sd.trap_efficiency_gill(x, "fine"), old, rtol=1e-3)


def test_gill_curves_ordered_and_clipped():
    x = np.logspace(-3, 2, 200)
    c, m, f = (sd.trap_efficiency_gill(x, s) for s in ("coarse", "median", "fine"))
    assert np.all(c >= m - 1e-12) and np.all(m[x > 0.005] >= f[x > 0.005])
    assert c.max() == 1.0 and np.all((f >= 0) & (f <= 1))
    # Brune (1953) median curve: about 97 % at C/I = 1 and ~88 % at 0.1.
    assert_allclose(sd.trap_efficiency_gill([0.1, 1.0]), [0.88, 0.97], atol=0.015)
    with pytest.raises(ValueError, match="sediment"):
        sd.trap_efficiency_gill(0.1, "gravel")
    with pytest.raises(ValueError, match="capacity_inflow_ratio"):
        sd.trap_efficiency_gill(-0.1)


def test_musle_hand_worked_and_swat_unit_trap():
    # Williams (1975): Y = 11.8 (V qp)^0.56 K LS C P with V [m3], qp [m3/s].
    # V = 10 000 m3, qp = 2 m3/s, K = 0.03, LS = 5, C = 0.2, P = 1:
    # (2e4)^0.56 = 256.20 -> Y = 11.8 * 256.20 * 0.03 = 90.69 t (hand-worked).
    y = sd.musle_sediment_t(10_000.0, 2.0, 0.03, 5.0, 0.2, 1.0)
    assert_allclose(y, 90.69, atol=0.01)
    # SWAT docs write V as Q_surf [mm] x area [ha] (1 mm ha = 10 m3): used
    # literally, that is 10^-0.56 = 0.2754 of the m3 form.
    swat_literal = 11.8 * (1000.0 * 2.0) ** 0.56 * 0.03
    assert_allclose(swat_literal / y, 10**-0.56, rtol=1e-12)
    assert_allclose(sd.musle_sediment_t([0.0, 10_000.0], [1.0, 0.0], 0.03, 5, 0.2, 1), 0.0)
    with pytest.raises(ValueError, match="c_factor"):
        sd.musle_sediment_t(1.0, 1.0, 0.03, 5, 1.2, 1)
    with pytest.raises(ValueError, match="runoff_volume_m3"):
        sd.musle_sediment_t(-1.0, 1.0, 0.03, 5, 0.2, 1)


def test_ls_factor():
    # USLE unit plot: 22.1 m at 9 % slope gives LS = 1.0 (Wischmeier & Smith 1978).
    th = math.atan(0.09)
    assert_allclose(sd.ls_factor(22.1, th), 1.0, atol=0.01)
    # CSLE steep-slope S (Liu et al. 1994): 20 deg -> 21.91 sin(20) - 0.96 = 6.534;
    # 22.1 m length -> L = 1.
    assert_allclose(sd.ls_factor(22.1, math.radians(20.0), "csle"), 6.534, atol=1e-3)
    # McCool S for gentle slopes: 3 deg -> 10.8 sin(3) + 0.03 = 0.5952; m = 0.5
    # (5.24 %): L = (88.4/22.1)^0.5 = 2.
    assert_allclose(sd.ls_factor(88.4, math.radians(3.0), "csle"), 2 * 0.5952, atol=1e-3)
    with pytest.raises(ValueError, match="slope_length_m"):
        sd.ls_factor(-1.0, 0.1)


def test_churchill_hand_worked():
    # C = 1e6 m3, I = 1 m3/s, L = 2000 m. In ft units: C = 3.5315e7 ft3,
    # I = 35.315 ft3/s, L = 6561.7 ft -> SI = C^2 / (I^2 L) = 1.524e8 s2/ft;
    # SI^-0.2 = 0.023014; passing = 800 * 0.023014 - 12 = 6.41 % -> TE = 0.935.
    te = sd.trap_efficiency_churchill(1e6, 1.0, 2000.0)
    assert_allclose(te, 0.9353, atol=2e-4)
    # Fine sediment from an upstream reservoir passes more readily.
    assert sd.trap_efficiency_churchill(1e6, 1.0, 2000.0, "fine") < te
    # More inflow (shorter retention) traps less; result stays in [0, 1].
    q = np.logspace(-2, 3, 30)
    t = sd.trap_efficiency_churchill(1e5, q, 500.0)
    assert np.all(np.diff(t) <= 0) and np.all((t >= 0) & (t <= 1))


def test_churchill_index_is_in_seconds_squared_per_foot():
    # Churchill (1948): SI = retention period [s] / mean velocity [ft/s], in s2/ft.
    # Retention 1e6 s; velocity 1 m3/s * 2000 m / 1e6 m3 = 0.002 m/s = 0.0065617 ft/s
    # -> SI = 1e6 / 0.0065617 = 1.524e8 s2/ft = 0.3048 * (5e8 s2/m).
    si = sd.churchill_sedimentation_index_s2_ft(1e6, 1.0, 2000.0)
    assert_allclose(si, 1.524e8, rtol=1e-12)
    assert_allclose(si, 0.3048 * 1e6**2 / (1.0**2 * 2000.0), rtol=1e-12)
    # The unit trap: reading the curve with SI in s2/m (3.28 x larger) gives
    # 1 - (800 * (5e8)^-0.2 - 12) / 100 = 0.974 instead of 0.935.
    wrong = 1 - (800 * (1e6**2 / 2000.0) ** -0.2 - 12) / 100
    assert_allclose(wrong, 0.9743, atol=2e-4)
    assert sd.trap_efficiency_churchill(1e6, 1.0, 2000.0) < wrong - 0.03
    with pytest.raises(ValueError, match="reservoir_length_m"):
        sd.churchill_sedimentation_index_s2_ft(1e6, 1.0, 0.0)


def test_brown_hand_worked():
    # C = 1233.48 m3 (1 acre-ft), W = 2.59 km2 (1 mi2), D = 0.1:
    # TE = 1 - 1/(1 + 0.00021) = 0.00020996.
    assert_allclose(sd.trap_efficiency_brown(1233.48184, 2.58998811), 0.00020996, rtol=1e-4)
    with pytest.raises(ValueError, match="catchment_area_km2"):
        sd.trap_efficiency_brown(1e6, -1.0)


def test_turbidity_ssc_linear_matches_scipy_and_hand_worked():
    # Hand-worked OLS: T = 0, 10, 20, 30; SSC = 1, 3, 5, 7 -> SSC = 1 + 0.2 T exactly.
    cal = sd.fit_turbidity_ssc([0, 10, 20, 30.0], [1, 3, 5, 7.0])
    assert_allclose([cal.intercept, cal.slope], [1.0, 0.2], atol=1e-12)
    rng = np.random.default_rng(3)
    t = rng.uniform(10, 800, 25)
    c = 0.002 * t + rng.normal(0, 0.08, t.size)
    cal = sd.fit_turbidity_ssc(t, c)
    ref = stats.linregress(t, c)
    assert_allclose([cal.intercept, cal.slope], [ref.intercept, ref.slope], rtol=1e-10)
    # Prediction interval at the mean: t_{n-2} s sqrt(1 + 1/n).
    lo, hi = cal.prediction_interval_kg_m3(cal.x_mean)
    half = stats.t.ppf(0.975, 23) * cal.residual_std * math.sqrt(1 + 1 / 25)
    assert_allclose(hi - lo, 2 * half, rtol=1e-10)
    lo, hi = cal.prediction_interval_kg_m3(t)
    assert np.mean((c >= lo) & (c <= hi)) >= 0.85


def test_turbidity_ssc_power_with_smearing():
    t = np.array([20.0, 50.0, 100.0, 400.0, 1000.0])
    c = 0.01 * t**1.1
    cal = sd.fit_turbidity_ssc(t, c, model="power")
    assert_allclose([math.exp(cal.intercept), cal.slope], [0.01, 1.1], rtol=1e-10)
    assert_allclose(cal.smearing, 1.0, atol=1e-12)  # no scatter -> no correction
    assert np.isnan(cal.ssc_kg_m3(0.0))
    with pytest.raises(ValueError, match="turbidity_ntu"):
        sd.fit_turbidity_ssc([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], model="power")
    with pytest.raises(ValueError, match="model"):
        sd.fit_turbidity_ssc([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], model="cubic")


def test_sediment_load_hand_worked():
    # Q * SSC = 0, 10, 0 kg/s at 0, 100, 200 s -> 1000 kg by the trapezoid rule.
    assert sd.sediment_load_kg([0.0, 100.0, 200.0], [0.0, 2.0, 0.0], [0.0, 5.0, 0.0]) == 1000.0
    with pytest.raises(ValueError, match="lengths differ"):
        sd.sediment_load_kg([0.0, 100.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="ssc_kg_m3"):
        sd.sediment_load_kg([0.0, 100.0], [1.0, 2.0], [1.0, -1.0])


def test_check_dam_balance_and_deposit():
    t = np.array([0.0, 600.0, 1200.0, 1800.0])
    bal = sd.check_dam_sediment_balance(
        t, [0, 10.0, 4.0, 0], [0, 200.0, 100.0, 0], [0, 2.0, 3.0, 0], [0, 20.0, 10.0, 0]
    )
    # In: trapezoid of 0, 2000, 400, 0 kg/s = 600 * (1000 + 1200 + 200) = 1 440 000 kg.
    # Out: 0, 40, 30, 0 -> 600 * (20 + 35 + 15) = 42 000 kg.
    assert_allclose(bal.inflow_t, 1440.0)
    assert_allclose(bal.outflow_t, 42.0)
    assert_allclose(bal.retained_t, 1398.0)
    assert_allclose(bal.trap_efficiency, 1398.0 / 1440.0)
    assert_allclose(sd.deposited_volume_m3(bal.retained_t, 1.35), 1398.0 / 1.35)
    with pytest.raises(ValueError, match="dry_bulk_density_t_m3"):
        sd.deposited_volume_m3(10.0, 0.0)
    assert_allclose(sd.remaining_storage_m3([5000.0, 500.0], [1200.0, 800.0]), [3800.0, 0.0])


def test_lara_pemberton():
    # Type 4 (normally empty), loess deposit 15 % clay, 70 % silt, 15 % sand:
    # 0.15 * 0.961 + 0.70 * 1.170 + 0.15 * 1.550 = 1.19565 t/m3 (hand-worked).
    assert_allclose(sd.lara_pemberton_bulk_density_t_m3(0.15, 0.70, 0.15, 4), 1.19565)
    assert sd.lara_pemberton_bulk_density_t_m3(0.15, 0.7, 0.15, 1) < 1.19565
    with pytest.raises(ValueError, match="equal 1"):
        sd.lara_pemberton_bulk_density_t_m3(0.5, 0.5, 0.5)


def test_silting_life():
    # Constant TE: 100 000 m3 * 1.3 t/m3 / (20 000 t/yr * 0.95) = 6.842 years.
    assert_allclose(sd.silting_life_years(1e5, 2e4, 1.3, 0.95), 6.8421, atol=1e-4)
    # Brune-Gill median: 1/TE = 1.02 + 0.012 I / C, so the integral is analytic:
    # years = rho / S * (1.02 (C0 - Cf) + 0.012 I ln(C0 / Cf)).
    c0, cf, inflow = 1e5, 1e3, 5e5
    expected = 1.3 / 2e4 * (1.02 * (c0 - cf) + 0.012 * inflow * math.log(c0 / cf))
    got = sd.silting_life_years(c0, 2e4, 1.3, None, annual_inflow_m3=inflow, final_storage_m3=cf)
    assert_allclose(got, expected, rtol=1e-8)
    assert sd.silting_life_years(0.0, 2e4, 1.3) == 0.0
    with pytest.raises(ValueError, match="annual_inflow_m3"):
        sd.silting_life_years(1e5, 2e4, 1.3, None)
