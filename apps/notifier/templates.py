"""One email (subject, text, HTML) per event type, in the recipient's language (pt-BR or en: `Event.language`).
Everything from the payload is escaped in the HTML part.

Each text is written in both languages side by side (`_pick`), so a template cannot gain a sentence in one language
only; `tests/apps/test_notifier_events.py` renders every event type in both."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from .events import Event, parse_datetime

CLINIC_NAME = "Clinic"
_WEEKDAYS_PT = ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado", "domingo")
_MONTHS_PT = (
    "janeiro", "fevereiro", "março", "abril", "maio", "junho",
    "julho", "agosto", "setembro", "outubro", "novembro", "dezembro",
)  # fmt: skip
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


def _pick(language: str, en: str, pt: str) -> str:
    return pt if language == "pt-BR" else en


def _one_line(value: object, limit: int = 200) -> str:
    # Subjects end up in a mail header: no line breaks, bounded length.
    return " ".join(str(value).split())[:limit]


def _when(value: str, language: str, time_zone: str | None = None) -> str:
    """The instant on the clinic's clock when the event names its zone (`time_zone`), else in UTC."""
    # Names written out here rather than through the C locale: the image carries no locales.
    moment = parse_datetime(value, "starts_at")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    m = moment.astimezone(ZoneInfo(time_zone) if time_zone else UTC)
    clock = f"{m:%H:%M} ({time_zone})" if time_zone else f"{m:%H:%M} UTC"
    if language == "pt-BR":
        return f"{_WEEKDAYS_PT[m.weekday()]}, {m.day} de {_MONTHS_PT[m.month - 1]} de {m.year}, {clock}"
    return f"{_WEEKDAYS_EN[m.weekday()]} {m.day:02d} {_MONTHS_EN[m.month - 1]} {m.year}, {clock}"


