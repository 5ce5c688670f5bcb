"""The transactional outbox: events exist exactly when their change does, and none is lost while SQS is down or
fails some entries of a batch."""

from __future__ import annotations

import json

import boto3
import pytest
from api_support import running_clinic
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.models import OutboxEvent, User
from clinic_api.settings import QueueSettings


@pytest.fixture
def clinic(postgres, clinic_aws):
    # One test client registers 46 patients: more than one address may in a window.
    with running_clinic(postgres, clinic_aws, auth={"max_client_registrations": 100}) as clinic:
        yield clinic


def drain(sqs, url):
    bodies = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for m in batch:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def queues(clinic_aws) -> QueueSettings:
    return QueueSettings(**{d.replace("-", "_"): u for d, u in clinic_aws.queue_urls.items()})


def test_an_event_is_written_with_its_change_and_not_without_it(clinic):
    engine = clinic.app.state.engine
    with Session(engine) as session:
        session.add(User(email="x@example.org", full_name="X", role="patient", password_hash="h"))
        outbox.record(session, "account.created", {"recipient_email": "x@example.org"})
        session.rollback()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    clinic.register("y@example.org", "Y")  # the emailed link, then the chosen password: the welcome emails
    with Session(engine) as session:
        types = sorted(session.scalars(select(OutboxEvent.event_type)))
    assert types == ["account.created", "account.verification_requested", "patient.registered"]


def test_events_are_routed_to_their_domain_queue_with_the_contract_body(clinic, clinic_aws):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    clinic.client.post("/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": "MRI"})
    sqs = clinic_aws.client("sqs")
    url = clinic_aws.queue_urls["exam"]
    encryption = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["KmsMasterKeyId"])["Attributes"]
    assert encryption["KmsMasterKeyId"] == clinic_aws.queue_key_arn, "sent to a queue on a customer key"
    with Session(clinic.app.state.engine) as session:
        assert outbox.relay_once(session, sqs, queues(clinic_aws)) == 1
    (body,) = drain(sqs, url)
    assert body["type"] == "exam.created" and body["payload"]["recipient_email"] == patient["email"]
    assert set(body) == {"id", "type", "occurred_at", "payload"}
    assert "password" not in json.dumps(body)


def test_sqs_down_keeps_every_event_pending_and_delivers_each_once_when_it_returns(clinic, clinic_aws):
    for i in range(46):  # one event each: its verification email
        clinic.client.post("/auth/register", json={"email": f"p{i}@example.org", "full_name": f"P{i}"})
    engine = clinic.app.state.engine
    down = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=__import__("botocore.config").config.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with Session(engine) as session:
        assert outbox.relay_once(session, down, queues(clinic_aws), batch_size=100) == 0
    with Session(engine) as session:
        pending = session.scalars(select(OutboxEvent).where(OutboxEvent.sent_at.is_(None))).all()
        assert len(pending) == 46 and all(e.attempts == 1 and e.last_error for e in pending)
        session.execute(OutboxEvent.__table__.update().values(next_attempt_at=func.now()))  # skip the backoff
        session.commit()
    sqs = clinic_aws.client("sqs")
    with Session(engine) as session:
        assert outbox.relay_once(session, sqs, queues(clinic_aws), batch_size=100) == 46
        assert outbox.relay_once(session, sqs, queues(clinic_aws), batch_size=100) == 0, "nothing is sent twice"
    received = drain(sqs, clinic_aws.queue_urls["account"])
    assert len(received) == 46 and len({b["id"] for b in received}) == 46


