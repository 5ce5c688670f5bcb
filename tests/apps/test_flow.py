"""The whole flow on real PostgreSQL and a moto server: patient registers -> follows the emailed link to choose a
password -> staff creates an exam -> uploads the PDF -> the file processor verifies it -> staff marks it ready -> the
outbox relay puts the event on SQS -> the notifier emails the patient (seen in moto) -> the patient downloads the very
same bytes through the presigned URL."""

import re
import threading
import urllib.request
import uuid

import boto3
from api_support import CONSENT, PASSWORD, at_once, future, running_clinic, served_clinic
from file_support import make_processor, pdf_bytes
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from support import NOTIFIER_DOMAINS, REGION, sent_emails, wait_for

from clinic_api.models import OutboxEvent

PDF = pdf_bytes(pages=2)


def test_exam_result_flow_end_to_end(postgres, clinic_aws, notifier):
    with running_clinic(postgres, clinic_aws, outbox={"relay_enabled": True, "interval_seconds": 0.2}) as clinic:
        client = clinic.client  # the outbox relay thread is live
        processor = make_processor(clinic.app.state.engine, clinic_aws, wait_seconds=1)
        stop = threading.Event()
        processor.start(stop)
        email = f"pat-{uuid.uuid4().hex[:6]}@example.org"
        registered = client.post("/auth/register", json={"email": email, "full_name": "Pat <Flow>", "language": "en"})
        assert registered.status_code == 202, registered.text
        wait_for(lambda: sent_emails(clinic_aws.endpoint, email), 30, "the verification email")
        [confirm] = sent_emails(clinic_aws.endpoint, email)
        assert confirm["subject"] == "Confirm your email address for Clinic"
        token = re.search(r"/portal/verify-email#token=([\w.-]+)", confirm["body"]).group(1)
        verified = client.post("/auth/verify", json={"token": token, "password": PASSWORD, "consent": CONSENT})
        assert verified.status_code == 200, verified.text
        patient = clinic.login(email)
        staff = clinic.user("staff")["headers"]

        exam = client.post(
            "/exams", json={"patient_id": verified.json()["id"], "exam_type": "Lipid panel"}, headers=staff
        )
        assert exam.status_code == 201, exam.text
        exam_id = exam.json()["id"]
        upload = client.put(
            f"/exams/{exam_id}/result", content=PDF, headers={**staff, "Content-Type": "application/pdf"}
        )
        assert upload.status_code == 200, upload.text
        wait_for(lambda: client.get(f"/exams/{exam_id}", headers=staff).json()["status"] == "verified", 30, "verified")
        stop.set()
        assert processor.join(15)
        assert client.post(f"/exams/{exam_id}/ready", headers=staff).json()["status"] == "ready"

        def subjects():
            return sorted(m["subject"] for m in sent_emails(clinic_aws.endpoint, email))

        wait_for(lambda: "Your Lipid panel result is ready" in subjects(), 30, "the result-ready email")
        wait_for(lambda: len(subjects()) == 6, 10, "every email of the flow")
        assert subjects() == sorted(
            [
                "Confirm your email address for Clinic",
                "Welcome to Clinic",
                "Your patient record at Clinic is ready",
                "Your Lipid panel exam has been scheduled",
                "Your Lipid panel exam is complete",
                "Your Lipid panel result is ready",
            ]
        )
        ready_mail = next(m for m in sent_emails(clinic_aws.endpoint, email) if "ready" in m["subject"])
        assert ready_mail["source"] == clinic_aws.from_address
        assert "Pat &lt;Flow&gt;" in ready_mail["body"] and "<Flow>" not in ready_mail["body"]

        link = client.get(f"/exams/{exam_id}/download", headers=patient)
        assert link.status_code == 200, link.text
        with urllib.request.urlopen(link.json()["url"], timeout=10) as response:
            assert response.read() == PDF

    # Each event was sent once: nothing left on the queues, nothing in the DLQs.
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=clinic_aws.endpoint)
    for domain in (*NOTIFIER_DOMAINS, "file"):
        for url in (clinic_aws.queue_urls[domain], clinic_aws.dlq_urls[domain]):
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, url
    assert notifier.metrics.duplicates._value.get() == 0


def test_ten_concurrent_cancels_and_ten_ready_marks_over_http_send_one_email_each(postgres, clinic_aws, notifier):
    """The issue's "10 concurrent requests -> one email", through the whole path: HTTP on a real uvicorn, the locked
    row and its one outbox event in PostgreSQL, the relay, SQS, the notifier, moto's SES."""
    relay = {"relay_enabled": True, "interval_seconds": 0.2}
    with served_clinic(postgres, clinic_aws, outbox=relay) as clinic:
        doctor, patient, staff = clinic.user("doctor"), clinic.user("patient"), clinic.user("staff")
        booked = clinic.client.post(
            "/appointments", headers=patient["headers"], json={"doctor_id": doctor["id"], "starts_at": future(2)}
        )
        assert booked.status_code == 201, booked.text
        exam_id = clinic.client.post(
            "/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": "MRI"}
        ).json()["id"]
        key = f"exams/{exam_id}/result.pdf"
        clinic_aws.client("s3").put_object(Bucket=clinic_aws.bucket, Key=key, Body=PDF)
        with clinic.app.state.engine.begin() as db:  # uploaded and checked by the file processor (test_flow above)
            db.execute(
                text(
                    "UPDATE exams SET status = 'verified', result_key = :key, result_checked_at = now() WHERE id = :id"
                ),
                {"key": key, "id": exam_id},
            )
        cancel, ready = f"/appointments/{booked.json()['id']}/cancel", f"/exams/{exam_id}/ready"
        cancels = at_once(lambda: clinic.client.post(cancel, headers=patient["headers"]) for _ in range(10))
        readies = at_once(lambda: clinic.client.post(ready, headers=staff["headers"]) for _ in range(10))
        assert {(r.status_code, r.json()["status"]) for r in cancels} == {(200, "cancelled")}
        assert {(r.status_code, r.json()["status"]) for r in readies} == {(200, "ready")}

        # Booked, cancelled; exam ordered, completed, result ready: five events, five emails.
        wait_for(lambda: len(sent_emails(clinic_aws.endpoint, patient["email"])) >= 5, 30, "the patient's emails")
        with Session(clinic.app.state.engine) as session:  # nothing more is on its way: every event is out ...
            wait_for(
                lambda: session.scalar(select(func.count()).where(OutboxEvent.sent_at.is_(None))) == 0, 10, "relayed"
            )
    sqs = clinic_aws.client("sqs")

    def drained(url: str) -> bool:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        return set(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].values()) == {"0"}

    for domain in NOTIFIER_DOMAINS:  # ... and handled: the notifier deletes a message once its email is sent
        wait_for(lambda d=domain: drained(clinic_aws.queue_urls[d]), 10, f"the {domain} queue drained")
    subjects = sorted(m["subject"] for m in sent_emails(clinic_aws.endpoint, patient["email"]))
    assert len(subjects) == 5 and len(set(subjects)) == 5, subjects
    cancelled = [s for s in subjects if "cancelada" in s.lower()]
    result_ready = [s for s in subjects if "resultado" in s.lower() and "pronto" in s.lower()]
    assert len(cancelled) == 1 and len(result_ready) == 1, subjects
