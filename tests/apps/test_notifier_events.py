"""The event contract and the emails rendered from it (no I/O)."""

import json
import uuid

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from notifier.events import EVENT_TYPES, PoisonMessage, parse_event
from notifier.retry import RetryPolicy, call_with_retry, is_transient
from notifier.templates import render

PAYLOADS = {
    "account.created": {},
    "account.verification_requested": {
        "verify_url": "https://clinic.example.org/portal/verify-email#token=abc.def.ghi",
        "expires_hours": 24,
    },
    "account.registration_attempted": {},
    "account.password_reset_requested": {
        "reset_url": "https://clinic.example.org/portal/reset-password#token=abc.def.ghi",
        "expires_minutes": 30,
    },
    "patient.registered": {},
    "doctor.registered": {"specialty": "Cardiology"},
    "appointment.confirmed": {
        "starts_at": "2026-11-24T14:30:00Z",
        "doctor_name": "Dr. Ana Souza",
        "telemedicine_url": "https://meet.clinic.example/r/abc",
    },
    "appointment.cancelled": {"starts_at": "2026-11-24T14:30:00+00:00", "doctor_name": "Dr. Ana Souza"},
    "appointment.rescheduled": {
        "starts_at": "2026-11-26T14:30:00Z",
        "previous_starts_at": "2026-11-24T14:30:00Z",
        "doctor_name": "Dr. Ana Souza",
        "time_zone": "America/Sao_Paulo",
    },
    "appointment.reminder": {
        "starts_at": "2026-11-24T14:30:00Z",
        "doctor_name": "Dr. Ana Souza",
        "telemedicine_url": "https://meet.clinic.example/r/abc",
    },
    "exam.cancelled": {"exam_type": "Blood count", "reason": "Requested twice"},
    "exam.created": {"exam_type": "Blood count"},
    "exam.completed": {"exam_type": "Blood count"},
    "exam.result.ready": {"exam_type": "Blood count", "exam_id": "e1"},
    "file.uploaded": {"filename": "result.pdf"},
    "file.processed": {"exam_type": "Blood count", "exam_id": 7, "sha256": "ab" * 32, "reason": "ok"},
    "file.quarantined": {"exam_type": "Blood count", "exam_id": 7, "sha256": "ab" * 32, "reason": "unreadable"},
    "account.updated": {"change": "password"},
    "account.deleted": {"retained_until": "2046-11-29"},
}


def body(event_type="exam.result.ready", **payload):
    p = {"recipient_email": "pat@example.com", "recipient_name": "Pat", **PAYLOADS[event_type], **payload}
    return json.dumps(
        {"id": str(uuid.uuid4()), "type": event_type, "occurred_at": "2026-11-22T19:00:00Z", "payload": p}
    )


def test_every_event_type_has_a_payload_example_here():
    assert set(PAYLOADS) == EVENT_TYPES


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_type_renders_subject_text_and_html(event_type):
    event = parse_event(body(event_type), {"event_type": {"DataType": "String", "StringValue": event_type}})
    email = render(event)
    assert email.to == "pat@example.com"
    assert email.subject and "\n" not in email.subject
    assert email.text.startswith("Hello Pat,")
    assert email.html.startswith("<!DOCTYPE html>") and "Hello Pat," in email.html


@pytest.mark.parametrize(
    ("language", "subject", "says"),
    [
        ("en", "Choose a new password for Clinic", ["within 30 minutes", "It works once", "If it was not you"]),
        ("pt-BR", "Escolha uma nova senha na Clinic", ["em até 30 minutos", "funciona uma vez", "Se não foi você"]),
    ],
)
def test_the_password_reset_email_carries_its_link_in_the_recipients_language(language, subject, says):
    email = render(parse_event(body("account.password_reset_requested", recipient_language=language)))
    assert email.subject == subject
    url = "https://clinic.example.org/portal/reset-password#token=abc.def.ghi"
    assert url in email.text and f'href="{url}"' in email.html
    assert all(sentence in email.text for sentence in says), email.text
    with pytest.raises(PoisonMessage, match="payload.reset_url"):
        parse_event(body("account.password_reset_requested", reset_url=""))
    assert "href" not in render(parse_event(body("account.password_reset_requested", reset_url="javascript:x"))).html


