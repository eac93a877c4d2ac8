"""What a field survey of each kind records: request models validated per kind, and the
shapes the API returns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from ..research.models import CalibrationOut, StageStorageCurveOut

Kind = Literal[
    "inspection",
    "sediment_survey",
    "stage_storage_survey",
    "calibration_visit",
    "cistern_check",
    "plot_sample",
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
#: Site kinds a survey kind applies to (absent: any site).
SITE_KINDS: dict[str, tuple[str, ...]] = {
    "sediment_survey": ("check_dam",),
    "stage_storage_survey": ("check_dam",),
    "cistern_check": ("cistern",),
    "plot_sample": ("runoff_plot",),
}
Condition = Literal["good", "fair", "poor", "failed"]
DamageType = Literal[
    "crack",
    "seepage",
    "piping",
    "slope_erosion",
    "gully_erosion",
    "settlement",
    "spillway_blocked",
    "spillway_damaged",
    "outlet_blocked",
    "outlet_damaged",
    "overtopping_marks",
    "animal_burrows",
    "other",
]
Severity = Literal["minor", "moderate", "severe"]

SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
Text = Annotated[str, Field(max_length=4000, pattern=r"^[^\x00]*$")]
Short = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]
Ref = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]


def _plausible(t: datetime) -> datetime:
    if not (1950 <= t.astimezone(UTC).year <= 2200):
        raise ValueError("must be between the years 1950 and 2200")
    return t


When = Annotated[AwareDatetime, AfterValidator(_plausible)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Damage(_Body):
    type: DamageType
    location: Short = Field(default="", description="where on the structure")
    severity: Severity = "minor"
    note: Text = ""


# ------------------------------------------------------------------------ data per kind
class InspectionData(_Body):
    pond_stage_m: float | None = Field(
        default=None, ge=-50, le=500, description="water level read on the staff gauge [m]"
    )
    spillway_clear: bool | None = None
    outlet_clear: bool | None = None


class DepositPoint(_Body):
    """A point of the deposit surface: local x, y or GNSS latitude, longitude."""

    x_m: float | None = Field(default=None, ge=-1e6, le=1e6)
    y_m: float | None = Field(default=None, ge=-1e6, le=1e6)
    latitude: Lat | None = None
    longitude: Lon | None = None
    elevation_m: float = Field(
        ge=-50, le=500, description="deposit surface above the site datum (the gauge datum) [m]"
    )

    @model_validator(mode="after")
    def _position(self):
        xy = (self.x_m is None, self.y_m is None)
        ll = (self.latitude is None, self.longitude is None)
        if xy == (True, False) or xy == (False, True):
            raise ValueError("give both x_m and y_m")
        if ll == (True, False) or ll == (False, True):
            raise ValueError("give both latitude and longitude")
        if xy == (True, True) and ll == (True, True):
            raise ValueError("a point needs x_m, y_m or latitude, longitude")
        return self


class SedimentSurveyData(_Body):
    points: list[DepositPoint] = Field(min_length=1, max_length=10_000)
    method: Literal["rtk_gnss", "total_station", "level", "other"] = "rtk_gnss"
    dry_bulk_density_t_m3: float | None = Field(
        default=None, gt=0.3, le=2.7, description="sampled; else params.dry_bulk_density_t_m3"
    )


class StagePoint(_Body):
    stage_m: float = Field(ge=-50, le=500, description="stage in the gauge datum [m]")
    volume_m3: float = Field(ge=0, le=1e10)


class StageStorageSurveyData(_Body):
    points: list[StagePoint] = Field(min_length=2, max_length=10_000)
    curve_kind: Literal["power", "table"] = Field(
        default="power", description="fit V = a h^b to the points, or use them as a table"
    )


class CalibrationSample(_Body):
    ntu: float = Field(ge=0, le=1e5, description="sensor turbidity at sampling [NTU]")
    ssc_kg_m3: float = Field(ge=0, le=2000, description="lab suspended sediment [kg/m3 = g/L]")
    sampled_at: When | None = None
    bottle: Short = ""


class CalibrationVisitData(_Body):
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = "turbidity_ntu"
    stream_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    model: Literal["power", "linear"] = "power"
    samples: list[CalibrationSample] = Field(min_length=3, max_length=10_000)


class CisternCheckData(_Body):
    water_level_m: float | None = Field(default=None, ge=0, le=100)
    volume_m3: float | None = Field(default=None, ge=0, le=1e6)
    sediment_depth_m: float | None = Field(default=None, ge=0, le=100)
    inlet_clear: bool | None = None
    lid_intact: bool | None = None

    @model_validator(mode="after")
    def _some(self):
        if self.water_level_m is None and self.volume_m3 is None:
            raise ValueError("give water_level_m or volume_m3")
        return self


class PlotSampleData(_Body):
    event_start: When | None = None
    event_end: When | None = None
    runoff_volume_m3: float | None = Field(default=None, ge=0, le=1e6)
    runoff_depth_mm: float | None = Field(default=None, ge=0, le=2000)
    sample_volume_l: float | None = Field(default=None, gt=0, le=1000)
    sample_dry_mass_g: float | None = Field(default=None, ge=0, le=1e6)
    ssc_kg_m3: float | None = Field(
        default=None, ge=0, le=2000, description="given, or dry mass / sample volume"
    )
    soil_loss_kg: float | None = Field(default=None, ge=0, le=1e7)

    @model_validator(mode="after")
    def _some(self):
        if self.runoff_volume_m3 is None and self.runoff_depth_mm is None:
            raise ValueError("give runoff_volume_m3 or runoff_depth_mm")
        if self.event_start and self.event_end and self.event_start >= self.event_end:
            raise ValueError("event_start must be before event_end")
        if (self.sample_dry_mass_g is None) != (self.sample_volume_l is None):
            raise ValueError("give sample_dry_mass_g and sample_volume_l together")
        if self.ssc_kg_m3 is None and self.sample_volume_l:
            self.ssc_kg_m3 = self.sample_dry_mass_g / self.sample_volume_l  # g/L = kg/m3
        return self


# -------------------------------------------------------------------------- requests
class _Survey(_Body):
    site_id: SiteId
    surveyed_at: When = Field(description="time of the visit, with a zone")
    surveyor: Short = Field(default="", description="who surveyed")
    latitude: Lat | None = Field(default=None, description="GNSS position")
    longitude: Lon | None = None
    notes: Text = ""
    ref: Ref | None = Field(
        default=None, description="the sheet's survey_ref; unique per site and kind"
    )

    @model_validator(mode="after")
    def _pair(self):
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


class InspectionIn(_Survey):
    kind: Literal["inspection"]
    condition: Condition = Field(description="overall condition of the structure")
    damage: list[Damage] = Field(default_factory=list, max_length=200)
    data: InspectionData = Field(default_factory=InspectionData)


class SedimentSurveyIn(_Survey):
    kind: Literal["sediment_survey"]
    data: SedimentSurveyData


class StageStorageSurveyIn(_Survey):
    kind: Literal["stage_storage_survey"]
    data: StageStorageSurveyData


class CalibrationVisitIn(_Survey):
    kind: Literal["calibration_visit"]
    data: CalibrationVisitData


class CisternCheckIn(_Survey):
    kind: Literal["cistern_check"]
    data: CisternCheckData


class PlotSampleIn(_Survey):
    kind: Literal["plot_sample"]
    data: PlotSampleData


SurveyIn = Annotated[
    InspectionIn
    | SedimentSurveyIn
    | StageStorageSurveyIn
    | CalibrationVisitIn
    | CisternCheckIn
    | PlotSampleIn,
    Field(discriminator="kind"),
]
SURVEY_IN: TypeAdapter[Any] = TypeAdapter(SurveyIn)
DATA_MODELS: dict[str, type[_Body]] = {
    "inspection": InspectionData,
    "sediment_survey": SedimentSurveyData,
    "stage_storage_survey": StageStorageSurveyData,
    "calibration_visit": CalibrationVisitData,
    "cistern_check": CisternCheckData,
    "plot_sample": PlotSampleData,
}
#: Kinds recorded as a list of rows, and the list and row model of each.
POINT_LISTS: dict[str, tuple[str, type[_Body]]] = {
    "sediment_survey": ("points", DepositPoint),
    "stage_storage_survey": ("points", StagePoint),
    "calibration_visit": ("samples", CalibrationSample),
}


# ------------------------------------------------------------------------- responses
class AttachmentOut(BaseModel):
    id: int
    survey_id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    created_by_key: int | None
    created_at: datetime


class SurveyOut(BaseModel):
    id: int
    site_id: str
    kind: Kind
    surveyed_at: datetime
    surveyor: str
    latitude: float | None
    longitude: float | None
    condition: Condition | None = Field(description="inspections")
    damage: list[dict[str, Any]] = Field(description="inspections")
    notes: str
    data: dict[str, Any]
    ref: str | None
    curve_id: int | None = Field(description="the stage-storage curve a re-survey made")
    calibration_id: int | None = Field(description="the calibration a visit fitted")
    created_by_key: int | None = Field(description="API key that wrote it")
    created_at: datetime
    attachments: list[AttachmentOut] = Field(default_factory=list)


class DepositComparison(BaseModel):
    """A sediment survey's deposit volume beside the sensors' estimate for the same period."""

    points: int
    mean_surface_m: float = Field(description="mean deposit surface, gauge datum [m]")
    curve: StageStorageCurveOut = Field(description="the curve valid at the survey date")
    surveyed_volume_m3: float = Field(description="volume below the mean surface by the curve")
    since: datetime | None = Field(description="start of the period: the curve's valid_from")
    dry_bulk_density_t_m3: float
    dry_bulk_density_basis: str
    sensor_events: int | None = None
    sensor_retained_t: float | None = Field(
        default=None, description="sediment retained by the dam from the sensors [t]"
    )
    sensor_volume_m3: float | None = Field(default=None, description="retained / bulk density")
    difference_m3: float | None = Field(default=None, description="surveyed minus sensor")
    ratio: float | None = Field(default=None, description="surveyed / sensor")
    notes: list[str] = Field(default_factory=list)


class SurveyDetail(SurveyOut):
    curve: StageStorageCurveOut | None = None
    calibration: CalibrationOut | None = None
    deposit: DepositComparison | None = Field(
        default=None, description="sediment surveys: surveyed against sensor-based deposit"
    )
    deposit_error: str | None = Field(
        default=None, description="why the deposit comparison could not be made"
    )


class ImportedSurvey(BaseModel):
    survey_id: int | None = Field(description="null in a dry run")
    kind: str
    site_id: str
    ref: str | None
    lines: list[int]


class RowError(BaseModel):
    line: int = Field(description="line of the sheet (CSV: the header is line 1)")
    ref: str | None = None
    reason: str


class ImportResult(BaseModel):
    dry_run: bool
    format: Literal["csv", "json"]
    rows: int = Field(description="data rows read")
    surveys_imported: int
    imported: list[ImportedSurvey]
    errors: list[RowError]
