"""apps/run_local.py: one command brings up PostgreSQL, moto, the API and the notifier, and stops them all."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
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


def test_run_local_starts_everything_and_stops_cleanly(tmp_path):
    ready = tmp_path / "ready.json"
    data_dir = tmp_path / "pgdata"
    env = {**os.environ, "RUN_LOCAL_READY_FILE": str(ready)}
    process = subprocess.Popen(
        [
            sys.executable,
            "apps/run_local.py",
            "--data-dir",
            str(data_dir),
            "--api-port",
            str(free_port()),
            "--notifier-port",
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
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "run_local did not come up in 90 s"
            time.sleep(0.3)
        urls = json.loads(ready.read_text())
        assert status(f"{urls['api']}/readyz") == 200
        assert status(f"{urls['api']}/docs") == 200
        assert status(f"{urls['notifier']}/readyz") == 200
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
