"""Exam results: upload, readiness, presigned download, authorization and audit."""

from __future__ import annotations

import httpx
import pytest
from api_support import future, running_clinic, status_and_detail
from file_support import check_uploads, pdf_bytes
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.exams.service import (
    NO_PATIENT,
    NOT_FOUND,
    NOT_PDF,
    NOT_READY,
    NOT_THEIR_EXAM,
    NOT_UPLOADED,
    NOT_VERIFIED,
    ORDERED_AS_SELF,
)
from clinic_api.models import AuditLog
from clinic_api.security import FORBIDDEN

PDF = pdf_bytes(pages=3)


@pytest.fixture
def clinic(postgres, clinic_aws):
    storage = {"bucket": clinic_aws.bucket, "max_upload_bytes": 64 * 1024}
    with running_clinic(postgres, clinic_aws, storage=storage) as clinic:
        yield clinic


def new_exam(clinic, staff, patient, doctor=None):
    response = clinic.client.post(
        "/exams",
        headers=staff["headers"],
        json={"patient_id": patient["id"], "exam_type": "Blood count", "doctor_id": doctor and doctor["id"]},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(clinic, staff, exam_id, body=PDF, content_type="application/pdf"):
    return clinic.client.put(
        f"/exams/{exam_id}/result", headers={**staff["headers"], "Content-Type": content_type}, content=body
    )


def audits(clinic, exam_id, *columns: str):
    """The exam's download audit rows (uploads are audited too: test_api_exam_changes.py)."""
    with Session(clinic.app.state.engine) as session:
        return [
            tuple(getattr(a, c) for c in ("user_id", "outcome", *columns))
            for a in session.scalars(
                select(AuditLog)
                .where(AuditLog.exam_id == exam_id, AuditLog.action == "result.download")
                .order_by(AuditLog.id)
            )
        ]


def test_the_patient_downloads_the_very_same_bytes_through_a_short_lived_link(clinic, clinic_aws):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, patient)
    assert upload(clinic, staff, exam_id).json()["status"] == "uploaded"
    assert check_uploads(clinic.app.state.engine, clinic_aws) == ["verified"]
    assert clinic.client.post(f"/exams/{exam_id}/ready", headers=staff["headers"]).json()["status"] == "ready"
    assert [e["status"] for e in clinic.client.get("/exams", headers=patient["headers"]).json()] == ["ready"]
    link = clinic.client.get(
        f"/exams/{exam_id}/download", headers={**patient["headers"], "X-Request-ID": "download-1"}
    ).json()
    assert link["expires_in"] == 300 and "X-Amz-Expires=300" in link["url"]
    assert httpx.get(link["url"]).content == PDF
    assert audits(clinic, exam_id, "request_id") == [(patient["id"], "granted", "download-1")], (
        "the audit row names the request, to find it in the logs"
    )


def test_a_patient_cannot_read_another_patients_exam_nor_its_pdf(clinic, clinic_aws):
    staff, ana, bia = clinic.user("staff"), clinic.user("patient"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, ana)
    upload(clinic, staff, exam_id)
    check_uploads(clinic.app.state.engine, clinic_aws)
    clinic.client.post(f"/exams/{exam_id}/ready", headers=staff["headers"])
    read = clinic.client.get(f"/exams/{exam_id}", headers=bia["headers"])
    assert status_and_detail(read) == (404, NOT_FOUND)
    denied = clinic.client.get(f"/exams/{exam_id}/download", headers=bia["headers"])
    assert status_and_detail(denied) == (404, NOT_FOUND)
    assert clinic.client.get("/exams", headers=bia["headers"]).json() == []
    assert audits(clinic, exam_id) == [(bia["id"], "denied")], "denied attempts are audited too"
    # The very same requests from the exam's own patient succeed: Bia is refused for being someone else.
    assert clinic.client.get(f"/exams/{exam_id}", headers=ana["headers"]).status_code == 200
    assert clinic.client.get(f"/exams/{exam_id}/download", headers=ana["headers"]).status_code == 200


def test_a_doctor_sees_only_their_patients_exams(clinic):
    staff, doctor, other_doctor = clinic.user("staff"), clinic.user("doctor"), clinic.user("doctor")
    mine, theirs = clinic.user("patient"), clinic.user("patient")
    requested_by_me = new_exam(clinic, staff, mine, doctor)
    booked = clinic.client.post(
        "/appointments",
        headers=theirs["headers"],
        json={"doctor_id": other_doctor["id"], "starts_at": future(5)},
    )
    assert booked.status_code == 201, booked.text
    new_exam(clinic, staff, theirs)
    assert [e["id"] for e in clinic.client.get("/exams", headers=doctor["headers"]).json()] == [requested_by_me]
    assert clinic.client.get("/exams", headers=other_doctor["headers"]).json()[0]["patient_id"] == theirs["id"]


def test_patients_neither_order_exams_nor_upload_results(clinic):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, patient)  # the same exam and body that staff may create and upload
    created = clinic.client.post(
        "/exams", headers=patient["headers"], json={"patient_id": patient["id"], "exam_type": "Blood count"}
    )
    assert status_and_detail(created) == (403, FORBIDDEN)
    assert status_and_detail(upload(clinic, patient, exam_id)) == (403, FORBIDDEN)
    assert status_and_detail(clinic.client.post(f"/exams/{exam_id}/ready", headers=patient["headers"])) == (
        403,
        FORBIDDEN,
    )
    assert clinic.client.get(f"/exams/{exam_id}", headers=staff["headers"]).json()["status"] == "requested"
    assert upload(clinic, staff, exam_id).status_code == 200


