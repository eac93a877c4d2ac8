"""Result models of the derived products (pydantic, JSON-ready; SI units in field names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------- versions
class StageStorageCurveOut(_Model):
    id: int | None = Field(description="None for the design curve from sites.params")
    site_id: str
    valid_from: datetime | None
    kind: str = Field(description="'power' (V = a h^b) or 'table'")
    a: float | None = None
    b: float | None = None
    stages_m: list[float] = Field(default_factory=list)
    volumes_m3: list[float] = Field(default_factory=list)
    source: str
    survey_id: int | None = None
    note: str = ""
    fit_rmse_rel: float | None = Field(
        None, description="RMS relative error of the power fit at the survey points [-]"
    )


class CalibrationOut(_Model):
    id: int | None = Field(description="None for the fallback in sites.params")
    site_id: str
    stream_id: int | None = None
    channel: str
    valid_from: datetime | None
    kind: str = Field(description="'linear': a + b NTU; 'power': exp(a) NTU^b * smearing")
    intercept: float
    slope: float
    smearing: float = 1.0
    residual_std: float | None = None
    n: int | None = None
    x_mean: float | None = None
    sxx: float | None = None
    ntu_min: float | None = None
    ntu_max: float | None = None
    source: str
    note: str = ""


# ----------------------------------------------------------------------- products
class StormEvent(_Model):
    site_id: str
    start: datetime
    end: datetime
    depth_mm: float
    duration_h: float
    i10_mm_h: float
    i30_mm_h: float
    i60_mm_h: float
    energy_mj_ha: float
    ei30_mj_mm_ha_h: float
    readings: int


class StormEvents(_Model):
    site_id: str
    rain_site_id: str
    start: datetime | None
    end: datetime | None
    min_dry_h: float
    events: list[StormEvent]
    cached: bool = False


class DamEvent(_Model):
    site_id: str
    start: datetime
    end: datetime
    rain_mm: float | None = Field(description="storm depth at the rain gauge used [mm]")
    curve: StageStorageCurveOut
    inflow_volume_m3: float
    outflow_volume_m3: float
    spill_volume_m3: float = Field(description="over the spillway and the dam crest [m3]")
    loss_volume_m3: float
    storage_change_m3: float = Field(description="water volume, end minus start [m3]")
    peak_stage_m: float
    peak_stage_time: datetime
    peak_inflow_m3_s: float
    spilled: bool
    overtopped: bool
    sediment_in_t: float | None
    sediment_out_t: float | None
    sediment_retained_t: float | None
    deposit_volume_m3: float | None
    trap_efficiency_measured: float | None
    trap_efficiency_gill: float | None
    gill_capacity_inflow_ratio: float | None
    max_inflow_ssc_kg_m3: float | None
    outflow_source: str = Field(description="'measured' (outflow flume) or 'hydraulics'")
    sediment_out_method: str
    turbidity_saturated_share: float | None = None
    turbidity_outside_calibration_share: float | None = None
    stage_readings: int
    warnings: list[str] = Field(default_factory=list)


class DamEvents(_Model):
    site_id: str
    rain_site_id: str | None
    start: datetime | None
    end: datetime | None
    events: list[DamEvent]
    cached: bool = False


class DamRetention(_Model):
    site_id: str
    at: datetime
    since: datetime | None = Field(description="baseline: the curve survey's date, or record start")
    curve: StageStorageCurveOut
    events: int
    sediment_in_t: float | None
    sediment_retained_t: float | None
    deposit_volume_m3: float | None
    silting_capacity_m3: float
    silting_capacity_basis: str
    remaining_storage_m3: float | None
    annual_sediment_inflow_t: float | None
    annual_sediment_inflow_basis: str | None
    trap_efficiency_used: float | None
    silting_life_years: float | None
    notes: list[str] = Field(default_factory=list)


class PlotEvent(_Model):
    site_id: str
    start: datetime
    end: datetime
    rain_mm: float | None
    runoff_volume_m3: float
    runoff_depth_mm: float
    runoff_coefficient: float | None
    peak_runoff_m3_s: float
    soil_loss_t: float | None
    soil_loss_t_ha: float | None
    soil_loss_method: str | None


class PlotEvents(_Model):
    site_id: str
    rain_site_id: str | None
    area_m2: float
    events: list[PlotEvent]
    cached: bool = False


class CisternEvent(_Model):
    site_id: str
    start: datetime
    end: datetime
    rain_mm: float | None
    start_volume_m3: float
    peak_volume_m3: float
    harvested_volume_m3: float = Field(description="volume stored: rise to the peak plus use")
    expected_inflow_m3: float | None = Field(description="C (P - initial loss) A from the rain")
    reached_overflow: bool
    overflow_volume_m3: float


class CisternEvents(_Model):
    site_id: str
    rain_site_id: str | None
    capacity_m3: float
    events: list[CisternEvent]
    cached: bool = False