def test_the_verification_email_carries_its_link_and_says_what_to_do_if_it_was_not_you():
    email = render(parse_event(body("account.verification_requested")))
    assert email.subject == "Confirm your email address for Clinic"
    assert "https://clinic.example.org/portal/verify-email#token=abc.def.ghi" in email.text
    assert 'href="https://clinic.example.org/portal/verify-email#token=abc.def.ghi"' in email.html
    assert "within 24 hours" in email.text and "If it was not you, ignore this message" in email.text
    with pytest.raises(PoisonMessage, match="payload.verify_url"):
        parse_event(body("account.verification_requested", verify_url=""))


def test_the_owner_hears_that_someone_tried_to_register_with_their_address():
    email = render(parse_event(body("account.registration_attempted")))
    assert email.subject == "Someone tried to register with your email address at Clinic"
    assert "your account has not changed" in email.text


def test_the_file_verdicts_name_the_exam_and_what_to_do():
    verified = render(parse_event(body("file.processed")))
    refused = render(parse_event(body("file.quarantined", exam_type="<b>Lipids</b>")))
    assert verified.subject == "Result of exam #7 (Blood count) verified"
    assert "can now be released to the patient" in verified.text
    assert refused.subject == "Result of exam #7 (<b>Lipids</b>) refused"  # plain text: a header, not HTML
    assert "not a readable PDF" in refused.text and "upload the result again" in refused.text
    assert "<b>" not in refused.html and "&lt;b&gt;Lipids" in refused.html


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_type_renders_in_portuguese_for_a_pt_br_recipient(event_type):
    english = render(parse_event(body(event_type, recipient_language="en")))
    portuguese = render(parse_event(body(event_type, recipient_language="pt-BR")))
    assert portuguese.text.startswith("Olá, Pat,") and '<html lang="pt-BR">' in portuguese.html
    assert english.text.startswith("Hello Pat,") and '<html lang="en">' in english.html
    assert portuguese.subject != english.subject, f"{event_type}: the pt-BR subject is the English one"
    # Every paragraph is translated, the footer too: no English sentence is left in the Portuguese email.
    assert not set(english.text.split("\n\n")) & set(portuguese.text.split("\n\n")), event_type


def test_account_emails_say_what_changed_and_what_is_kept():
    password = render(parse_event(body("account.updated", recipient_language="pt-BR")))
    assert password.subject == "Sua conta foi atualizada" and "Sua senha foi alterada." in password.text
    disabled = render(parse_event(body("account.updated", change="disabled", recipient_language="en")))
    assert "Your account has been disabled by the clinic." in disabled.text
    deleted = render(parse_event(body("account.deleted", recipient_language="pt-BR")))
    assert deleted.subject == "Sua conta foi excluída"
    assert "até 29/11/2046" in deleted.text and "Lei 13.787/2018" in deleted.text
    assert "until 29 November 2046" in render(parse_event(body("account.deleted", recipient_language="en"))).text


def test_a_reschedule_email_gives_both_times_on_the_clinics_clock_in_the_patients_language():
    pt = render(parse_event(body("appointment.rescheduled", recipient_language="pt-BR")))
    assert pt.subject == "Consulta remarcada para quinta-feira, 26 de novembro de 2026, 11:30 (America/Sao_Paulo)"
    assert "de terça-feira, 24 de novembro de 2026, 11:30 (America/Sao_Paulo) para quinta-feira" in pt.text
    en = render(parse_event(body("appointment.rescheduled", recipient_language="en")))
    assert "moved from Tuesday 24 November 2026, 11:30 (America/Sao_Paulo) to Thursday 26" in en.text


def test_a_reminder_of_a_video_visit_carries_its_room_link():
    email = render(parse_event(body("appointment.reminder", recipient_language="pt-BR")))
    assert email.subject.startswith("Lembrete: consulta terça-feira, 24 de novembro de 2026")
    assert "Entrar na consulta por vídeo: https://meet.clinic.example/r/abc" in email.text
    assert 'href="https://meet.clinic.example/r/abc"' in email.html
    in_person = render(parse_event(body("appointment.reminder", telemedicine_url=None, recipient_language="en")))
    assert "cancel or reschedule it" in in_person.text and "href" not in in_person.html


