"""--overwrite end to end: simulator -> Mosquitto -> consumer -> PostgreSQL.

A second run over the same times with ``"replace": true`` messages replaces the
stored values; without the marker the first values stay (the consumer keeps the
first value at each time); a gateway may not replace.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg

from firmware_sim.run import RunConfig, run
from tests.support.mqtt import Publisher
from tests.support.payloads import row_message
from tests.support.waiting import scalar, wait_for


def _stored(dsn: str) -> dict[tuple[str, str, datetime], float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT s.device_id, s.channel, r.time, r.value FROM readings r "
            "JOIN streams s ON s.id = r.stream_id"
        ).fetchall()
    return {(d, ch, t): v for d, ch, t, v in rows}


def _sent(output) -> dict[tuple[str, str, datetime], float]:
    out = {}
    for lg in output.loggers.values():
        for m in lg.messages:
            body = json.loads(m.payload)
            for r in body["readings"]:
                t = datetime.fromisoformat(r["t"]).astimezone(UTC)
                out[(body["device"], r["ch"], t)] = r["v"]
    return out


def test_overwrite_replaces_the_values_of_an_earlier_run(
    db, broker, settings_for, start_consumer, topic_root, small_scenario, tmp_path
):
    start_consumer(settings_for(), db)
    scen = small_scenario()
    base = dict(scenario=scen, mqtt_url=broker.url, root=topic_root, speed=0)
    first = run(RunConfig(storm="2y", out_dir=tmp_path / "one", **base))
    sent1 = _sent(first)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == len(sent1), 60, what="run 1")
    second = run(RunConfig(storm="100y", out_dir=tmp_path / "two", overwrite=True, **base))
    sent2 = _sent(second)
    assert all(b'"replace":true' in m.payload for lg in second.loggers.values()
               for m in lg.messages)  # fmt: skip
    changed = {k for k, v in sent2.items() if k in sent1 and sent1[k] != v}
    assert len(changed) > 1000  # the storms differ at many common times

    def all_replaced() -> bool:
        stored = _stored(db)
        return all(stored.get(k) == v for k, v in sent2.items())

    wait_for(all_replaced, 60, what="run 2's values")
    stored = _stored(db)
    assert len(stored) == len(set(sent1) | set(sent2))  # nothing lost, nothing doubled
    only1 = set(sent1) - set(sent2)
    assert all(stored[k] == sent1[k] for k in only1)  # run 1's other times are kept
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0


def test_without_the_marker_the_first_value_stays_and_gateways_may_not_replace(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(), db)
    t = "2026-07-21T03:15:00Z"

    def msg(seq: int, v: float, device: str = "dam-017", **extra) -> bytes:
        readings = [{"t": t, "ch": "stage_m", "v": v}]
        return json.dumps(row_message(device, seq, readings, **extra)).encode()

    own = f"{topic_root}/dam-017/telemetry"
    gateway = f"{topic_root}/gw-9/telemetry"
    with Publisher(broker.url) as pub:
        pub.publish_all([(own, msg(1, 1.0)), (gateway, msg(1, 1.0, "dam-018"))])
        wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2)
        pub.publish_all([(own, msg(2, 2.0))])  # no marker: kept first
        pub.publish_all([(gateway, msg(3, 3.0, "dam-018", replace=True))])  # its own logger
        wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1)
        assert scalar(db, "SELECT array_agg(DISTINCT value) FROM readings") == [1.0]
        assert scalar(db, "SELECT error_code FROM dead_letters") == "replace_not_allowed"
        pub.publish_all([(own, msg(4, 4.0, replace=True))])  # the device itself may
        value_017 = (
            "SELECT value FROM readings r JOIN streams s ON s.id = r.stream_id "
            "WHERE s.device_id = 'dam-017'"
        )
        wait_for(lambda: scalar(db, value_017) == 4.0)
        pub.publish_all([(own, msg(5, 5.0, replace=False))])
        wait_for(lambda: scalar(db, "SELECT last_seq FROM devices WHERE id = 'dam-017'") == 5)
    assert scalar(db, "SELECT count(*) FROM readings") == 2
    assert scalar(db, value_017) == 4.0
