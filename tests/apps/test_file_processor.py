"""The file processor on a real PostgreSQL (the API's schema) and moto's S3 and SQS: each uploaded result is checked,
its SHA-256 recorded and its verdict emitted once; a bad file is set aside and the doctor told; poison goes to the DLQ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib

import pytest
from api_support import running_clinic, status_and_detail
from file_support import drain, make_processor, pdf_bytes, relay
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import make_queue, sent_emails

from clinic_api.exams.service import NOT_READY, QUARANTINED
from clinic_api.models import Exam, OutboxEvent
from clinic_common.logging import JsonFormatter
from file_processor.app import configure_logging
from file_processor.events import PoisonMessage, parse_upload
from file_processor.pdf_check import check_pdf
from file_processor.settings import FileProcessorSettings
from file_processor.worker import make_checker
from notifier.metrics import Metrics as NotifierMetrics
from notifier.store import SentEventStore
from notifier.worker import Notifier

PATIENT_NAME = "Sigilosa"  # clinic.user titles the name it is given


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


@pytest.fixture
def engine(clinic):
    return clinic.app.state.engine


@pytest.fixture
def people(clinic):
    return {
        "staff": clinic.user("staff"),
        "doctor": clinic.user("doctor", "ana"),
        "patient": clinic.user("patient", PATIENT_NAME.lower()),
    }


def new_exam(clinic, people, doctor=True) -> int:
    response = clinic.client.post(
        "/exams",
        headers=people["staff"]["headers"],
        json={
            "patient_id": people["patient"]["id"],
            "exam_type": "Blood count",
            "doctor_id": people["doctor"]["id"] if doctor else None,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(clinic, people, exam_id, body) -> str:
    response = clinic.client.put(
        f"/exams/{exam_id}/result",
        headers={**people["staff"]["headers"], "Content-Type": "application/pdf"},
        content=body,
    )
    assert response.status_code == 200, response.text
    with Session(clinic.app.state.engine) as session:
        key = session.get_one(Exam, exam_id).result_key
    assert key is not None
    return key


def exam_row(engine, exam_id) -> Exam:
    with Session(engine) as session:
        return session.get_one(Exam, exam_id)


def events(engine, event_type) -> list[dict]:
    with Session(engine) as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == event_type).order_by(OutboxEvent.id))
        return [row.payload for row in rows]


def keys(clinic_aws) -> list[str]:
    listing = clinic_aws.client("s3").list_objects_v2(Bucket=clinic_aws.bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_good_pdf_is_verified_with_its_sha256_and_one_file_processed_event(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people)
    body = pdf_bytes(pages=2)
    key = upload(clinic, people, exam_id, body)
    relay(engine, clinic_aws)
    processor = make_processor(engine, clinic_aws)

    assert drain(processor) == ["verified"]

    exam = exam_row(engine, exam_id)
    assert (exam.status, exam.result_key) == ("verified", key)
    assert exam.result_sha256 == hashlib.sha256(body).hexdigest() and exam.result_checked_at is not None
    [event] = events(engine, "file.processed")
    assert event["recipient_email"] == people["doctor"]["email"] and event["exam_id"] == exam_id
    assert event["sha256"] == exam.result_sha256
    assert keys(clinic_aws) == [key], "a verified file stays where the API serves it from"
    # Now, and only now, staff can release it.
    ready = clinic.client.post(f"/exams/{exam_id}/ready", headers=people["staff"]["headers"])
    assert ready.json()["status"] == "ready"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (pdf_bytes()[:300], "unreadable"),  # truncated in transit
        (b"%PDF-1.7\n" + bytes(range(256)) * 40, "unreadable"),  # the header and nothing of a PDF behind it
    ],
    ids=["truncated", "garbage-behind-the-header"],
)
def test_a_bad_file_is_set_aside_never_downloadable_and_the_doctor_is_emailed(
    clinic, engine, people, clinic_aws, postgres, body, reason
):
    exam_id = new_exam(clinic, people)
    key = upload(clinic, people, exam_id, body)
    relay(engine, clinic_aws)
    processor = make_processor(engine, clinic_aws)

    assert drain(processor) == ["quarantined"]

    exam = exam_row(engine, exam_id)
    assert (exam.status, exam.result_key) == ("quarantined", f"quarantine/{key}")
    assert exam.result_sha256 == hashlib.sha256(body).hexdigest()
    assert keys(clinic_aws) == [f"quarantine/{key}"], "moved aside: nothing left under the API's prefix"
    moved = clinic_aws.client("s3").get_object(Bucket=clinic_aws.bucket, Key=f"quarantine/{key}")
    assert moved["Body"].read() == body and moved["Metadata"] == {"quarantined-from": key}
    refused = clinic.client.post(f"/exams/{exam_id}/ready", headers=people["staff"]["headers"])
    assert status_and_detail(refused) == (409, QUARANTINED)
    download = clinic.client.get(f"/exams/{exam_id}/download", headers=people["patient"]["headers"])
    assert status_and_detail(download) == (409, NOT_READY)
    [event] = events(engine, "file.quarantined")
    assert (event["recipient_email"], event["reason"]) == (people["doctor"]["email"], reason)

    # The verdict reaches the doctor's inbox through the outbox relay and the notifier, as deployed.
    relay(engine, clinic_aws)
    store = SentEventStore(engine)
    store.create_table()
    notifier = Notifier(
        sqs=clinic_aws.client("sqs"),
        ses=clinic_aws.client("sesv2"),
        store=store,
        queue_urls=[clinic_aws.queue_urls["exam"]],
        from_address=clinic_aws.from_address,
        wait_seconds=0,
        metrics=NotifierMetrics(),
    )
    notifier.process_batch(clinic_aws.queue_urls["exam"], notifier.receive(clinic_aws.queue_urls["exam"]))
    [mail] = sent_emails(clinic_aws.endpoint, people["doctor"]["email"])
    assert mail["subject"] == f"Result of exam #{exam_id} (Blood count) refused"
    assert "upload the result again" in mail["body"]


def test_the_same_message_twice_records_one_checksum_and_one_event(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people)
    upload(clinic, people, exam_id, pdf_bytes())
    relay(engine, clinic_aws)
    sqs = clinic_aws.client("sqs")
    [message] = sqs.receive_message(QueueUrl=clinic_aws.queue_urls["file"], MessageAttributeNames=["All"])["Messages"]
    # SQS delivers at least once: the very same event again, as a second message.
    sqs.send_message(
        QueueUrl=clinic_aws.queue_urls["file"],
        MessageBody=message["Body"],
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": "file.uploaded"}},
    )
    processor = make_processor(engine, clinic_aws)
    assert processor.process(message) == "verified"
    checked_at = exam_row(engine, exam_id).result_checked_at

    assert drain(processor) == ["duplicate"]
    assert len(events(engine, "file.processed")) == 1
    assert exam_row(engine, exam_id).result_checked_at == checked_at, "recorded once"
    attributes = sqs.get_queue_attributes(
        QueueUrl=clinic_aws.queue_urls["file"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_copy_checked_differently_by_a_racing_worker_moves_nothing(clinic, engine, people, clinic_aws):
    """Two workers hold the same event; one verifies it. The other's check times out on a busy node: it must not
    move the verified file aside nor emit a second verdict (the lock and re-check in ExamStore.record)."""
    exam_id = new_exam(clinic, people)
    key = upload(clinic, people, exam_id, pdf_bytes())
    relay(engine, clinic_aws)
    [message] = clinic_aws.client("sqs").receive_message(QueueUrl=clinic_aws.queue_urls["file"])["Messages"]
    slow = make_processor(engine, clinic_aws, checker=make_checker(max_pages=10, timeout=0.01, memory_mb=256))
    stale = slow.store.exam(exam_id)  # what the slow worker read before the other one finished
    assert make_processor(engine, clinic_aws).process(message) == "verified"
    slow.store.exam = lambda _id: stale

    assert slow.process(message) == "duplicate"
    assert keys(clinic_aws) == [key]
    assert exam_row(engine, exam_id).status == "verified"
    assert events(engine, "file.quarantined") == [] and len(events(engine, "file.processed")) == 1


def test_an_older_upload_replaced_by_a_newer_one_is_skipped(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people)
    upload(clinic, people, exam_id, pdf_bytes()[:200])  # a bad first attempt...
    newer = upload(clinic, people, exam_id, pdf_bytes())  # ...replaced before the processor got to it
    relay(engine, clinic_aws)

    assert sorted(drain(make_processor(engine, clinic_aws))) == ["superseded", "verified"]
    assert (exam_row(engine, exam_id).status, exam_row(engine, exam_id).result_key) == ("verified", newer)
    assert events(engine, "file.quarantined") == []


def test_a_move_interrupted_before_its_verdict_is_completed_on_redelivery(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people)
    body = b"%PDF-1.4\nnot really"
    key = upload(clinic, people, exam_id, body)
    relay(engine, clinic_aws)
    # A worker copied the file aside and deleted the original, then died before its transaction committed.
    s3 = clinic_aws.client("s3")
    s3.copy_object(
        Bucket=clinic_aws.bucket, Key=f"quarantine/{key}", CopySource={"Bucket": clinic_aws.bucket, "Key": key}
    )
    s3.delete_object(Bucket=clinic_aws.bucket, Key=key)

    assert drain(make_processor(engine, clinic_aws)) == ["quarantined"]
    exam = exam_row(engine, exam_id)
    assert (exam.status, exam.result_sha256) == ("quarantined", hashlib.sha256(body).hexdigest())
    assert keys(clinic_aws) == [f"quarantine/{key}"] and len(events(engine, "file.quarantined")) == 1


def test_without_a_doctor_the_uploader_is_told(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people, doctor=False)
    upload(clinic, people, exam_id, b"%PDF-1.4 broken")
    relay(engine, clinic_aws)
    assert drain(make_processor(engine, clinic_aws)) == ["quarantined"]
    [event] = events(engine, "file.quarantined")
    assert event["recipient_email"] == people["staff"]["email"]


def test_a_file_larger_than_allowed_is_set_aside_unread(clinic, engine, people, clinic_aws):
    exam_id = new_exam(clinic, people)
    body = pdf_bytes(pages=40)
    assert len(body) > 1024
    key = upload(clinic, people, exam_id, body)
    relay(engine, clinic_aws)
    assert drain(make_processor(engine, clinic_aws, max_file_bytes=1024)) == ["quarantined"]
    exam = exam_row(engine, exam_id)
    assert (exam.status, exam.result_sha256) == ("quarantined", None)
    assert events(engine, "file.quarantined")[0]["reason"] == "too_large"
    assert keys(clinic_aws) == [f"quarantine/{key}"]


def test_poison_goes_to_the_dlq_after_max_receive_count_with_a_clear_log_and_no_patient_data(
    clinic, engine, people, clinic_aws, caplog
):
    sqs = clinic_aws.client("sqs")
    queue = make_queue(sqs, f"files-{uuid.uuid4().hex[:8]}", visibility=0, max_receive=3)
    exam_id = new_exam(clinic, people)
    patient = people["patient"]
    poison = {
        "id": str(uuid.uuid4()),
        "type": "file.uploaded",
        "occurred_at": "2026-11-29T10:00:00Z",
        # A key outside the API's prefix: the worker must not be pointed at other objects.
        "payload": {
            "exam_id": exam_id,
            "result_key": "../../etc/passwd",
            "recipient_email": patient["email"],
            "recipient_name": PATIENT_NAME,
        },
    }
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(poison))
    processor = make_processor(engine, clinic_aws, queue_url=queue.url)
    processor.read_redrive_policy()
    caplog.set_level(logging.INFO)

    assert [outcome for _ in range(3) for outcome in drain(processor)] == ["poison", "poison", "poison"]
    assert drain(processor) == [], "moved to the DLQ on the receive after the third"
    [dead] = sqs.receive_message(QueueUrl=queue.dlq_url)["Messages"]
    assert json.loads(dead["Body"])["id"] == poison["id"]
    lines = [JsonFormatter("file-processor").format(r) for r in caplog.records if r.name.startswith("file_processor")]
    assert [json.loads(line)["receive_count"] for line in lines] == [1, 2, 3]
    assert "moved to the DLQ at its next receive" in lines[-1] and '"reason": "invalid_field"' in lines[-1]
    assert not [line for line in lines if patient["email"] in line or PATIENT_NAME in line]


def test_logs_of_good_and_bad_files_carry_no_patient_data(clinic, engine, people, clinic_aws, caplog):
    for body in (pdf_bytes(), b"%PDF-1.4 broken"):
        upload(clinic, people, new_exam(clinic, people), body)
    relay(engine, clinic_aws)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    caplog.set_level(logging.DEBUG)
    # The levels the process runs with (botocore's debug lines, which echo request and response bodies, are off).
    configure_logging(FileProcessorSettings(queue_url=clinic_aws.queue_urls["file"], bucket=clinic_aws.bucket))
    root.addHandler(caplog.handler)
    try:
        assert sorted(drain(make_processor(engine, clinic_aws))) == ["quarantined", "verified"]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.getLogger("botocore").setLevel(logging.NOTSET)
    # werkzeug's lines are moto's server, not the processor's.
    text = "\n".join(
        JsonFormatter("file-processor").format(r) for r in caplog.records if not r.name.startswith("werkzeug")
    )
    assert "result verified" in text and "result refused and set aside" in text
    assert people["patient"]["email"] not in text and PATIENT_NAME not in text


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"result_key": "exams/1/a.pdf"}, "invalid_field"),
        ({"exam_id": 2**31, "result_key": "exams/1/a.pdf"}, "invalid_field"),
        ({"exam_id": True, "result_key": "exams/1/a.pdf"}, "invalid_field"),
        ({"exam_id": 1}, "missing_field"),
        ({"exam_id": 1, "result_key": "quarantine/exams/1/a.pdf"}, "invalid_field"),
        ({"exam_id": 1, "result_key": "exams/../secrets"}, "invalid_field"),
        ({"exam_id": 1, "result_key": "exams/1/a\n.pdf"}, "invalid_field"),
        ({"exam_id": 1, "result_key": "exams/1/a.pdf", "uploaded_by": "7"}, "invalid_field"),
    ],
)
def test_an_event_the_worker_cannot_act_on_is_poison(payload, reason):
    body = json.dumps({"id": str(uuid.uuid4()), "type": "file.uploaded", "payload": payload})
    with pytest.raises(PoisonMessage) as refused:
        parse_upload(body, None, "exams/")
    assert refused.value.reason == reason


def test_other_events_and_envelopes_are_poison():
    for body, reason in (
        ("not json", "invalid_json"),
        (json.dumps({"id": str(uuid.uuid4()), "type": "exam.created", "payload": {}}), "unknown_type"),
        (json.dumps({"id": "x", "type": "file.uploaded", "payload": {}}), "invalid_field"),
    ):
        with pytest.raises(PoisonMessage) as refused:
            parse_upload(body, None, "exams/")
        assert refused.value.reason == reason, body


def _pdf_with_content(stream: bytes, pages: int = 1) -> bytes:
    """A hand-built PDF whose pages share one Flate content stream (pypdf's writer would not build a bomb)."""
    compressed = zlib.compress(stream, 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed) + compressed + b"\nendstream",
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 3 0 R >>" for _ in range(pages)],
    ]
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_the_check_is_bounded_in_pages_memory_and_time():
    limits = {"max_pages": 5, "timeout": 15, "memory_mb": 256}
    assert check_pdf(_pdf_with_content(b"BT ET\n", pages=3), **limits).reason == "ok"
    assert check_pdf(_pdf_with_content(b"BT ET\n", pages=6), **limits).reason == "too_many_pages"
    # 1 GB of zeros in 1 MB of Flate: refused without the worker holding it (pypdf's stream limit, then RLIMIT_AS).
    bomb = _pdf_with_content(b"\0" * (1 << 30))
    assert len(bomb) < 2 << 20
    assert check_pdf(bomb, **limits).reason in ("unreadable", "too_complex")
    assert check_pdf(_pdf_with_content(b"\0" * (60 << 20)), **{**limits, "memory_mb": 64}).reason == "too_complex"
    # The wall clock: a check that outlives its timeout is killed and the file refused.
    assert check_pdf(pdf_bytes(), **{**limits, "timeout": 0.01}).reason == "timeout"
    assert check_pdf(b"<html>", **limits).reason == "not_pdf"