def test_a_relay_stopped_during_a_backlog_ends_after_the_batch_in_hand(clinic, clinic_aws):
    for i in range(3):
        clinic.client.post("/auth/register", json={"email": f"b{i}@example.org", "full_name": f"B{i}"})
    relay = outbox.Relay(clinic.app.state.engine, None, queues(clinic_aws), interval=0.01, batch_size=1)
    sqs = clinic_aws.client("sqs")

    class StopDuringTheFirstSend:  # the API's shutdown arrives while the relay is sending a batch
        def send_message_batch(self, **request):
            relay.stopping.set()
            return sqs.send_message_batch(**request)

    relay.sqs = StopDuringTheFirstSend()
    relay.run()  # in this thread: returns when the relay stops
    with Session(clinic.app.state.engine) as session:
        sent = session.scalar(select(func.count()).where(OutboxEvent.sent_at.is_not(None)))
        pending = session.scalar(select(func.count()).where(OutboxEvent.sent_at.is_(None)))
    assert (sent, pending) == (1, 2), "the batch in hand is sent and recorded; the backlog waits for the next relay"
    assert len(drain(sqs, clinic_aws.queue_urls["account"])) == 1


class PartlyFailingSqs:
    """The real (moto) client, except that SendMessageBatch fails the entries whose event ids are in `failing` the
    way SQS reports it: HTTP 200, those entries in `Failed` (Message is optional), the others really sent."""

    def __init__(self, client, failing: dict[str, dict]):
        self._client, self.failing = client, failing

    def __getattr__(self, name):
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's parameter names
        failed = [{"Id": e["Id"], **self.failing[e["Id"]]} for e in Entries if e["Id"] in self.failing]
        passed = [e for e in Entries if e["Id"] not in self.failing]
        response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=passed) if passed else {}
        return {"Successful": response.get("Successful", []), "Failed": failed}


def test_entries_sqs_fails_in_one_batch_stay_pending_with_the_error_and_go_out_on_a_later_pass(clinic, clinic_aws):
    engine = clinic.app.state.engine
    with Session(engine) as session:
        events = [outbox.record(session, "account.created", {"recipient_email": f"p{i}@example.org"}) for i in range(6)]
        session.commit()
        ids = [str(e.id) for e in events]  # six events of one queue: one SendMessageBatch
    failing = {
        ids[1]: {"SenderFault": False, "Code": "InternalError", "Message": "We encountered an internal error"},
        ids[4]: {"SenderFault": False, "Code": "ServiceUnavailable"},
    }
    sqs = clinic_aws.client("sqs")
    with Session(engine) as session:
        assert outbox.relay_once(session, PartlyFailingSqs(sqs, failing), queues(clinic_aws)) == 4
    with Session(engine) as session:
        pending = {str(e.id): e for e in session.scalars(select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)))}
        assert sorted(pending) == sorted(failing), "only the failed entries stay pending"
        assert [(pending[i].attempts, pending[i].last_error) for i in sorted(failing)] == [
            (1, "We encountered an internal error"),
            (1, "ServiceUnavailable"),
        ]
        assert all(e.next_attempt_at > e.occurred_at for e in pending.values()), "backed off before the next try"
        sent_ids = {
            str(e) for e in session.scalars(select(OutboxEvent.event_id).where(OutboxEvent.sent_at.is_not(None)))
        }
    first = drain(sqs, clinic_aws.queue_urls["account"])
    assert {b["id"] for b in first} == sent_ids and len(first) == 4
    with Session(engine) as session:
        assert outbox.relay_once(session, sqs, queues(clinic_aws)) == 0, "not before the backoff has passed"
        session.execute(OutboxEvent.__table__.update().values(next_attempt_at=func.now()))  # skip the backoff
        session.commit()
        assert outbox.relay_once(session, sqs, queues(clinic_aws)) == 2
        assert outbox.relay_once(session, sqs, queues(clinic_aws)) == 0, "nothing is sent twice"
        later = {
            str(e) for e in session.scalars(select(OutboxEvent.event_id).where(OutboxEvent.id.in_(map(int, failing))))
        }
    second = drain(sqs, clinic_aws.queue_urls["account"])
    assert {b["id"] for b in second} == later and len(second) == 2
