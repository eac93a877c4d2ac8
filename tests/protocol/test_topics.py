import pytest

from protocol import Topic, TopicError, TopicKind, alerts_topic, shared_telemetry_filter, unit_of
from protocol.channels import CHANNELS, is_valid_channel_name


def test_parse_and_format_round_trip():
    t = Topic.parse("swc/v1/dam-017/telemetry")
    assert (t.root, t.client_id, t.kind) == ("swc/v1", "dam-017", TopicKind.TELEMETRY)
    assert str(t) == "swc/v1/dam-017/telemetry"
    assert str(Topic.status("gw-1", root="test/x")) == "test/x/gw-1/status"


@pytest.mark.parametrize(
    "topic",
    [
        "swc/v2/dam/telemetry",
        "swc/v1/dam",
        "swc/v1/dam/telemetry/extra",
        "swc/v1/dam/readings",
        "swc/v1//telemetry",
        "swc/v1/dam+/telemetry",
        "swc/v1/alerts/telemetry",
        "swc/v1/-dam/telemetry",
    ],
)
def test_invalid_topics_are_refused(topic):
    with pytest.raises(TopicError):
        Topic.parse(topic)


def test_topic_objects_are_validated_on_construction():
    with pytest.raises(TopicError, match="client id"):
        Topic("a/b", TopicKind.TELEMETRY)
    with pytest.raises(TopicError, match="root"):
        Topic("dam", TopicKind.TELEMETRY, root="swc/#")


def test_filters_and_alerts():
    assert shared_telemetry_filter("t1/v1") == "$share/ingest/t1/v1/+/telemetry"
    assert alerts_topic("dam-017") == "swc/v1/alerts/dam-017"


def test_channel_units():
    assert unit_of("stage_m") == "m"
    assert unit_of("turbidity_ntu") == "[NTU]"
    assert unit_of("rssi_dbm") == unit_of("uplink_dbm") == "dB[mW]"
    assert unit_of("air_temperature_c") == "Cel"
    assert unit_of("soil_moisture_pct") == "%"
    assert unit_of("inflow_m3_s") == "m3/s"
    assert unit_of("mystery") is None
    assert all(is_valid_channel_name(c) for c in CHANNELS)


def test_ucum_units_map_to_udunits_in_one_place():
    from protocol.channels import udunits_of

    assert udunits_of("[NTU]") == udunits_of("NTU") == "1"
    assert udunits_of("dB[mW]") == udunits_of("dBm") == "dBm"
    assert [udunits_of(u) for u in ("Cel", "kg/m3", "m3/s", "%", "mm", "V")] == [
        "degC",
        "kg m-3",
        "m3 s-1",
        "percent",
        "mm",
        "V",
    ]
    # every registry unit is one UDUNITS parses (cf_units wraps the UDUNITS-2 library)
    cf_units = __import__("pytest").importorskip("cf_units")
    for channel in CHANNELS.values():
        cf_units.Unit(udunits_of(channel.unit))
