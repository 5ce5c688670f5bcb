"""apps/run_local.py: one command brings up PostgreSQL, moto, the API, the notifier and the file processor, and stops
them all; the walk-through of apps/README.md runs against it, twice in a row."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import httpx
import psutil
import pytest
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("clinic_api.main", reason="the API package is not in the tree yet")


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def walk_through() -> str:
    """The bash block of apps/README.md's "The whole flow by hand"."""
    readme = (ROOT / "apps" / "README.md").read_text()
    section = readme[readme.index("### The whole flow by hand") :]
    return section[section.index("```bash\n") + len("```bash\n") : section.index("\n```\n")]


def processes_of(pid: int) -> list[psutil.Process]:
    """`pid` and every process below it."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def assert_the_demo_patient_signs_in_to_the_portal(api: str, env_file) -> None:
    """run_local's defaults serve a working portal: plain http, so cookies without Secure (a browser would drop a
    Secure cookie from http:// and never be signed in)."""
    values = dict(re.findall(r"^export (\w+)='([^']*)'$", env_file.read_text(), re.MULTILINE))
    with httpx.Client(base_url=api, follow_redirects=True, timeout=10) as client:
        page = client.get("/portal/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        home = client.post(
            "/portal/sign-in",
            data={"email": values["PATIENT_EMAIL"], "password": values["PATIENT_PASSWORD"], "csrf_token": token[1]},
        )
        assert str(home.url).endswith("/portal/appointments"), (home.status_code, str(home.url))
        assert "Pat Demo" in home.text  # the layout names who is signed in


def test_run_local_starts_everything_runs_the_walk_through_twice_and_stops_everything(tmp_path):
    ready, env_file = tmp_path / "ready.json", tmp_path / "run_local.env"
    data_dir = tmp_path / "pgdata"
    env = {**os.environ, "RUN_LOCAL_READY_FILE": str(ready)}
    process = subprocess.Popen(
        [
            sys.executable,
            "apps/run_local.py",
            "--demo-data",
            "--env-file",
            str(env_file),
            "--data-dir",
            str(data_dir),
            "--api-port",
            str(free_port()),
            "--notifier-port",
            str(free_port()),
            "--file-processor-port",
            str(free_port()),
            "--moto-port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "run_local did not come up in 120 s"
            time.sleep(0.3)
        urls = json.loads(ready.read_text())
        # Everything it started: its children (API, notifier, their helpers) and the PostgreSQL server, which
        # pg_ctl detaches from it.
        started = processes_of(process.pid)[1:] + processes_of(
            int((data_dir / "postmaster.pid").read_text().split()[0])
        )
        assert {p.name() for p in started} >= {"postgres"} and len(started) >= 4, [p.cmdline() for p in started]
        assert env_file.stat().st_mode & 0o077 == 0, "the demo passwords are readable by the user only"
        script = tmp_path / "walk.sh"
        script.write_text(walk_through())
        for run in (1, 2):
            walked = subprocess.run(
                ["bash", str(script)],
                cwd=ROOT,
                # PYTHON: the walk-through writes its PDF with pypdf from the dev requirements.
                env={**os.environ, "CLINIC_ENV": str(env_file), "PYTHON": sys.executable},
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert walked.returncode == 0, f"walk-through run {run}:\n{walked.stdout}\n{walked.stderr}"
            assert "same bytes" in walked.stdout and walked.stdout.rstrip().endswith("walk-through complete"), run
        assert status(f"{urls['api']}/readyz") == 200
        assert status(f"{urls['api']}/docs") == 200
        assert_the_demo_patient_signs_in_to_the_portal(urls["api"], env_file)
        assert status(f"{urls['notifier']}/readyz") == 200
        assert status(f"{urls['file_processor']}/readyz") == 200
        # The emulator has what the apps need: the bucket, queues with DLQs, the verified identity.
        aws = {
            "endpoint_url": urls["moto"],
            "region_name": "eu-west-1",
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
        }
        s3 = boto3.client("s3", **aws)
        s3.head_bucket(Bucket=urls["bucket"])
        default = s3.get_bucket_encryption(Bucket=urls["bucket"])["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert default["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", "as the platform's bucket"
        sqs = boto3.client("sqs", **aws)
        policy = json.loads(
            sqs.get_queue_attributes(QueueUrl=urls["queues"]["exam-result"], AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )
        assert policy["maxReceiveCount"] == 3
        # The notifier started by it really sends.
        to = f"{uuid.uuid4().hex[:8]}@example.com"
        sqs.send_message(
            QueueUrl=urls["queues"]["account"],
            MessageBody=json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "account.created",
                    "occurred_at": "2026-11-22T19:00:00Z",
                    "payload": {"recipient_email": to, "recipient_name": "Pat"},
                }
            ),
        )
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"{urls['moto']}/moto-api/data.json", timeout=5) as r:
                if to in json.dumps(json.load(r)["ses"]["Message"]):
                    break
            assert time.monotonic() < deadline, "no email from the notifier"
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read()
    assert "/docs" in output and "stopped" in output
    assert status(f"{urls['api']}/healthz") is None, "the API is still running"
    assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL is still running"
    left = [p.cmdline() for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], "processes run_local started are still running"
    assert not env_file.exists(), "the env file of a stopped clinic is removed"
