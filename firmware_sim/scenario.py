"""Scenario files: the simulated county's sites, sensors, rainfall climate and faults (YAML).

A scenario is validated strictly (unknown keys are errors, so a typo never
silently falls back to a default). Stages of a check dam are all measured
above one datum, the dam's gauge datum: the silted surface at the dam on the
survey date the scenario describes. See docs/simulator.md.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.channels import CHANNEL_NAME_PATTERN
from protocol.topics import CLIENT_ID_PATTERN

DEFAULT_SCENARIO = Path(__file__).parent / "scenarios" / "default.yaml"

Id = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)]
Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not describe a valid county."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# ----------------------------------------------------------------------------- sensors
Measures = Literal[
    "stage",  # check dam pond stage above the gauge datum [m]
    "level",  # cistern water level above its floor [m]
    "inflow",  # discharge into the pond / plot runoff [m3/s]
    "outflow",  # total discharge out of the pond (spillway + culvert + overtopping) [m3/s]
    "inflow_ssc",  # SSC of the inflow at the pond entrance [kg/m3]
    "pond_ssc",  # SSC of the (fully mixed) pond = SSC of the outflow [kg/m3]
    "rain",  # rain at the site [mm]
]


class Calibration(_Strict):
    """Turbidity calibration of the site's sediment: ``SSC [kg/m3] = a * NTU ** b``."""

    a_kg_m3: Pos = 0.05
    b: Pos = 1.0

    def ssc_kg_m3(self, ntu):
        return self.a_kg_m3 * ntu**self.b

    def ntu(self, ssc_kg_m3):
        return (ssc_kg_m3 / self.a_kg_m3) ** (1.0 / self.b)


class SensorSpec(_Strict):
    """One sensor of a logger: which channel it publishes, what it measures, how it errs.

    ``model``:
      * ``gauge``: pressure or radar level gauge: ``true + offset + drift * days + N(0, noise)``
        rounded to ``resolution``; ``kind`` says pressure or radar.
      * ``flow``: flume or weir discharge: ``true * (1 + N(0, noise_rel))``, 0 when dry.
      * ``turbidity``: ``NTU = (SSC / a) ** (1 / b)`` times lognormal scatter
        ``exp(N(0, scatter))`` plus ``N(0, noise)``, clipped to ``[0, range_ntu]`` (saturation).
      * ``tipping_bucket``: tips of ``tip_mm`` counted between samples; the reading
        is the depth of the tips in the interval ending at the sample time.
    """

    channel: ChannelName
    measures: Measures
    model: Literal["gauge", "flow", "turbidity", "tipping_bucket"]
    kind: Literal["pressure", "radar", "h_flume", "v_notch", "obs", "tipping_bucket"] | None = None
    noise: NonNeg = 0.0
    noise_rel: NonNeg = 0.0
    offset: float = 0.0
    drift_per_day: float = 0.0
    resolution: NonNeg = 0.0
    range_ntu: Pos = 4000.0
    scatter: NonNeg = 0.0
    calibration: Calibration | None = None
    tip_mm: Pos = 0.2
    catch_efficiency: Annotated[float, Field(gt=0, le=1.2)] = 1.0

    @model_validator(mode="after")
    def _consistent(self) -> SensorSpec:
        if self.model == "turbidity" and self.calibration is None:
            raise ValueError(f"turbidity sensor {self.channel}: calibration {{a_kg_m3, b}} needed")
        if self.model == "tipping_bucket" and self.measures != "rain":
            raise ValueError("a tipping_bucket measures rain")
        if self.model == "turbidity" and self.measures not in ("inflow_ssc", "pond_ssc"):
            raise ValueError("a turbidity sensor measures inflow_ssc or pond_ssc")
        return self


class LoggerSpec(_Strict):
    """Logger behaviour: sampling, transmission, power and radio."""

    dry_interval_s: Annotated[int, Field(ge=60, le=86_400)] = 600
    event_interval_s: Annotated[int, Field(ge=10, le=3600)] = 60
    dry_send_every: Annotated[int, Field(ge=1, le=144)] = 3  # samples per message, dry weather
    event_send_every: Annotated[int, Field(ge=1, le=60)] = 1  # samples per message, event mode
    event_hold_s: Annotated[int, Field(ge=0)] = 3600  # stay in event mode after the last trigger
    event_trigger_rain_mm: NonNeg = 0.2
    battery_v: Pos = 12.8
    solar: bool = True
    rssi_dbm: float = -85.0
    firmware: str = "swc-sim 1.0"


