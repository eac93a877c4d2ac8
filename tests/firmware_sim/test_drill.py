"""The simulator as a drill source: --start, run ids, refusal of a run over an earlier
one, and pacing that never publishes ahead of the wall clock (real Mosquitto)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.cli import Progress, final_table, parse_start, resolve_speed
from firmware_sim.previous import PreviousRun, RunRefused, check_overlap, retained_runs
from firmware_sim.run import RunConfig, run
from firmware_sim.scenario import load_scenario
from protocol.messages import decode_telemetry
from swc_cli import main as swc

JULY = datetime(2026, 7, 20, tzinfo=UTC)


def test_start_now_is_the_next_full_minute_and_times_need_a_zone():
    now = datetime(2026, 11, 29, 7, 40, 12, 5, tzinfo=UTC)
    assert parse_start("now", now) == datetime(2026, 11, 29, 7, 41, tzinfo=UTC)
    exact = datetime(2026, 11, 29, 7, 40, tzinfo=UTC)
    assert parse_start("now", exact) == exact
    assert parse_start("2026-11-29T15:40:00+08:00") == exact
    with pytest.raises(Exception, match="no zone"):
        parse_start("2026-11-29T07:40:00")
    with pytest.raises(Exception, match="expected 'now'"):
        parse_start("yesterday")


def test_default_speed_is_real_time_for_a_run_reaching_past_the_present():
    now = datetime(2026, 11, 29, 7, 40, tzinfo=UTC)
    assert resolve_speed(None, now + timedelta(hours=48), now) == 1.0  # --start now
    assert resolve_speed(None, now - timedelta(minutes=1), now) == 0.0  # all in the past
    assert resolve_speed(600.0, now + timedelta(hours=48), now) == 600.0
    assert resolve_speed(0.0, now + timedelta(hours=48), now) == 0.0


def test_start_moves_the_run_and_the_storm_keeps_its_place(small_scenario, tmp_path):
    scen = small_scenario()
    own = run(RunConfig(scenario=scen, storm="2y", out_dir=tmp_path / "own"))
    start = datetime(2026, 11, 29, 7, 41, tzinfo=UTC)
    moved = run(RunConfig(scenario=scen, storm="2y", out_dir=tmp_path / "moved", start=start))
    assert own.scenario.start == JULY and moved.scenario.start == start
    assert (own.rain.rain_mm == moved.rain.rain_mm).all()  # same storm, same offset
    rec_own = json.loads((tmp_path / "own" / "run.json").read_text())
    rec = json.loads((tmp_path / "moved" / "run.json").read_text())
    assert rec["data_start"] == "2026-11-29T07:41:00Z"
    assert rec["data_end"] == "2026-12-01T07:41:00Z"  # the 48-h design run
    assert str(uuid.UUID(rec["run_id"])) == rec["run_id"] == moved.run_id  # without --mqtt too
    assert rec_own["run_id"] != rec["run_id"]
    assert rec["broker"] is None


def test_overlap_is_judged_on_closed_spans():
    p = PreviousRun("r1", JULY, JULY + timedelta(hours=48))
    check_overlap({"dam-c01": p}, JULY + timedelta(hours=48, minutes=1), JULY + timedelta(days=5))
    with pytest.raises(RunRefused, match=r"dam-c01.*--start now"):  # July is past
        check_overlap({"dam-c01": p}, JULY + timedelta(hours=48), JULY + timedelta(days=5))
    future = datetime(2099, 7, 20, tzinfo=UTC)  # an earlier run reaching past the present
    f = PreviousRun("r2", future, future + timedelta(hours=48))
    with pytest.raises(RunRefused, match=r"r2.*--start 2099-07-22T00:01:00Z"):
        check_overlap({"rg-05": f}, future, future + timedelta(hours=1))


def _cli(*args: str):
    return CliRunner().invoke(swc, ["sim", "run", *args], catch_exceptions=False)


def _clear_statuses(url_port: int, root: str, devices: list[str]) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", url_port)
    c.loop_start()
    infos = [c.publish(f"{root}/{d}/status", b"", qos=1, retain=True) for d in devices]
    for info in infos:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_second_run_over_the_same_times_is_refused_unless_moved_or_overwritten(
    broker, topic_root, small_scenario, tmp_path
):
    scen = small_scenario()
    devices = [s.id for s in load_scenario(scen).sites()]
    common = [str(scen), "--storm", "2y", "--mqtt", broker.url, "--root", topic_root, "-q"]
    first = _cli(*common, "--start", "2026-07-20T00:00:00Z", "--speed", "0",
                 "--out", str(tmp_path / "one"))  # fmt: skip
    assert first.exit_code == 0, first.output
    rec = json.loads((tmp_path / "one" / "run.json").read_text())
    assert f"run id: {rec['run_id']}" in first.output
    assert rec["broker"] == f"mqtt://127.0.0.1:{broker.port}/{topic_root}"

    # the retained status of every logger names the run and its span of sample times
    seen = retained_runs(broker.url, topic_root, devices)
    assert set(seen) == set(devices)
    for prev in seen.values():
        assert prev.run_id == rec["run_id"]
        assert JULY <= prev.data_start < prev.data_end <= JULY + timedelta(hours=48)

    # same times, another output directory: refused by the retained statuses
    again = _cli(*common, "--start", "2026-07-20T00:00:00Z", "--speed", "0",
                 "--out", str(tmp_path / "two"))  # fmt: skip
    assert again.exit_code == 2
    assert "refused" in again.output and "--start" in again.output and "--overwrite" in again.output
    assert all(d in again.output for d in devices)
    assert not (tmp_path / "two" / "run.json").exists()  # nothing was run

    # overlapping by one hour is still refused; moved past the first run it is accepted
    assert _cli(*common, "--start", "2026-07-21T23:00:00Z", "--speed", "0",
                "--out", str(tmp_path / "two")).exit_code == 2  # fmt: skip
    moved = _cli(*common, "--start", "2026-07-22T00:01:00Z", "--speed", "0",
                 "--out", str(tmp_path / "three"))  # fmt: skip
    assert moved.exit_code == 0, moved.output

    # --overwrite publishes over the first run's times
    over = _cli(*common, "--start", "2026-07-20T00:00:00Z", "--speed", "0", "--overwrite",
                "--out", str(tmp_path / "four"))  # fmt: skip
    assert over.exit_code == 0, over.output
    rec4 = json.loads((tmp_path / "four" / "run.json").read_text())
    assert rec4["overwrite"] is True
    assert {p.run_id for p in retained_runs(broker.url, topic_root, devices).values()} == {
        rec4["run_id"]
    }

    # second line of defence: the output directory's run.json, even without statuses
    _clear_statuses(broker.port, topic_root, devices)
    assert retained_runs(broker.url, topic_root, devices) == {}
    by_dir = _cli(*common, "--start", "2026-07-20T12:00:00Z", "--speed", "0",
                  "--out", str(tmp_path / "four"))  # fmt: skip
    assert by_dir.exit_code == 2
    assert "run.json" in by_dir.output and rec4["run_id"] in by_dir.output


def test_compression_ahead_of_the_clock_warns_about_future_times(small_scenario, tmp_path):
    out = _cli(str(small_scenario()), "--storm", "2y", "--mqtt", "mqtt://127.0.0.1:1",
               "--speed", "600", "--out", str(tmp_path), "-q")  # fmt: skip
    assert "SWC_FUTURE_TOLERANCE_S" in out.output  # then it fails to reach the broker
    assert out.exit_code != 0


class _Arrivals:
    """Wall-clock arrival time of every telemetry message under a root."""

    def __init__(self, port: int, root: str):
        self.got: list[tuple[float, datetime]] = []  # (arrival epoch, sent_at)
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{root}/+/telemetry", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()

        def on_message(c, userdata, msg):
            arrived = time.time()
            tel = decode_telemetry(msg.payload)
            with self.lock:
                self.got.append((arrived, tel.sent_at))

        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_real_time_never_publishes_a_message_before_its_send_time(
    broker, topic_root, small_scenario, tmp_path
):
    """A run started 3 h ago at speed 1: the backlog goes at once, the rest waits for
    the wall clock (the storm is on, so every logger sends each minute)."""
    t_begin = datetime.now(UTC)
    start = t_begin - timedelta(hours=3) + timedelta(seconds=15)
    arrivals = _Arrivals(broker.port, topic_root)
    stop = threading.Event()
    done: dict = {}
    cfg = RunConfig(scenario=small_scenario(), storm="2y", out_dir=tmp_path, start=start,
                    mqtt_url=broker.url, root=topic_root, speed=1.0)  # fmt: skip
    th = threading.Thread(target=lambda: done.update(out=run(cfg, stop=stop)))
    th.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with arrivals.lock:
                live = [a for a in arrivals.got if a[1] > t_begin]
            if len(live) >= 3:
                break
            time.sleep(0.1)
        stop.set()
        th.join(60)
        assert not th.is_alive()
    finally:
        stop.set()
        arrivals.close()
    with arrivals.lock:
        got = list(arrivals.got)
    backlog = [a for a in got if a[1] <= t_begin]
    live = [a for a in got if a[1] > t_begin]
    assert len(backlog) > 100 and len(live) >= 3
    early = [(a, s) for a, s in got if a < s.timestamp()]
    assert early == []  # no message arrived before the time it says it was sent
    assert done["out"].publish["messages"] > len(got)  # stopped early: not all were sent
    # the offline status says how far the data of the stopped run reaches
    seen = retained_runs(broker.url, topic_root, [s.id for s in done["out"].scenario.sites()])
    reached = max(p.data_end for p in seen.values())
    assert reached < start + timedelta(hours=4)
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["data_end"] == reached.isoformat().replace("+00:00", "Z")  # not the planned 48 h


def test_progress_is_simulated_time_and_per_cent_and_ends_with_a_table(capsys):
    from types import SimpleNamespace

    import numpy as np

    progress = Progress(JULY)
    for done in range(0, 48 * 3600 + 1, 600):  # every 10 simulated minutes of 48 h
        progress("publish", float(done), 48 * 3600.0)
    lines = capsys.readouterr().err.splitlines()
    # not a terminal: a line per tenth of the run, in simulated time, with the share done
    assert len(lines) == 11
    assert lines[0] == "publish: simulated 2026-07-20 00:00 UTC, +00:00 of 48:00 (  0 %)"
    assert lines[5].endswith("+24:00 of 48:00 ( 50 %)")
    assert lines[-1] == "publish: simulated 2026-07-22 00:00 UTC, +48:00 of 48:00 (100 %)"

    out = SimpleNamespace(
        summary={"run": {"simulated_s": 7200.0, "dams_overtopped": ["dam-b05"],
                         "cisterns_overflowed": [], "water_balance_rel_error": 1e-15,
                         "sediment_balance_rel_error": 0.0}},
        timings_s={"rain_s": 0.4, "physics_s": 1.5, "total_s": 2.0},
        scenario=SimpleNamespace(start=JULY),
        result=SimpleNamespace(t_s=np.array([0.0, 7200.0])),
        rain=SimpleNamespace(description="Chicago design storm T=50 y"),
        publish={"messages": 12, "published": 12, "acked": 11, "replayed": 0,
                 "unacked_at_end": 1, "data_end": "2026-07-20T02:00:00Z"},
    )  # fmt: skip
    table = final_table(out, Path("sim-out"))
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in table.splitlines())
    assert rows["dams overtopped"] == "dam-b05" and rows["cisterns overflowed"] == "none"
    assert rows["simulated"] == "2026-07-20 00:00 .. 2026-07-20 02:00 UTC (02:00 h)"
    assert rows["messages"].startswith("12 of 12 published, 11 acknowledged, 1 unacknowledged")
    assert rows["wall time"] == "2.0 s (rain 0.4, physics 1.5)"
    assert "{" not in table  # no Python dict repr


def test_out_dir_check_ignores_other_brokers(tmp_path: Path):
    from firmware_sim.previous import check_out_dir

    (tmp_path / "run.json").write_text(json.dumps({
        "run_id": "r1", "scenario": "S", "broker": "mqtt://a:1883/swc/v1",
        "data_start": "2026-07-20T00:00:00Z", "data_end": "2026-07-22T00:00:00Z",
    }))  # fmt: skip
    check_out_dir(tmp_path / "run.json", "S", "mqtt://b:1883/swc/v1", JULY, JULY)
    check_out_dir(tmp_path / "run.json", "other", "mqtt://a:1883/swc/v1", JULY, JULY)
    with pytest.raises(RunRefused, match="r1"):
        check_out_dir(tmp_path / "run.json", "S", "mqtt://a:1883/swc/v1", JULY, JULY)


def test_a_scenario_object_can_be_run_and_is_written_out(small_scenario, tmp_path):
    sc = load_scenario(small_scenario())
    out = run(RunConfig(scenario=sc, storm="2y", out_dir=tmp_path))
    assert out.scenario == sc
    assert load_scenario(tmp_path / "scenario.yaml") == sc
    assert json.loads((tmp_path / "run.json").read_text())["scenario"] == sc.name
