"""One email (subject, text, HTML) per event type. Everything from the payload is escaped in the HTML part."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from .events import Event, parse_datetime

CLINIC_NAME = "Clinic"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


def _one_line(value: object, limit: int = 200) -> str:
    # Subjects end up in a mail header: no line breaks, bounded length.
    return " ".join(str(value).split())[:limit]


def _when(value: str) -> str:
    moment = parse_datetime(value, "starts_at")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")


def _safe_link(value: object) -> str | None:
    """Only http(s) links are rendered as links; anything else (javascript:, data:) is dropped."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("https", "http") and parts.netloc else None


def _body(event: Event) -> tuple[str, list[str], tuple[str, str] | None]:
    """Subject, paragraphs (plain text, unescaped) and an optional (label, url) call to action."""
    p = event.payload
    kind = event.type
    if kind == "account.created":
        return (
            f"Welcome to {CLINIC_NAME}",
            ["Your account has been created. You can now sign in to book appointments and see your exam results."],
            None,
        )
    if kind == "account.verification_requested":
        link = _safe_link(p["verify_url"])
        hours = p.get("expires_hours")
        within = f" within {hours} hours" if isinstance(hours, int) else ""
        return (
            f"Confirm your email address for {CLINIC_NAME}",
            [
                f"Someone, hopefully you, asked to create a {CLINIC_NAME} account with this email address.",
                f"To confirm it is yours, follow the link below{within} and choose your password.",
                "If it was not you, ignore this message: no account is activated without that link.",
            ],
            ("Confirm and choose your password", link) if link else None,
        )
    if kind == "account.registration_attempted":
        return (
            f"Someone tried to register with your email address at {CLINIC_NAME}",
            [
                f"Someone tried to create a new {CLINIC_NAME} account with this email address, which already has one.",
                "If it was you, sign in with your existing password instead.",
                "If it was not, you can ignore this message: your account has not changed.",
            ],
            None,
        )
    if kind == "patient.registered":
        return (
            f"Your patient record at {CLINIC_NAME} is ready",
            ["You are now registered as a patient. You can book appointments and follow your exams online."],
            None,
        )
    if kind == "doctor.registered":
        specialty = p.get("specialty")
        line = "Your doctor profile has been created"
        line += f" ({_one_line(specialty)})." if specialty else "."
        return (f"Your doctor profile at {CLINIC_NAME}", [line, "Patients can now book appointments with you."], None)
    if kind == "appointment.confirmed":
        when = _when(p["starts_at"])
        link = _safe_link(p.get("telemedicine_url"))
        lines = [f"Your appointment with {_one_line(p['doctor_name'])} is confirmed for {when}."]
        if link:
            lines.append("This is a video appointment. Join it from the link below a few minutes before it starts.")
        return (f"Appointment confirmed: {when}", lines, ("Join the video appointment", link) if link else None)
    if kind == "appointment.cancelled":
        when = _when(p["starts_at"])
        lines = [f"Your appointment with {_one_line(p['doctor_name'])} on {when} has been cancelled."]
        if p.get("reason"):
            lines.append(f"Reason: {_one_line(p['reason'], 500)}")
        lines.append("You can book a new appointment at any time.")
        return (f"Appointment cancelled: {when}", lines, None)
    exam = _one_line(p.get("exam_type", ""))
    if kind == "exam.created":
        return (
            f"Your {exam} exam has been scheduled",
            [f"An exam ({exam}) has been created in your record. We will let you know when its result is ready."],
            None,
        )
    if kind == "exam.completed":
        return (
            f"Your {exam} exam is complete",
            [f"Your exam ({exam}) has been completed. Its result is being prepared."],
            None,
        )
    if kind == "exam.result.ready":
        return (
            f"Your {exam} result is ready",
            [
                f"The result of your exam ({exam}) is ready.",
                "Sign in to your account to view and download it. For your privacy the result is not attached.",
            ],
            None,
        )
    if kind == "file.uploaded":
        name = p.get("filename")
        line = (
            f"A new document ({_one_line(name)}) has been added to your record."
            if name
            else "A new document has been added to your record."
        )
        return ("A new document is available", [line, "Sign in to your account to view it."], None)
    if kind in ("file.processed", "file.quarantined"):
        number = p.get("exam_id")
        which = f"exam #{number} ({exam})" if isinstance(number, int) else f"an exam ({exam})"
        if kind == "file.processed":
            return (
                f"Result of {which} verified",
                [
                    f"The result uploaded for {which} was checked: it is a readable PDF and its checksum is recorded.",
                    "The clinic staff can now release it to the patient.",
                ],
                None,
            )
        return (
            f"Result of {which} refused",
            [
                f"The file uploaded as the result of {which} is not a readable PDF. It was set aside and the "
                "patient cannot see it.",
                "Please ask the clinic staff to upload the result again.",
            ],
            None,
        )
    raise ValueError(f"no template for event type {kind!r}")


def render(event: Event) -> Email:
    subject, lines, action = _body(event)
    name = _one_line(event.recipient_name, 100)
    text_parts = [f"Hello {name},", *lines]
    html_parts = [f"<p>Hello {html.escape(name)},</p>", *(f"<p>{html.escape(line)}</p>" for line in lines)]
    if action:
        label, url = action
        text_parts.append(f"{label}: {url}")
        html_parts.append(f'<p><a href="{html.escape(url, quote=True)}">{html.escape(label)}</a></p>')
    footer = f"This message was sent by {CLINIC_NAME}. Please do not reply to it."
    text_parts.append(footer)
    html_parts.append(f'<p style="color:#666;font-size:12px">{html.escape(footer)}</p>')
    body_html = '<!DOCTYPE html><html><body style="font-family:sans-serif">' + "".join(html_parts) + "</body></html>"
    return Email(
        to=event.recipient_email, subject=_one_line(subject, 150), text="\n\n".join(text_parts), html=body_html
    )
