"""Tests for analytics.hydraulics."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from analytics import hydraulics as hy

FT = 0.3048
CFS = FT**3


def test_vnotch_90_coefficients():
    # USBR Water Measurement Manual (2001) ch. 7: for a 90-degree fully
    # contracted V-notch Ce = 0.578 and kh = 0.0029 ft.
    ce, kh = hy.vnotch_coefficients(90.0)
    assert_allclose(ce, 0.578, atol=5e-4)
    assert_allclose(kh / FT, 0.0029, atol=5e-5)


def test_vnotch_usbr_worked_value():
    # USBR WMM ch. 7, Kindsvater-Shen in foot units for a 90-degree notch:
    # Q = 4.28 Ce tan(45) (h + kh)^2.5; h = 1.0 ft ->
    # 4.28 * 0.578 * 1.0029^2.5 = 2.49 ft3/s (hand-worked).
    q = hy.vnotch_weir_m3_s(1.0 * FT)
    assert_allclose(q / CFS, 2.492, atol=0.005)


@pytest.mark.parametrize("h_ft", [0.2, 0.4, 0.6, 0.8, 1.0, 1.25])
def test_vnotch_matches_cone_formula(h_ft):
    # USBR WMM ch. 7: Cone's formula for 90-degree fully contracted notches,
    # Q = 2.49 h^2.48 (ft, ft3/s), agrees with Kindsvater-Shen within ~1 %.
    q = hy.vnotch_weir_m3_s(h_ft * FT) / CFS
    assert_allclose(q, 2.49 * h_ft**2.48, rtol=0.012)


def test_vnotch_edges():
    assert_allclose(hy.vnotch_weir_m3_s([-0.1, 0.0]), [0.0, 0.0])
    assert np.isnan(hy.vnotch_weir_m3_s(np.nan))
    # Narrower notch passes less water at the same head.
    assert hy.vnotch_weir_m3_s(0.2, 60.0) < hy.vnotch_weir_m3_s(0.2, 90.0)
    with pytest.raises(ValueError, match="angle_deg"):
        hy.vnotch_weir_m3_s(0.2, 120.0)


def test_vnotch_angle_range_is_iso_1438():
    # USBR WMM ch. 7 section 7 states Kindsvater-Shen for 25-100 deg (Kulin and
    # Compton 1975); ISO 1438:2017 for pi/9..5pi/9 rad = 20-100 deg. The ISO range
    # is enforced (so a 22.5 deg notch can be rated).
    for ok in (20.0, 22.5, 25.0, 100.0):
        ce, _ = hy.vnotch_coefficients(ok)
        assert 0.57 < float(ce) < 0.60
    for bad in (19.9, 100.1, np.nan):
        with pytest.raises(ValueError, match="angle_deg"):
            hy.vnotch_coefficients(bad)


def test_vnotch_head_range_fully_vs_partially_contracted():
    # USBR WMM ch. 7 section 7, precautions (c)-(e): head >= 0.2 ft; at most
    # 1.25 ft fully contracted (0.381 m), 2.0 ft for a partially contracted
    # 90-degree notch (0.610 m).
    assert_allclose(hy.VNOTCH_HEAD_RANGE_M["full"], [0.2 * FT, 1.25 * FT])
    assert_allclose(hy.VNOTCH_HEAD_RANGE_M["partial"], [0.2 * FT, 2.0 * FT])
    h = np.array([0.0, 0.03, 0.2 * FT, 0.3, 1.25 * FT, 0.5, 2.0 * FT, 0.7, np.nan])
    q = hy.vnotch_weir_m3_s(h)
    # 0 -> dry notch; 0.03 m and 0.5 / 0.61 / 0.7 m are outside -> NaN (not rated).
    assert q[0] == 0.0 and np.isnan(q[8])
    assert np.all(np.isnan(q[[1, 5, 6, 7]]))
    assert np.all(np.isfinite(q[[2, 3, 4]]))
    # The same formula when the caller accepts extrapolation.
    ext = hy.vnotch_weir_m3_s(h, out_of_range="extrapolate")
    assert_allclose(ext[[2, 3, 4]], q[[2, 3, 4]])
    assert np.all(np.isfinite(ext[:8]))
    with pytest.raises(ValueError, match=r"head_m=0\.5 .*fully contracted"):
        hy.vnotch_weir_m3_s([0.2, 0.5, 0.7], out_of_range="raise")
    # Partially contracted 90-degree notch: rated to 2.0 ft with Ce from fig. 7-7.
    # Ce = 0.585, h = 0.5 m: 8/15 * 0.585 * 4.42869 * (0.5 + kh)^2.5 (hand-worked
    # with kh = 0.0029 ft from fig. 7-6a).
    kh = hy.vnotch_coefficients(90.0)[1]
    qp = hy.vnotch_weir_m3_s(0.5, contraction="partial", effective_coefficient=0.585)
    assert_allclose(qp, 8 / 15 * 0.585 * np.sqrt(2 * 9.80665) * (0.5 + kh) ** 2.5)
    assert np.isnan(hy.vnotch_weir_m3_s(0.7, contraction="partial", effective_coefficient=0.585))
    with pytest.raises(ValueError, match="effective_coefficient"):
        hy.vnotch_weir_m3_s(0.5, contraction="partial")
    with pytest.raises(ValueError, match="90 deg"):
        hy.vnotch_weir_m3_s(0.3, 60.0, contraction="partial", effective_coefficient=0.58)
    with pytest.raises(ValueError, match="contraction"):
        hy.vnotch_weir_m3_s(0.3, contraction="suppressed")
    with pytest.raises(ValueError, match="out_of_range"):
        hy.vnotch_weir_m3_s(0.3, out_of_range="clip")


def test_rectangular_francis():
    # USBR WMM ch. 7: Francis, contracted, Q = 3.33 (L - 0.2 h) h^1.5 in feet.
    # L = 3 ft, h = 0.5 ft -> 3.33 * 2.9 * 0.35355 = 3.414 ft3/s (hand-worked).
    q = hy.rectangular_weir_m3_s(0.5 * FT, 3.0 * FT)
    assert_allclose(q / CFS, 3.414, atol=0.002)
    # SI form 1.84 (L - 0.2 H) H^1.5: L = 1 m, H = 0.2 m -> 1.84*0.96*0.08944 = 0.158.
    assert_allclose(hy.rectangular_weir_m3_s(0.2, 1.0), 0.158, atol=5e-4)
    with pytest.raises(ValueError, match="crest_length_m"):
        hy.rectangular_weir_m3_s(0.2, -1.0)


def test_broad_crested_hand_worked():
    # SL/T 804-2020 form Q = m b sqrt(2g) H^1.5: m = 0.385, b = 5 m, H = 1 m ->
    # 0.385 * 5 * 4.42869 = 8.525 m3/s (hand-worked).
    assert_allclose(hy.broad_crested_weir_m3_s(1.0, 5.0), 8.525, atol=1e-3)
    # m = 0.385 is the critical-flow limit: Q = b sqrt(g) (2/3 H)^1.5 (Chow 1959).
    h = np.array([0.1, 0.5, 2.0])
    critical = 3.0 * np.sqrt(hy.G_M_S2) * (2.0 / 3.0 * h) ** 1.5
    assert_allclose(hy.broad_crested_weir_m3_s(h, 3.0), critical, rtol=1e-3)
    assert hy.broad_crested_weir_m3_s(-0.5, 3.0) == 0.0
    with pytest.raises(ValueError, match="width_m"):
        hy.broad_crested_weir_m3_s(1.0, 0.0)
    with pytest.raises(ValueError, match="discharge_coefficient"):
        hy.broad_crested_weir_m3_s(1.0, 1.0, 0.5)


def test_submergence_factor_table():
    # Broad-crested submergence coefficients (水力计算手册; SL/T 804-2020):
    # 1.0 up to hs/H = 0.8, 0.84 at 0.90, 0.40 at 0.98.
    s = hy.broad_crested_submergence_factor([0.0, 0.8, 0.9, 0.98, 0.985, 1.0, 1.2])
    assert_allclose(s, [1.0, 1.0, 0.84, 0.40, 0.30, 0.0, 0.0])
    assert np.all(np.diff(hy.broad_crested_submergence_factor(np.linspace(0, 1, 101))) <= 0)
    q = hy.broad_crested_weir_submerged_m3_s(1.0, 0.9, 5.0)
    assert_allclose(q, 0.84 * hy.broad_crested_weir_m3_s(1.0, 5.0))
    assert hy.broad_crested_weir_submerged_m3_s(1.0, -1.0, 5.0) == hy.broad_crested_weir_m3_s(
        1.0, 5.0
    )


def test_orifice():
    # Q = Cd A sqrt(2 g h): 0.6 * 0.1 * sqrt(2 * 9.80665 * 2) = 0.06 * 6.26311 = 0.37579 m3/s.
    assert_allclose(hy.orifice_m3_s(2.0, 0.1), 0.37579, atol=1e-5)
    assert hy.orifice_m3_s(-1.0, 0.1) == 0.0
    with pytest.raises(ValueError, match="area_m2"):
        hy.orifice_m3_s(1.0, -0.1)


def test_power_rating_and_table():
    assert_allclose(hy.power_rating_m3_s([0.05, 0.1, 0.6], 2.0, 1.5, 0.1), [0.0, 0.0, 2 * 0.5**1.5])
    # A table that is itself a power law is reproduced exactly between rows.
    th = np.array([0.05, 0.1, 0.2, 0.4])
    tq = 1.3 * th**2.2
    h = np.array([0.0, 0.03, 0.07, 0.3, 0.5])
    q = hy.table_rating_m3_s(h, th, tq)
    assert_allclose(q[:4], [0.0, *(1.3 * h[1:4] ** 2.2)], rtol=1e-12)
    assert np.isnan(q[4])
    with pytest.raises(ValueError, match="strictly increasing"):
        hy.table_rating_m3_s(0.1, [0.2, 0.1], [1.0, 2.0])


def test_fit_power_rating_fixed_h0_exact():
    h = np.array([0.2, 0.4, 0.8, 1.6])
    q = 3.0 * (h - 0.1) ** 1.7
    fit = hy.fit_power_rating(h, q, h0_m=0.1)
    assert_allclose([fit.a, fit.b], [3.0, 1.7], rtol=1e-10)
    assert fit.residual_std_log < 1e-10


def test_fit_power_rating_recovers_parameters_with_uncertainty():
    rng = np.random.default_rng(42)
    h = np.linspace(0.3, 2.0, 40)
    q = 4.0 * (h - 0.15) ** 1.6 * np.exp(rng.normal(0, 0.05, h.size))
    fit = hy.fit_power_rating(h, q)
    assert_allclose([fit.a, fit.b, fit.h0_m], [4.0, 1.6, 0.15], rtol=0.15, atol=0.05)
    assert 0.03 < fit.residual_std_log < 0.07
    lo, hi = fit.interval_m3_s(h)
    coverage = np.mean((q >= lo) & (q <= hi))
    assert coverage >= 0.85
    clo, chi = fit.interval_m3_s(h, kind="confidence")
    assert np.all(chi - clo < hi - lo)
    assert np.all(clo <= fit.discharge_m3_s(h)) and np.all(fit.discharge_m3_s(h) <= chi)


def test_fit_power_rating_errors():
    with pytest.raises(ValueError, match="lengths differ"):
        hy.fit_power_rating([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="discharge_m3_s"):
        hy.fit_power_rating([1, 2, 3, 4.0], [1.0, -2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="h0_m"):
        hy.fit_power_rating([1, 2, 3, 4.0], [1, 2, 3, 4.0], h0_m=1.5)
