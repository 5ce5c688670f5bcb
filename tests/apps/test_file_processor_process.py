"""``python -m file_processor`` as a process: settings from the environment, health, metrics, clean SIGTERM; and its
settings refusing what would break it."""

import hashlib
import os
import signal
import subprocess
import sys

import pytest
from api_support import running_clinic
from file_support import pdf_bytes, relay
from pydantic import ValidationError
from sqlalchemy.orm import Session
from support import REGION, ROOT, free_port, get, wait_for

from clinic_api.models import Exam
from file_processor.settings import FileProcessorSettings


def test_run_check_an_upload_report_it_and_stop_on_sigterm(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        staff, patient = clinic.user("staff"), clinic.user("patient")
        exam_id = clinic.client.post(
            "/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": "MRI"}
        ).json()["id"]
        body = pdf_bytes()
        put = clinic.client.put(
            f"/exams/{exam_id}/result", headers={**staff["headers"], "Content-Type": "application/pdf"}, content=body
        )
        assert put.status_code == 200, put.text
        relay(clinic.app.state.engine, clinic_aws)
        db = clinic.app.state.engine.url
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILE_PROCESSOR_")}
        env.update(
            {
                "PYTHONPATH": str(ROOT / "apps"),
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "FILE_PROCESSOR_AWS__REGION": REGION,
                "FILE_PROCESSOR_AWS__ENDPOINT_URL": clinic_aws.endpoint,
                "FILE_PROCESSOR_QUEUE_URL": clinic_aws.queue_urls["file"],
                "FILE_PROCESSOR_BUCKET": clinic_aws.bucket,
                "FILE_PROCESSOR_DATABASE__HOST": postgres.host,
                "FILE_PROCESSOR_DATABASE__PORT": str(postgres.port),
                "FILE_PROCESSOR_DATABASE__NAME": str(db.database),
                "FILE_PROCESSOR_DATABASE__USER": "postgres",
                "FILE_PROCESSOR_DATABASE__SSLMODE": "disable",
                "FILE_PROCESSOR_HTTP_HOST": "127.0.0.1",
                "FILE_PROCESSOR_HTTP_PORT": str(port),
                "FILE_PROCESSOR_WAIT_SECONDS": "2",
            }
        )
        base = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "file_processor"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "/readyz")
            assert get(f"{base}/healthz")[0] == 200

            def status() -> str:
                with Session(clinic.app.state.engine) as session:
                    return session.get_one(Exam, exam_id).status

            wait_for(lambda: status() == "verified", 30, "the exam verified")
            code, metrics = get(f"{base}/metrics")
            assert code == 200 and 'file_processor_messages_total{outcome="verified"} 1.0' in metrics
            assert "file_processor_check_seconds_bucket" in metrics
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
        output = process.stdout.read() if process.stdout else ""
        assert patient["email"] not in output, "the patient's address must not be logged"
        assert hashlib.sha256(body).hexdigest() in output and "file processor stopped" in output


BASE = {"queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/files", "bucket": "clinic-exams"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"queue_url": "files"}, "queue_url (FILE_PROCESSOR_QUEUE_URL) = 'files' is invalid; allowed: an SQS queue"),
        ({"bucket": " "}, "bucket (FILE_PROCESSOR_BUCKET) is empty"),
        ({"upload_prefix": "exams"}, "upload_prefix (FILE_PROCESSOR_UPLOAD_PREFIX) = 'exams' is invalid"),
        ({"quarantine_prefix": "exams/quarantine/"}, "quarantine_prefix = 'exams/quarantine/' is invalid with"),
        ({"check_timeout_seconds": 25}, "check_timeout_seconds"),
        ({"shutdown_timeout_seconds": 30}, "shutdown_timeout_seconds (FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS) = 30"),
    ],
)
def test_settings_refuse_what_would_break_the_worker(overrides, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FileProcessorSettings(**{**BASE, **overrides})
    assert FileProcessorSettings(**BASE).shutdown_timeout_seconds == 45