def test_a_doctor_orders_uploads_and_releases_only_for_their_patients_and_exams(clinic, clinic_aws):
    staff, doctor, colleague = clinic.user("staff"), clinic.user("doctor"), clinic.user("doctor")
    mine, stranger = clinic.user("patient"), clinic.user("patient")
    for who in (doctor, colleague):  # both see the patient's exams; each changes only their own
        booked = clinic.client.post(
            "/appointments", headers=mine["headers"], json={"doctor_id": who["id"], "starts_at": future(3 + who["id"])}
        )
        assert booked.status_code == 201, booked.text

    def order(patient, **more):
        body = {"patient_id": patient["id"], "exam_type": "Blood count", **more}
        return clinic.client.post("/exams", headers=doctor["headers"], json=body)

    assert order(stranger).json()["errors"] == [{"field": "patient_id", "problem": NO_PATIENT}], (
        "a patient the doctor does not treat is answered as one that does not exist"
    )
    as_colleague = order(mine, doctor_id=colleague["id"])
    assert as_colleague.json()["errors"] == [{"field": "doctor_id", "problem": ORDERED_AS_SELF}]
    ordered = order(mine)
    assert ordered.status_code == 201, ordered.text
    exam_id = ordered.json()["id"]
    assert ordered.json()["doctor_id"] == doctor["id"], "the ordering doctor is the exam's doctor"

    assert status_and_detail(upload(clinic, colleague, exam_id)) == (403, NOT_THEIR_EXAM)
    assert upload(clinic, doctor, exam_id).json()["status"] == "uploaded"
    assert check_uploads(clinic.app.state.engine, clinic_aws) == ["verified"]
    refused = clinic.client.post(f"/exams/{exam_id}/ready", headers=colleague["headers"])
    assert status_and_detail(refused) == (403, NOT_THEIR_EXAM)
    assert clinic.client.post(f"/exams/{exam_id}/ready", headers=doctor["headers"]).json()["status"] == "ready"

    by_staff = new_exam(clinic, staff, mine)  # no doctor: staff's to complete
    assert status_and_detail(upload(clinic, doctor, by_staff)) == (403, NOT_THEIR_EXAM)
    assert status_and_detail(upload(clinic, doctor, new_exam(clinic, staff, stranger))) == (404, NOT_FOUND)


def test_upload_refuses_what_is_not_a_pdf_and_what_is_too_large(clinic):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, patient)
    for body, content_type in ((b"<html>not a pdf</html>", "application/pdf"), (PDF, "text/plain")):
        refused = upload(clinic, staff, exam_id, body, content_type)
        assert status_and_detail(refused) == (415, NOT_PDF), content_type
    too_large = upload(clinic, staff, exam_id, b"%PDF-" + b"0" * (64 * 1024))
    assert status_and_detail(too_large) == (413, "the result is larger than 65536 bytes")
    assert clinic.client.get(f"/exams/{exam_id}", headers=staff["headers"]).json()["status"] == "requested"
    assert upload(clinic, staff, exam_id, b"%PDF-" + b"0" * (64 * 1024 - 5)).status_code == 200, "at the limit"


def test_mark_ready_refuses_when_no_result_was_uploaded_and_download_waits_for_ready(clinic):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, patient)
    refused = clinic.client.post(f"/exams/{exam_id}/ready", headers=staff["headers"])
    assert status_and_detail(refused) == (409, NOT_UPLOADED)
    upload(clinic, staff, exam_id)
    waiting = clinic.client.get(f"/exams/{exam_id}/download", headers=patient["headers"])
    assert status_and_detail(waiting) == (409, NOT_READY)
    # Uploaded is not enough: the file processor must have checked the PDF first.
    unchecked = clinic.client.post(f"/exams/{exam_id}/ready", headers=staff["headers"])
    assert status_and_detail(unchecked) == (409, NOT_VERIFIED)


def test_the_result_pdf_is_encrypted_under_the_buckets_own_kms_key(clinic, clinic_aws):
    """As components/storage.py makes the bucket: default SSE-KMS under a customer key. moto fills a PutObject that
    names "aws:kms" without a key id with the bucket's key; AWS uses the AWS-managed aws/s3 key instead. So the
    request itself is checked too: it must leave the choice to the bucket default (or name the bucket's key)."""
    key_arn = clinic_aws.client("kms").create_key(Description="exam results")["KeyMetadata"]["Arn"]
    s3 = clinic_aws.client("s3")
    s3.put_bucket_encryption(
        Bucket=clinic_aws.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    put_requests = []
    clinic.app.state.s3.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: put_requests.append(dict(params))
    )
    staff, patient = clinic.user("staff"), clinic.user("patient")
    exam_id = new_exam(clinic, staff, patient)
    assert upload(clinic, staff, exam_id).status_code == 200

    [request] = put_requests
    assert request.get("SSEKMSKeyId") == key_arn or "ServerSideEncryption" not in request, (
        f"PutObject names {request.get('ServerSideEncryption')!r} without the bucket's key: S3 would use aws/s3"
    )
    stored = s3.head_object(Bucket=clinic_aws.bucket, Key=request["Key"])
    assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", key_arn)
