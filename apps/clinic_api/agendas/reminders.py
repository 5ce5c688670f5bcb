"""Reminders: one `appointment.reminder` event per appointment, `reminder_hours_before` its start.

Every API replica runs the loop; the database decides who sends what. A pass claims due appointments with one
`UPDATE ... SET reminder_sent_at = now() ... RETURNING`, whose rows come from `SELECT ... FOR UPDATE SKIP LOCKED`,
and writes their events in the same transaction. A concurrent pass skips the rows the first one holds; one that
starts after it committed sees `reminder_sent_at` set. So each reminder event is written once, and the outbox → SQS
→ notifier path (idempotent on the event id) turns it into one email. A reschedule clears `reminder_sent_at`."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.appointments.service import notice
from clinic_api.models import Appointment
from clinic_api.settings import AgendaSettings
from clinic_common.logging import Outage

log = logging.getLogger("clinic.reminders")
REMINDERS = Counter("clinic_appointment_reminders_total", "Appointment reminders written to the outbox")
BATCH = 200


def remind_due(session: Session, agenda: AgendaSettings, now: datetime | None = None) -> list[int]:
    """Claims the confirmed appointments starting within the reminder window that have had no reminder, writes one
    event each, commits; returns their ids."""
    now = now or datetime.now(UTC)
    due = (
        select(Appointment.id)
        .where(
            Appointment.status == "confirmed",
            Appointment.reminder_sent_at.is_(None),
            Appointment.starts_at > now,
            Appointment.starts_at <= now + timedelta(hours=agenda.reminder_hours_before),
        )
        .order_by(Appointment.starts_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    claimed = session.scalars(
        update(Appointment)
        # Checked again on the row's latest version, should it have changed since this statement's snapshot.
        .where(Appointment.id.in_(due), Appointment.reminder_sent_at.is_(None), Appointment.status == "confirmed")
        .values(reminder_sent_at=now)
        .returning(Appointment),
        execution_options={"synchronize_session": False},
    ).all()
    for appointment in claimed:
        outbox.record(session, "appointment.reminder", notice(session, appointment, agenda.time_zone))
    session.commit()
    REMINDERS.inc(len(claimed))
    return [a.id for a in claimed]


class Reminders(threading.Thread):
    """The periodic pass, in the API process (every replica: the claim makes it safe)."""

    def __init__(self, engine: Any, agenda: AgendaSettings):
        super().__init__(name="appointment-reminders", daemon=True)
        self.engine, self.agenda = engine, agenda
        self.stopping = threading.Event()
        self.outage = Outage(log, "reminder pass")

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with Session(self.engine) as session:
                    while not self.stopping.is_set() and len(remind_due(session, self.agenda)) == BATCH:
                        pass
            except Exception:  # noqa: BLE001 - the loop must outlive a database restart
                self.outage.failed()
            else:
                self.outage.succeeded()
            self.stopping.wait(self.agenda.reminder_interval_seconds)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