def test_a_cancellation_by_the_clinic_tells_the_patient_why_in_their_language():
    cancelled = body("appointment.cancelled", reason="Doctor is ill", cancelled_by="doctor", recipient_language="pt-BR")
    email = render(parse_event(cancelled))
    assert "A clínica a cancelou" in email.text and "Motivo: Doctor is ill" in email.text
    exam = render(parse_event(body("exam.cancelled", recipient_language="en")))
    assert "Reason: Requested twice" in exam.text


def test_an_unknown_time_zone_is_a_poison_message():
    with pytest.raises(PoisonMessage, match="time_zone 'Mars/Olympus' is unknown"):
        parse_event(body("appointment.reminder", time_zone="Mars/Olympus"))


def test_a_portuguese_appointment_email_writes_the_date_in_portuguese():
    email = render(parse_event(body("appointment.confirmed", recipient_language="pt-BR")))
    assert email.subject == "Consulta confirmada: terça-feira, 24 de novembro de 2026, 14:30 UTC"


def test_an_event_without_a_language_is_rendered_in_english_as_before():
    assert render(parse_event(body("exam.created"))).subject == "Your Blood count exam has been scheduled"


def test_appointment_email_carries_time_doctor_and_video_link():
    email = render(parse_event(body("appointment.confirmed")))
    assert "Tuesday 24 November 2026, 14:30 UTC" in email.subject
    assert "Dr. Ana Souza" in email.text
    assert 'href="https://meet.clinic.example/r/abc"' in email.html


def test_user_content_is_escaped_and_unsafe_links_dropped():
    email = render(
        parse_event(
            body(
                "appointment.confirmed",
                recipient_name="<script>x</script>",
                doctor_name='Dr "><img src=x onerror=alert(1)>',
                telemedicine_url="javascript:alert(1)",
            )
        )
    )
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "<img" not in email.html
    assert "javascript:" not in email.html and "javascript:" not in email.text


def test_subject_has_no_header_injection():
    email = render(parse_event(body("exam.created", exam_type="MRI\r\nBcc: evil@example.com")))
    assert "\r" not in email.subject and "\n" not in email.subject


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_envelope"),
        (json.dumps({"type": "exam.created", "occurred_at": "2026-01-01T00:00:00Z", "payload": {}}), "missing_field"),
        (body().replace("exam.result.ready", "exam.exploded"), "unknown_type"),
        (body(recipient_email=None), "missing_field"),
        (body(recipient_email="not-an-address"), "invalid_field"),
        (body(recipient_email="a@b.com\r\nBcc: c@d.com"), "invalid_field"),
        (body(exam_type=""), "missing_field"),
        (body(exam_type=42), "invalid_field"),
        (body("appointment.confirmed", starts_at="tomorrow"), "invalid_field"),
        (json.dumps({**json.loads(body()), "id": "not-a-uuid"}), "invalid_field"),
        (json.dumps({**json.loads(body()), "payload": "x"}), "invalid_envelope"),
        (body(recipient_language="fr"), "invalid_field"),
        (body("account.updated", change="email"), "invalid_field"),
        (body("account.deleted", retained_until="forever"), "invalid_field"),
    ],
)
def test_poison_messages_are_refused_with_a_reason(raw, reason):
    with pytest.raises(PoisonMessage) as info:
        parse_event(raw)
    assert info.value.reason == reason


def test_attribute_must_match_the_body_type():
    with pytest.raises(PoisonMessage, match="event_type attribute"):
        parse_event(body("exam.created"), {"event_type": {"DataType": "String", "StringValue": "exam.completed"}})


def _client_error(code, status=400):
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )


def test_transient_classification():
    assert is_transient(_client_error("TooManyRequestsException", 429))
    assert is_transient(_client_error("Whatever", 503))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert not is_transient(_client_error("MessageRejected"))
    assert not is_transient(ValueError("x"))


def test_retry_backs_off_1_then_2_seconds_and_gives_up_after_3_calls():
    calls, sleeps = [], []

    def fail():
        calls.append(1)
        raise _client_error("ThrottlingException", 400)

    with pytest.raises(ClientError):
        call_with_retry(fail, RetryPolicy(), sleeps.append)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_retry_does_not_retry_permanent_errors():
    calls = []

    def fail():
        calls.append(1)
        raise _client_error("MessageRejected")

    with pytest.raises(ClientError):
        call_with_retry(fail, RetryPolicy(), lambda s: None)
    assert len(calls) == 1