# ----------------------------------------------------------------------------- sites
class Catchment(_Strict):
    """The dam's own (intermediate) catchment, excluding the catchments of upstream dams."""

    area_km2: Pos
    curve_number: Annotated[float, Field(gt=30, le=100)]
    tc_h: Pos  # time of concentration
    slope_pct: Pos = 30.0  # mean slope of the hillslopes
    slope_length_m: Pos = 60.0
    k_factor: NonNeg = 0.045  # metric USLE K [t h MJ-1 mm-1]
    c_factor: Fraction = 0.35
    p_factor: Fraction = 1.0


class StageStorage(_Strict):
    """``V = a h^b`` [m3] with h above the gauge datum [m]."""

    a: Pos
    b: Annotated[float, Field(ge=1.0, le=4.0)]


class Spillway(_Strict):
    crest_m: NonNeg
    width_m: Pos
    coefficient: Annotated[float, Field(gt=0, le=0.385)] = 0.36


class Culvert(_Strict):
    centre_m: NonNeg
    area_m2: Pos
    coefficient: Annotated[float, Field(gt=0, le=1)] = 0.6


class CheckDamSpec(_Strict):
    id: Id
    name: str
    gully: str
    dam_class: Literal["key", "medium", "small"] = "small"
    downstream: Id | None = None
    latitude: float
    longitude: float
    elevation_m: float  # dam base (original gully bed) elevation a.s.l.
    silted_level_m: NonNeg  # silted surface above the dam base at survey = gauge datum
    catchment: Catchment
    stage_storage: StageStorage
    dam_crest_m: Pos  # above the gauge datum
    dam_crest_length_m: Pos
    spillway: Spillway | None = None
    culvert: Culvert | None = None
    initial_stage_m: NonNeg = 0.0
    loss_mm_day: NonNeg = 30.0  # seepage + evaporation over the wetted pond area
    dry_bulk_density_t_m3: Annotated[float, Field(gt=0.3, le=2.0)] = 1.35
    settling_velocity_m_s: Pos = 4e-4
    max_ssc_kg_m3: Pos = 800.0
    deposit_reduces_storage: bool = True
    logger: LoggerSpec = LoggerSpec()
    sensors: list[SensorSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _stages(self) -> CheckDamSpec:
        if self.spillway and self.spillway.crest_m > self.dam_crest_m:
            raise ValueError(f"{self.id}: spillway crest above the dam crest")
        if self.culvert and self.culvert.centre_m >= self.dam_crest_m:
            raise ValueError(f"{self.id}: culvert above the dam crest")
        return self


class CisternGeometry(_Strict):
    shape: Literal["bottle", "cylinder"] = "bottle"
    body_diameter_m: Pos = 4.0
    body_height_m: Pos = 3.0
    neck_diameter_m: Pos = 0.8
    shoulder_height_m: Pos = 1.5
    neck_height_m: NonNeg = 0.5
    bottom_diameter_m: Pos | None = None
    depth_m: Pos | None = None  # cylinder: depth to the overflow


class CisternSpec(_Strict):
    id: Id
    name: str
    latitude: float
    longitude: float
    elevation_m: float
    geometry: CisternGeometry = CisternGeometry()
    catchment_area_m2: Pos  # roof, yard or road surface draining to the cistern
    runoff_coefficient: Fraction = 0.8
    initial_loss_mm: NonNeg = 2.0
    overflow_level_m: Pos | None = None  # default: the full height
    initial_level_m: NonNeg = 1.0
    use_m3_day: NonNeg = 0.15  # household and livestock draw
    logger: LoggerSpec = LoggerSpec()
    sensors: list[SensorSpec] = Field(default_factory=list)


class RunoffPlotSpec(_Strict):
    id: Id
    name: str
    latitude: float
    longitude: float
    elevation_m: float
    area_m2: Pos
    length_m: Pos
    slope_pct: Pos
    cover: str
    curve_number: Annotated[float, Field(gt=30, le=100)]
    tank_capacity_m3: Pos = 2.0  # collecting tank (read and emptied after each event)
    k_factor: NonNeg = 0.045
    c_factor: Fraction = 0.3
    p_factor: Fraction = 1.0
    logger: LoggerSpec = LoggerSpec()
    sensors: list[SensorSpec] = Field(default_factory=list)


class RainGaugeSpec(_Strict):
    id: Id
    name: str
    latitude: float
    longitude: float
    elevation_m: float
    logger: LoggerSpec = LoggerSpec()
    sensors: list[SensorSpec] = Field(default_factory=list)


# ----------------------------------------------------------------------------- weather
class Idf(_Strict):
    """Storm intensity formula ``i = a (1 + c lg T) / (t + b)^n`` [mm/min], t in min, T in years."""

    a_mm_min: Pos = 6.5
    b_min: NonNeg = 10.0
    n: Annotated[float, Field(gt=0, lt=1)] = 0.75
    c: NonNeg = 1.2


class DesignStorm(_Strict):
    duration_min: Annotated[float, Field(gt=0, le=4320)] = 360.0
    peak_position: Annotated[float, Field(gt=0, lt=1)] = 0.4
    amc: Literal["I", "II", "III"] = "II"
    lead_h: NonNeg = 1.0  # dry time before the storm starts
    after_h: Pos = 41.0  # simulated time after the storm ends (recession, pond drainage)


class Stochastic(_Strict):
    """Seeded storm generator for multi-month runs."""

    storms_per_day: Pos = 0.3
    mean_depth_mm: Pos = 12.0
    depth_shape: Pos = 0.75  # gamma shape of storm depth
    median_duration_h: Pos = 3.0
    duration_sigma: NonNeg = 0.7  # lognormal sigma of duration
    correlation_length_km: Pos = 8.0
    spatial_cv: NonNeg = 0.35  # coefficient of variation of the storm's depth across the county
    max_depth_mm: Pos = 160.0


class Rainfall(_Strict):
    idf: Idf = Idf()
    design: DesignStorm = DesignStorm()
    stochastic: Stochastic = Stochastic()


class Fault(_Strict):
    """A fault injected into one device's readings: ``start`` + ``duration_h``."""

    device: Id
    kind: Literal["stuck", "spikes", "dropout", "clock_drift", "fouling"]
    channel: ChannelName | None = None  # None: every channel of the device
    start: datetime | None = None  # default: the run start
    start_offset_h: NonNeg = 0.0  # or an offset from the run start
    duration_h: Pos = 1e6
    magnitude: float = 0.0  # spikes: size in channel units; fouling: growth per day (fraction)
    probability: Fraction = 0.02  # spikes: share of samples spiked
    drift_ppm: float = 0.0  # clock_drift: seconds per million seconds, + runs fast


class Scenario(_Strict):
    name: str
    description: str = ""
    start: datetime = datetime(2026, 7, 20, tzinfo=UTC)
    seed: int = 20260720
    rainfall: Rainfall = Rainfall()
    rain_gauges: list[RainGaugeSpec] = Field(default_factory=list)
    check_dams: list[CheckDamSpec] = Field(default_factory=list)
    cisterns: list[CisternSpec] = Field(default_factory=list)
    runoff_plots: list[RunoffPlotSpec] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a zone, e.g. 2026-07-20T00:00:00Z")
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _topology(self) -> Scenario:
        ids = [s.id for s in self.sites()]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"site ids used twice: {', '.join(dupes)}")
        dams = {d.id: d for d in self.check_dams}
        for d in self.check_dams:
            if d.downstream is not None and d.downstream not in dams:
                raise ValueError(f"{d.id}: downstream {d.downstream!r} is not a check dam")
        self.dam_order()  # raises on a cycle
        known = set(ids)
        for f in self.faults:
            if f.device not in known:
                raise ValueError(f"fault for unknown device {f.device!r}")
        return self

    def sites(self) -> list[Any]:
        return [*self.rain_gauges, *self.check_dams, *self.cisterns, *self.runoff_plots]

    def dam_order(self) -> list[str]:
        """Dam ids ordered so that every dam comes after all dams upstream of it."""
        ups: dict[str, list[str]] = {d.id: [] for d in self.check_dams}
        for d in self.check_dams:
            if d.downstream:
                ups[d.downstream].append(d.id)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(i: str) -> None:
            if state.get(i) == 2:
                return
            if state.get(i) == 1:
                raise ValueError(f"the dams' downstream links form a cycle through {i}")
            state[i] = 1
            for u in ups[i]:
                visit(u)
            state[i] = 2
            order.append(i)

        for d in self.check_dams:
            visit(d.id)
        return order

    def upstream_of(self, dam_id: str) -> list[str]:
        return [d.id for d in self.check_dams if d.downstream == dam_id]


