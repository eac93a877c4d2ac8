"""Hostile-load benchmark: the API's latency for ordinary requests, quiet and under attack.

Starts `swc api` (real uvicorn) on a scratch database (200,000 readings of one
stream, ANALYZEd as autovacuum would do shortly after such a load), then
measures, from one ordinary client, the latency of GET /sites, /alerts and a
one-hour /readings page: alone ("quiet") and while attackers run the attacks
of issue 11 ("attack"), the two phases taken in turn (``--rounds``) so that
the load of other programs on the machine weighs on both alike. The attacks,
each in a thread of its own, back to back with a short pause, in a process of
their own (one HTTP client per thread, a new connection per request):

* 100 MB JSON bodies announced without a key (refused before they are read);
* multipart uploads with a 120,000-';' Content-Disposition (refused by the parser);
* 128 KB survey sheets with 3,000 unknown columns (read, all rows reported bad);
* heavy /readings pages by a viewer (whole record, 10,000 rows);
* CSV exports abandoned after their first chunk;
* tampered cursors and a revoked key's event stream.

Prints how each attack was answered (name:status=count), the CPU seconds of
the API process, its worker processes (sheet readers, expensive reads), this
database's PostgreSQL backends, the attack process and the whole machine in
each phase, and the ordinary requests' p50/p99 in both phases and their ratio
(target: p99_ms_attack / p99_ms_quiet <= 2) and how many failed (target 0).
Bounded: about 75 s.

    python bench/hostile.py [--seconds 15] [--rounds 2] [--readings 200000]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
import psycopg

from bench._common import REPO, percentile, result_line, scratch_database
from ingest.broker import free_port
from ingest.store.keys import create_key, revoke_key
from ingest.store.migrate import migrate
from ingest.store.registry import RegistryFile, load_registry


def prepare(dsn: str, readings: int) -> dict[str, str]:
    migrate(dsn, "off")
    spec = RegistryFile.model_validate(
        {
            "sites": [
                {
                    "id": "dam-1",
                    "kind": "check_dam",
                    "name": "dam 1",
                    "params": {"spillway_crest_m": 5.0, "dam_crest_m": 7.0},
                    "devices": [{"id": "dam-1-d", "channels": ["stage_m"]}],
                }
            ]
        }
    )
    with psycopg.connect(dsn) as conn:
        load_registry(conn, spec)
    with psycopg.connect(dsn) as conn:
        sid = conn.execute(
            "INSERT INTO streams (device_id, channel) VALUES ('dam-1-d', 'stage_m') "
            "ON CONFLICT (device_id, channel) DO UPDATE SET unit = streams.unit RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO readings (time, stream_id, value, quality, received_at) "
            "SELECT timestamptz '2026-01-01' + g * interval '1 minute', %s, g / 1000.0, 2, now() "
            "FROM generate_series(0, %s - 1) g",
            (sid, readings),
        )
        # the statistics that autovacuum gathers within a minute of such a load in a live
        # database; without them every whole-record query sorts all the readings
        conn.execute("ANALYZE readings")
        keys = {role: create_key(conn, role, f"bench {role}")[1] for role in
                ("viewer", "surveyor", "admin")}  # fmt: skip
        keys["ordinary"] = create_key(conn, "viewer", "bench ordinary client")[1]
        revoked_row, revoked = create_key(conn, "viewer", "bench revoked")
        revoke_key(conn, revoked_row.id)
        keys["revoked"] = revoked
    return keys


def ordinary(base: str, key: str, seconds: float, failures: list[str]) -> list[float]:
    """Latencies [ms] of ordinary requests, back to back, for ``seconds``."""
    paths = [
        "/sites",
        "/alerts?limit=20",
        "/readings?site_id=dam-1&start=2026-01-02T00:00:00Z&end=2026-01-02T01:00:00Z",
    ]
    out: list[float] = []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as c:
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                r = c.get(paths[k % len(paths)])
                if r.status_code != 200:
                    failures.append(f"{paths[k % len(paths)]}: {r.status_code}")
            except httpx.HTTPError as exc:
                failures.append(f"{paths[k % len(paths)]}: {exc}")
            out.append((time.perf_counter() - t) * 1000)
            k += 1
            time.sleep(0.01)
    return out


def attackers(base: str, port: int, keys: dict[str, str]) -> list:
    local = threading.local()

    def client() -> httpx.Client:
        """One client per attack thread, each request on a new connection: a new client
        per request would cost the attack process a TLS context (~15 ms of CPU) each
        time, CPU that the server never sees spent."""
        if not hasattr(local, "client"):
            local.client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        return local.client

    def big_body_without_key() -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(
                b"POST /sites HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000000\r\n\r\n"
            )
            head = s.recv(65536).split(b" ", 2)
            return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0

    boundary = "xBOUNDARYx"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"' + ";" * 120_000
        + f'; filename="a.csv"\r\n\r\nsite_id,kind,surveyed_at\r\n--{boundary}--\r\n'
    ).encode()  # fmt: skip

    def hostile_multipart() -> int:
        return (
            client()
            .post(
                f"{base}/surveys/import",
                content=multipart,
                headers={
                    "X-API-Key": keys["surveyor"],
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
                timeout=60,
            )
            .status_code
        )

    names = ",".join(["site_id", "kind", "surveyed_at", *(f"c{i}" for i in range(3000))])
    row = "dam-1,inspection,2026-07-01T00:00:00Z" + ",x" * 3000
    sheet = (names + "\n" + (row + "\n") * ((128 << 10) // len(row))).encode()

    def wide_sheet() -> int:
        return (
            client()
            .post(
                f"{base}/surveys/import",
                content=sheet,
                headers={"X-API-Key": keys["surveyor"], "Content-Type": "text/csv"},
                timeout=120,
            )
            .status_code
        )

    def heavy_readings() -> int:
        return (
            client()
            .get(
                f"{base}/readings?site_id=dam-1&start=2000-01-01T00:00:00Z"
                "&end=2200-01-01T00:00:00Z&limit=10000",
                headers={"X-API-Key": keys["viewer"]},
                timeout=120,
            )
            .status_code
        )

    def abandoned_export() -> int:
        with client().stream(
            "GET",
            f"{base}/exports/readings.csv?site_id=dam-1",
            headers={"X-API-Key": keys["viewer"]},
            timeout=60,
        ) as r:
            if r.status_code == 200:
                next(r.iter_raw(), None)
            return r.status_code

    cursor = base64.urlsafe_b64encode(b"1:253402300799000000:000000000000").decode()

    def tampered() -> str:
        first = (
            client()
            .get(
                f"{base}/readings?site_id=dam-1&start=2000-01-01T00:00:00Z"
                f"&end=2200-01-01T00:00:00Z&cursor={cursor}",
                headers={"X-API-Key": keys["viewer"]},
                timeout=30,
            )
            .status_code
        )
        second = (
            client()
            .get(
                f"{base}/alerts/stream?max_seconds=1",
                headers={"X-API-Key": keys["revoked"]},
                timeout=30,
            )
            .status_code
        )
        return f"{first}+{second}"

    return [
        big_body_without_key,
        hostile_multipart,
        wide_sheet,
        wide_sheet,
        heavy_readings,
        heavy_readings,
        abandoned_export,
        tampered,
    ]


def run_attacks(funcs, stop, counts: dict[str, int], pause: float) -> list[threading.Thread]:
    """Each attack in a loop of its own; ``counts``: how many ended with each status
    (``name:status``; 0: the connection was dropped)."""

    def loop(f) -> None:
        while not stop.is_set():
            status = 0
            with contextlib.suppress(httpx.HTTPError, OSError):
                status = f()
            label = f"{f.__name__}:{status}"
            counts[label] = counts.get(label, 0) + 1
            stop.wait(pause)

    threads = [threading.Thread(target=loop, args=(f,), daemon=True) for f in funcs]
    for t in threads:
        t.start()
    return threads


def attack_process(base: str, port: int, keys: dict[str, str], pause: float, only, stop, out):
    """The attackers, in a process of their own: the measuring client shares no GIL
    with them."""
    counts: dict[str, int] = {}
    funcs = [f for f in attackers(base, port, keys) if not only or f.__name__ in only]
    threads = run_attacks(funcs, stop, counts, pause)
    stop.wait()
    for t in threads:
        t.join(60)
    out.put(counts)


class CpuSampler:
    """CPU seconds of the API process, of this database's PostgreSQL backends (found by
    their process title) and of the attack process, sampled every 0.25 s (a backend
    that ends keeps its last sample), and of the whole machine. Sampled in a process
    of its own, so that the measuring client's timings do not include the sampling."""

    def __init__(self, server_pid: int, dbname: str):
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=self._run, args=(child, server_pid, dbname), daemon=True)
        self._proc.start()

    @staticmethod
    def _run(conn, server_pid: int, dbname: str) -> None:
        pids = {server_pid: "server"}
        seen: dict[int, tuple[str, float]] = {}

        def sample() -> None:
            for p in psutil.process_iter(["pid", "ppid", "cmdline", "cpu_times"]):
                pid, cmd, cpu = p.info["pid"], p.info["cmdline"] or [], p.info["cpu_times"]
                if cpu is None:
                    continue
                group = pids.get(pid)
                if group is None and p.info["ppid"] == server_pid:
                    group = "workers"  # the API's worker processes (sheets, expensive reads)
                if group is None and cmd and cmd[0].startswith("postgres:"):
                    group = "postgres" if f" {dbname} " in cmd[0] else None
                if group is not None:
                    seen[pid] = (group, cpu.user + cpu.system)

        while True:
            if conn.poll(0.25):
                cmd, arg = conn.recv()
                if cmd == "stop":
                    return
                if cmd == "attackers":
                    pids[arg] = "attackers"
                    continue
                sample()
                busy = psutil.cpu_times()
                conn.send({"procs": dict(seen), "machine": sum(busy) - busy.idle - busy.iowait})
            else:
                with contextlib.suppress(psutil.Error):
                    sample()

    def attackers(self, pid: int) -> None:
        self._conn.send(("attackers", pid))

    def mark(self) -> dict:
        self._conn.send(("mark", None))
        return self._conn.recv()

    @staticmethod
    def spent(a: dict, b: dict) -> dict[str, float]:
        out = {"machine": b["machine"] - a["machine"]}
        for pid, (group, cpu) in b["procs"].items():
            before = a["procs"].get(pid, (group, 0.0))[1]
            out[group] = out.get(group, 0.0) + cpu - before
        return out

    def stop(self) -> None:
        self._conn.send(("stop", None))
        self._proc.join(5)


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, spent: dict[str, float]) -> None:
        for k, v in spent.items():
            self.cpu[k] = self.cpu.get(k, 0.0) + v

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each phase [s]")
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--pause", type=float, default=0.05, help="each attacker's pause [s]")
    ap.add_argument("--only", nargs="*", help="run only these attacks (names as printed)")
    ap.add_argument(
        "--rounds", type=int, default=2, help="quiet and attack phases taken in turn, this often"
    )
    args = ap.parse_args()
    phases = {kind: Phase() for kind in ("quiet", "attack")}
    with scratch_database() as dsn:
        keys = prepare(dsn, args.readings)
        port = free_port()
        env = {
            **os.environ,
            "SWC_DATABASE_URL": dsn,
            "SWC_LOG_LEVEL": "ERROR",
            "SWC_API_METRICS_PORT": "0",
        }
        env.pop("SWC_MQTT_URL", None)
        log = tempfile.TemporaryFile()  # noqa: SIM115 (read on failure)
        server = subprocess.Popen(
            [sys.executable, "-m", "swc_cli", "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        log.seek(0)
                        tail = log.read().decode(errors="replace")[-2000:]
                        raise SystemExit(f"swc api did not start:\n{tail}") from None
                    time.sleep(0.2)
            httpx.post(  # warm-up: the sheet readers start on first use
                f"{base}/surveys/import?dry_run=true",
                content=b"site_id,kind,surveyed_at\n",
                headers={"X-API-Key": keys["surveyor"], "Content-Type": "text/csv"},
                timeout=60,
            )
            httpx.get(  # ... and so do the workers of expensive reads
                f"{base}/readings?site_id=dam-1&start=2026-01-01T00:00:00Z"
                "&end=2026-01-02T00:00:00Z&limit=2000",
                headers={"X-API-Key": keys["viewer"]},
                timeout=60,
            )
            ordinary(base, keys["ordinary"], 2.0, [])
            sampler = CpuSampler(server.pid, psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
            ctx = multiprocessing.get_context("fork")
            kinds = ["quiet", "attack"]
            for _ in range(args.rounds):
                for kind in kinds:
                    ph = phases[kind]
                    proc = stop = out = None
                    if kind != "quiet":
                        stop, out = ctx.Event(), ctx.Queue()
                        proc = ctx.Process(
                            target=attack_process,
                            args=(base, port, keys, args.pause, args.only, stop, out),
                        )
                        proc.start()
                        sampler.attackers(proc.pid)
                        time.sleep(1.0)  # the attacks under way
                    before = sampler.mark()
                    ph.latencies += ordinary(base, keys["ordinary"], args.seconds, ph.failures)
                    ph.add_cpu(CpuSampler.spent(before, sampler.mark()))
                    if proc is not None:
                        stop.set()
                        for k, v in out.get(timeout=120).items():
                            ph.counts[k] = ph.counts.get(k, 0) + v
                        proc.join(30)
            sampler.stop()
        finally:
            server.terminate()
            server.wait(10)
    quiet, attack = phases["quiet"], phases["attack"]
    seconds = args.seconds * args.rounds
    for kind in kinds:
        ph = phases[kind]
        if ph.failures:
            print(f"ordinary requests that failed ({kind}):", ph.failures[:10])
        if ph.counts:
            print(
                f"attacks run ({kind}; name:status=count):",
                ", ".join(f"{k}={v}" for k, v in sorted(ph.counts.items())),
            )
        print(
            f"CPU seconds, {kind} ({seconds:.0f} s, {os.cpu_count()} cores): "
            + ", ".join(f"{k}={v:.1f}" for k, v in sorted(ph.cpu.items()))
            + " (machine: every process, this bench's and others')"
        )
    figures = {
        "requests_quiet": len(quiet.latencies),
        "requests_attack": len(attack.latencies),
        "p50_ms_quiet": percentile(quiet.latencies, 50),
        "p99_ms_quiet": quiet.p99,
        "p50_ms_attack": percentile(attack.latencies, 50),
        "p99_ms_attack": attack.p99,
        "ratio": attack.p99 / quiet.p99,
        "attacks": sum(attack.counts.values()),
        "failed_quiet": len(quiet.failures),
        "failed_attack": len(attack.failures),
    }
    print(result_line(**figures))


if __name__ == "__main__":
    main()