def test_a_result_deleted_by_hand_is_poison_naming_both_places(clinic, engine, people, clinic_aws, caplog):
    exam_id = new_exam(clinic, people)
    key = upload(clinic, people, exam_id, pdf_bytes())
    relay(engine, clinic_aws)
    clinic_aws.client("s3").delete_object(Bucket=clinic_aws.bucket, Key=key)
    caplog.set_level(logging.ERROR, logger="file_processor")

    processor = make_processor(engine, clinic_aws)
    [message] = processor.receive()
    assert processor.process(message) == "poison"
    [record] = [r for r in caplog.records if r.name == "file_processor"]
    assert record.reason == "object_missing"
    assert f"{key}: NoSuchKey" in record.detail and f"quarantine/{key}: NoSuchKey" in record.detail
    assert exam_row(engine, exam_id).status == "uploaded", "nothing recorded: the exam cannot be released"


def test_the_result_check_migration_keeps_every_exam_and_queues_the_unchecked_ones(postgres):
    """Upgrading a database of the previous revision: every exam stays as it was, and a result uploaded but never
    checked (its message long expired) gets a file.uploaded event for the processor. Downgrading goes back."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from clinic_api.migrate import MIGRATIONS

    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        # No transaction around the upgrade: each migration runs in its own, and 0011 steps out of it.
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
            connection.execute(
                text(
                    "INSERT INTO users (id, email, full_name, role, password_hash, created_at)"
                    " VALUES (1, 'pat@example.org', 'Pat', 'patient', 'x', now());"
                    "INSERT INTO exams (id, patient_id, exam_type, status, result_key, created_at) VALUES"
                    " (1, 1, 'MRI', 'requested', NULL, now()),"
                    " (2, 1, 'MRI', 'uploaded', 'exams/2/a.pdf', now()),"
                    " (3, 1, 'MRI', 'ready', 'exams/3/b.pdf', now())"
                )
            )
            connection.commit()
            command.upgrade(config, "head")
            exams = connection.execute(
                text("SELECT id, status, result_key, result_sha256, result_checked_at FROM exams ORDER BY id")
            ).all()
            queued = connection.execute(text("SELECT event_type, payload FROM outbox")).all()
            connection.execute(text("UPDATE exams SET status = 'verified' WHERE id = 2"))
            connection.commit()
            command.downgrade(config, "0004")
            after_downgrade = connection.execute(text("SELECT id, status FROM exams ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in exams] == [
        (1, "requested", None, None, None),
        (2, "uploaded", "exams/2/a.pdf", None, None),
        (3, "ready", "exams/3/b.pdf", None, None),
    ]
    assert [(t, dict(p)) for t, p in queued] == [("file.uploaded", {"exam_id": 2, "result_key": "exams/2/a.pdf"})]
    assert [tuple(row) for row in after_downgrade] == [(1, "requested"), (2, "uploaded"), (3, "ready")]