def _date(value: str, language: str) -> str:
    day = parse_datetime(value, "retained_until").date()
    return f"{day:%d/%m/%Y}" if language == "pt-BR" else f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def _safe_link(value: object) -> str | None:
    """Only http(s) links are rendered as links; anything else (javascript:, data:) is dropped."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("https", "http") and parts.netloc else None


_ACCOUNT_CHANGES = {  # account.updated: change -> (en, pt-BR)
    "profile": ("Your profile details were changed.", "Os dados do seu perfil foram alterados."),
    "password": ("Your password was changed.", "Sua senha foi alterada."),
    "disabled": (
        "Your account has been disabled by the clinic. Contact the clinic if you think this is a mistake.",
        "Sua conta foi desativada pela clínica. Entre em contato com a clínica se achar que isso é um engano.",
    ),
    "enabled": ("Your account has been enabled again.", "Sua conta foi reativada."),
    "consent": (
        "Your privacy choices (consents) were changed.",
        "Suas escolhas de privacidade (consentimentos) foram alteradas.",
    ),
}


def _body(event: Event) -> tuple[str, list[str], tuple[str, str] | None]:
    """Subject, paragraphs (plain text, unescaped) and an optional (label, url) call to action."""
    p = event.payload
    kind = event.type
    lang = event.language
    if kind == "account.created":
        return (
            _pick(lang, f"Welcome to {CLINIC_NAME}", f"Boas-vindas à {CLINIC_NAME}"),
            [
                _pick(
                    lang,
                    "Your account has been created. You can now sign in to book appointments and see your exam "
                    "results.",
                    "Sua conta foi criada. Você já pode entrar para agendar consultas e ver os resultados dos seus "
                    "exames.",
                )
            ],
            None,
        )
    if kind == "account.updated":
        en, pt = _ACCOUNT_CHANGES[p["change"]]
        unexpected = _pick(
            lang,
            "If you did not make or expect this change, contact the clinic at once.",
            "Se você não fez nem esperava esta alteração, entre em contato com a clínica imediatamente.",
        )
        return (
            _pick(lang, "Your account was updated", "Sua conta foi atualizada"),
            [_pick(lang, en, pt), unexpected],
            None,
        )
    if kind == "account.deleted":
        until = _date(p["retained_until"], lang)
        return (
            _pick(lang, "Your account has been deleted", "Sua conta foi excluída"),
            [
                _pick(
                    lang,
                    "As you asked, your account has been deleted and your contact details, login and preferences "
                    "erased.",
                    "Como você pediu, sua conta foi excluída e seus dados de contato, acesso e preferências foram "
                    "apagados.",
                ),
                _pick(
                    lang,
                    f"Brazilian law requires the clinic to keep your medical records (appointments and exams) for 20 "
                    f"years after the last entry (Lei 13.787/2018, art. 6): they are kept, restricted, until {until}.",
                    f"A lei brasileira obriga a clínica a guardar seu prontuário (consultas e exames) por 20 anos "
                    f"após o último registro (Lei 13.787/2018, art. 6º): ele fica guardado, com acesso restrito, "
                    f"até {until}.",
                ),
            ],
            None,
        )
    if kind == "account.verification_requested":
        link = _safe_link(p["verify_url"])
        hours = p.get("expires_hours")
        within = _pick(lang, f" within {hours} hours", f" em até {hours} horas") if isinstance(hours, int) else ""
        return (
            _pick(lang, f"Confirm your email address for {CLINIC_NAME}", f"Confirme seu e-mail na {CLINIC_NAME}"),
            [
                _pick(
                    lang,
                    f"Someone, hopefully you, asked to create a {CLINIC_NAME} account with this email address.",
                    f"Alguém, esperamos que você, pediu para criar uma conta na {CLINIC_NAME} com este e-mail.",
                ),
                _pick(
                    lang,
                    f"To confirm it is yours, follow the link below{within} and choose your password.",
                    f"Para confirmar que é seu, siga o link abaixo{within} e escolha sua senha.",
                ),
                _pick(
                    lang,
                    "If it was not you, ignore this message: no account is activated without that link.",
                    "Se não foi você, ignore esta mensagem: nenhuma conta é ativada sem esse link.",
                ),
            ],
            (_pick(lang, "Confirm and choose your password", "Confirmar e escolher a senha"), link) if link else None,
        )
    if kind == "account.password_reset_requested":
        link = _safe_link(p["reset_url"])
        minutes = p.get("expires_minutes")
        within = (
            _pick(lang, f" within {minutes} minutes", f" em até {minutes} minutos") if isinstance(minutes, int) else ""
        )
        return (
            _pick(lang, f"Choose a new password for {CLINIC_NAME}", f"Escolha uma nova senha na {CLINIC_NAME}"),
            [
                _pick(
                    lang,
                    f"Someone, hopefully you, asked to reset the password of your {CLINIC_NAME} account.",
                    f"Alguém, esperamos que você, pediu para redefinir a senha da sua conta na {CLINIC_NAME}.",
                ),
                _pick(
                    lang,
                    f"To choose a new one, follow the link below{within}. It works once; when you use it, every "
                    "device signed in to your account is signed out.",
                    f"Para escolher uma nova, siga o link abaixo{within}. Ele funciona uma vez; ao usá-lo, todos os "
                    "dispositivos conectados à sua conta são desconectados.",
                ),
                _pick(
                    lang,
                    "If it was not you, ignore this message: your password stays as it is.",
                    "Se não foi você, ignore esta mensagem: sua senha continua a mesma.",
                ),
            ],
            (_pick(lang, "Choose a new password", "Escolher uma nova senha"), link) if link else None,
        )
    if kind == "account.registration_attempted":
        return (
            _pick(
                lang,
                f"Someone tried to register with your email address at {CLINIC_NAME}",
                f"Alguém tentou se cadastrar com seu e-mail na {CLINIC_NAME}",
            ),
            [
                _pick(
                    lang,
                    f"Someone tried to create a new {CLINIC_NAME} account with this email address, which already has "
                    "one.",
                    f"Alguém tentou criar uma nova conta na {CLINIC_NAME} com este e-mail, que já tem uma.",
                ),
                _pick(
                    lang,
                    "If it was you, sign in with your existing password instead.",
                    "Se foi você, entre com a senha que já tem.",
                ),
                _pick(
                    lang,
                    "If it was not, you can ignore this message: your account has not changed.",
                    "Se não foi, pode ignorar esta mensagem: sua conta não foi alterada.",
                ),
            ],
            None,
        )
    if kind == "patient.registered":
        return (
            _pick(
                lang,
                f"Your patient record at {CLINIC_NAME} is ready",
                f"Seu cadastro de paciente na {CLINIC_NAME} está pronto",
            ),
            [
                _pick(
                    lang,
                    "You are now registered as a patient. You can book appointments and follow your exams online.",
                    "Você agora está cadastrado(a) como paciente. Pode agendar consultas e acompanhar seus exames "
                    "online.",
                )
            ],
            None,
        )
    if kind == "doctor.registered":
        specialty = p.get("specialty")
        line = _pick(lang, "Your doctor profile has been created", "Seu perfil de médico(a) foi criado")
        line += f" ({_one_line(specialty)})." if specialty else "."
        return (
            _pick(lang, f"Your doctor profile at {CLINIC_NAME}", f"Seu perfil de médico(a) na {CLINIC_NAME}"),
            [
                line,
                _pick(
                    lang,
                    "Patients can now book appointments with you.",
                    "Pacientes já podem agendar consultas com você.",
                ),
            ],
            None,
        )
    if kind == "appointment.confirmed":
        when = _when(p["starts_at"], lang, p.get("time_zone"))
        doctor = _one_line(p["doctor_name"])
        link = _safe_link(p.get("telemedicine_url"))
        lines = [
            _pick(
                lang,
                f"Your appointment with {doctor} is confirmed for {when}.",
                f"Sua consulta com {doctor} está confirmada para {when}.",
            )
        ]
        if link:
            lines.append(
                _pick(
                    lang,
                    "This is a video appointment. Join it from the link below a few minutes before it starts.",
                    "Esta é uma consulta por vídeo. Entre pelo link abaixo alguns minutos antes do início.",
                )
            )
        action = (_pick(lang, "Join the video appointment", "Entrar na consulta por vídeo"), link) if link else None
        return (_pick(lang, f"Appointment confirmed: {when}", f"Consulta confirmada: {when}"), lines, action)
    if kind == "appointment.cancelled":
        when = _when(p["starts_at"], lang, p.get("time_zone"))
        doctor = _one_line(p["doctor_name"])
        lines = [
            _pick(
                lang,
                f"Your appointment with {doctor} on {when} has been cancelled.",
                f"Sua consulta com {doctor} em {when} foi cancelada.",
            )
        ]
        if p.get("cancelled_by") in ("doctor", "staff", "admin"):
            lines.append(
                _pick(
                    lang,
                    "The clinic cancelled it; we are sorry for the inconvenience.",
                    "A clínica a cancelou; pedimos desculpas pelo transtorno.",
                )
            )
        if p.get("reason"):
            lines.append(_pick(lang, "Reason: ", "Motivo: ") + _one_line(p["reason"], 500))
        lines.append(
            _pick(
                lang,
                "You can book a new appointment at any time.",
                "Você pode agendar uma nova consulta a qualquer momento.",
            )
        )
        return (_pick(lang, f"Appointment cancelled: {when}", f"Consulta cancelada: {when}"), lines, None)
    if kind in ("appointment.rescheduled", "appointment.reminder"):
        when = _when(p["starts_at"], lang, p.get("time_zone"))
        doctor = _one_line(p["doctor_name"])
        link = _safe_link(p.get("telemedicine_url"))
        if kind == "appointment.rescheduled":
            before = _when(p["previous_starts_at"], lang, p.get("time_zone"))
            subject = _pick(lang, f"Appointment moved to {when}", f"Consulta remarcada para {when}")
            lines = [
                _pick(
                    lang,
                    f"Your appointment with {doctor} has been moved from {before} to {when}.",
                    f"Sua consulta com {doctor} foi remarcada de {before} para {when}.",
                )
            ]
        else:
            subject = _pick(lang, f"Reminder: appointment {when}", f"Lembrete: consulta {when}")
            lines = [
                _pick(
                    lang,
                    f"This is a reminder of your appointment with {doctor} on {when}.",
                    f"Lembramos que você tem consulta com {doctor} em {when}.",
                )
            ]
        if link:
            lines.append(
                _pick(
                    lang,
                    "This is a video appointment. Join it from the link below a few minutes before it starts.",
                    "Esta é uma consulta por vídeo. Entre pelo link abaixo alguns minutos antes do início.",
                )
            )
        else:
            lines.append(
                _pick(
                    lang,
                    "If you cannot come, please cancel or reschedule it so that another patient can have the time.",
                    "Se não puder comparecer, cancele ou remarque para que outro paciente possa usar o horário.",
                )
            )
        action = (_pick(lang, "Join the video appointment", "Entrar na consulta por vídeo"), link) if link else None
        return (subject, lines, action)
    exam = _one_line(p.get("exam_type", ""))
    if kind == "exam.cancelled":
        lines = [
            _pick(
                lang,
                f"Your exam ({exam}) has been cancelled by the clinic.",
                f"Seu exame ({exam}) foi cancelado pela clínica.",
            )
        ]
        if p.get("reason"):
            lines.append(_pick(lang, "Reason: ", "Motivo: ") + _one_line(p["reason"], 500))
        return (_pick(lang, f"Your {exam} exam was cancelled", f"Seu exame {exam} foi cancelado"), lines, None)
    if kind == "exam.created":
        return (
            _pick(lang, f"Your {exam} exam has been scheduled", f"Seu exame {exam} foi agendado"),
            [
                _pick(
                    lang,
                    f"An exam ({exam}) has been created in your record. We will let you know when its result is ready.",
                    f"Um exame ({exam}) foi criado no seu prontuário. Avisaremos quando o resultado estiver pronto.",
                )
            ],
            None,
        )
    if kind == "exam.completed":
        return (
            _pick(lang, f"Your {exam} exam is complete", f"Seu exame {exam} foi concluído"),
            [
                _pick(
                    lang,
                    f"Your exam ({exam}) has been completed. Its result is being prepared.",
                    f"Seu exame ({exam}) foi concluído. O resultado está sendo preparado.",
                )
            ],
            None,
        )
    if kind == "exam.result.ready":
        return (
            _pick(lang, f"Your {exam} result is ready", f"O resultado do seu exame {exam} está pronto"),
            [
                _pick(
                    lang,
                    f"The result of your exam ({exam}) is ready.",
                    f"O resultado do seu exame ({exam}) está pronto.",
                ),
                _pick(
                    lang,
                    "Sign in to your account to view and download it. For your privacy the result is not attached.",
                    "Entre na sua conta para vê-lo e baixá-lo. Para sua privacidade, o resultado não vai anexado.",
                ),
            ],
            None,
        )
    if kind == "file.uploaded":
        name = p.get("filename")
        if name:
            line = _pick(
                lang,
                f"A new document ({_one_line(name)}) has been added to your record.",
                f"Um novo documento ({_one_line(name)}) foi adicionado ao seu prontuário.",
            )
        else:
            line = _pick(
                lang,
                "A new document has been added to your record.",
                "Um novo documento foi adicionado ao seu prontuário.",
            )
        return (
            _pick(lang, "A new document is available", "Um novo documento está disponível"),
            [line, _pick(lang, "Sign in to your account to view it.", "Entre na sua conta para vê-lo.")],
            None,
        )
    if kind in ("file.processed", "file.quarantined"):
        number = p.get("exam_id")
        if isinstance(number, int):
            which = _pick(lang, f"exam #{number} ({exam})", f"exame nº {number} ({exam})")
        else:
            which = _pick(lang, f"an exam ({exam})", f"um exame ({exam})")
        if kind == "file.processed":
            return (
                _pick(lang, f"Result of {which} verified", f"Resultado de {which} verificado"),
                [
                    _pick(
                        lang,
                        f"The result uploaded for {which} was checked: it is a readable PDF and its checksum is "
                        "recorded.",
                        f"O resultado enviado para {which} foi conferido: é um PDF legível e seu checksum foi "
                        "registrado.",
                    ),
                    _pick(
                        lang,
                        "It can now be released to the patient.",
                        "Ele já pode ser liberado ao paciente.",
                    ),
                ],
                None,
            )
        return (
            _pick(lang, f"Result of {which} refused", f"Resultado de {which} recusado"),
            [
                _pick(
                    lang,
                    f"The file uploaded as the result of {which} is not a readable PDF. It was set aside and the "
                    "patient cannot see it.",
                    f"O arquivo enviado como resultado de {which} não é um PDF legível. Ele foi separado e o "
                    "paciente não pode vê-lo.",
                ),
                _pick(
                    lang,
                    "Please upload the result again.",
                    "Envie o resultado novamente.",
                ),
            ],
            None,
        )
    raise ValueError(f"no template for event type {kind!r}")


def render(event: Event) -> Email:
    subject, lines, action = _body(event)
    lang = event.language
    name = _one_line(event.recipient_name, 100)
    greeting = _pick(lang, f"Hello {name},", f"Olá, {name},")
    text_parts = [greeting, *lines]
    html_parts = [f"<p>{html.escape(greeting)}</p>", *(f"<p>{html.escape(line)}</p>" for line in lines)]
    if action:
        label, url = action
        text_parts.append(f"{label}: {url}")
        html_parts.append(f'<p><a href="{html.escape(url, quote=True)}">{html.escape(label)}</a></p>')
    footer = _pick(
        lang,
        f"This message was sent by {CLINIC_NAME}. Please do not reply to it.",
        f"Esta mensagem foi enviada pela {CLINIC_NAME}. Por favor, não responda.",
    )
    text_parts.append(footer)
    html_parts.append(f'<p style="color:#666;font-size:12px">{html.escape(footer)}</p>')
    body_html = (
        f'<!DOCTYPE html><html lang="{lang}"><body style="font-family:sans-serif">'
        + "".join(html_parts)
        + "</body></html>"
    )
    return Email(
        to=event.recipient_email, subject=_one_line(subject, 150), text="\n\n".join(text_parts), html=body_html
    )