def kind_of(site: Any) -> str:
    if isinstance(site, CheckDamSpec):
        return "check_dam"
    if isinstance(site, CisternSpec):
        return "cistern"
    if isinstance(site, RunoffPlotSpec):
        return "runoff_plot"
    return "rain_gauge"


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read and validate a scenario file; ``None`` gives the shipped default county."""
    p = Path(path) if path is not None else DEFAULT_SCENARIO
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{p}: cannot read the scenario: {exc}") from None
    try:
        return Scenario.model_validate(data or {})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise ScenarioError(f"{p}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None


# ----------------------------------------------------------------------------- registry
def _channels(site: Any) -> list[str]:
    chans = [s.channel for s in site.sensors]
    return [*chans, "battery_v", "rssi_dbm"]


def _sensor_params(site: Any) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_defaults=True, exclude_none=True) for s in site.sensors]


def site_params(site: Any) -> dict[str, Any]:
    """Design parameters of a site as the ingest registry stores them (SI units in names)."""
    if isinstance(site, CheckDamSpec):
        p: dict[str, Any] = {
            "gully": site.gully,
            "dam_class": site.dam_class,
            "downstream_dam": site.downstream,
            "stage_datum": "silted surface at the dam at survey (gauge zero)",
            "datum_elevation_m": round(site.elevation_m + site.silted_level_m, 3),
            "silted_level_m": site.silted_level_m,
            "stage_storage": {"a": site.stage_storage.a, "b": site.stage_storage.b},
            "dam_crest_m": site.dam_crest_m,
            "dam_crest_length_m": site.dam_crest_length_m,
            "catchment_area_km2": site.catchment.area_km2,
            "curve_number": site.catchment.curve_number,
            "tc_h": site.catchment.tc_h,
            "dry_bulk_density_t_m3": site.dry_bulk_density_t_m3,
            "loss_mm_day": site.loss_mm_day,
            "settling_velocity_m_s": site.settling_velocity_m_s,
        }
        if site.spillway:
            p.update(
                spillway_crest_m=site.spillway.crest_m,
                spillway_width_m=site.spillway.width_m,
                spillway_coefficient=site.spillway.coefficient,
            )
        if site.culvert:
            p.update(
                culvert_centre_m=site.culvert.centre_m,
                culvert_area_m2=site.culvert.area_m2,
                culvert_coefficient=site.culvert.coefficient,
            )
        for s in site.sensors:
            if s.model == "turbidity" and s.calibration is not None:
                p.setdefault(
                    "turbidity_calibration",
                    {
                        "formula": "ssc_kg_m3 = a_kg_m3 * turbidity_ntu ** b",
                        "a_kg_m3": s.calibration.a_kg_m3,
                        "b": s.calibration.b,
                        "range_ntu": s.range_ntu,
                        "measures": s.measures,
                    },
                )
    elif isinstance(site, CisternSpec):
        g = site.geometry
        p = {
            "geometry": g.model_dump(exclude_none=True),
            "catchment_area_m2": site.catchment_area_m2,
            "runoff_coefficient": site.runoff_coefficient,
            "overflow_level_m": site.overflow_level_m,
            "initial_loss_mm": site.initial_loss_mm,
            "use_m3_day": site.use_m3_day,
        }
    elif isinstance(site, RunoffPlotSpec):
        p = {
            "area_m2": site.area_m2,
            "length_m": site.length_m,
            "slope_pct": site.slope_pct,
            "cover": site.cover,
            "curve_number": site.curve_number,
            "tank_capacity_m3": site.tank_capacity_m3,
            "k_factor": site.k_factor,
            "c_factor": site.c_factor,
            "p_factor": site.p_factor,
        }
    else:
        p = {}
    p["sensors"] = _sensor_params(site)
    return p


def registry(scenario: Scenario) -> dict[str, Any]:
    """The scenario's sites in the format of ``swc sites load FILE`` (ingest/store/registry.py)."""
    sites = []
    for site in scenario.sites():
        sites.append(
            {
                "id": site.id,
                "kind": kind_of(site),
                "name": site.name,
                "latitude": site.latitude,
                "longitude": site.longitude,
                "elevation_m": site.elevation_m,
                "params": site_params(site),
                "devices": [
                    {"id": site.id, "channels": _channels(site), "firmware": site.logger.firmware}
                ],
            }
        )
    return {"sites": sites}


def registry_yaml(scenario: Scenario) -> str:
    return yaml.safe_dump(registry(scenario), sort_keys=False, allow_unicode=True)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance [km] (haversine)."""
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))
