"""Idempotency: an event id is claimed in PostgreSQL before its email is sent, and marked sent afterwards.

States of a row in ``notifier_sent_events``:
- ``claimed``: a worker is sending it. A claim older than the lease (the queue's visibility timeout) belongs to a
  worker that died mid-batch, and the next worker to receive the event takes it over.
- ``sent``: SES accepted the email; any later copy of the event is deleted without sending.

The remaining window, a crash between SES accepting an email and the row being marked sent, resends it once after
the lease: SES has no idempotency key, so at-least-once is the best available there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

TABLE = "notifier_sent_events"

DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    event_id uuid PRIMARY KEY,
    event_type text NOT NULL,
    status text NOT NULL CHECK (status IN ('claimed', 'sent')),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    ses_message_id text
)
"""

# One round trip: insert new claims, take over stale ones, and report what happened to each id. The outer SELECT
# sees the table as it was before the INSERT (same snapshot), so `existing` is the status another worker left.
_CLAIM = text(f"""
WITH incoming AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[])) AS t(event_id, event_type)
), claimed AS (
    INSERT INTO {TABLE} AS s (event_id, event_type, status, claimed_at)
    SELECT event_id, event_type, 'claimed', now() FROM incoming
    ON CONFLICT (event_id) DO UPDATE SET claimed_at = now()
        WHERE s.status = 'claimed' AND s.claimed_at < now() - make_interval(secs => :lease)
    RETURNING s.event_id
)
SELECT CAST(i.event_id AS text) AS event_id, c.event_id IS NOT NULL AS claimed, s.status AS existing
FROM incoming i
LEFT JOIN claimed c ON c.event_id = i.event_id
LEFT JOIN {TABLE} s ON s.event_id = i.event_id
""")

_MARK_SENT = text(f"""
UPDATE {TABLE} AS s SET status = 'sent', sent_at = now(), ses_message_id = t.message_id
FROM unnest(CAST(:ids AS uuid[]), CAST(:message_ids AS text[])) AS t(event_id, message_id)
WHERE s.event_id = t.event_id
""")

_RELEASE = text(f"DELETE FROM {TABLE} WHERE event_id = ANY(CAST(:ids AS uuid[])) AND status = 'claimed'")


@dataclass(frozen=True)
class ClaimResult:
    claimed: frozenset[str]
    """Ids this worker now owns: send them."""
    already_sent: frozenset[str]
    """Ids sent before: delete their messages without sending."""
    in_progress: frozenset[str]
    """Ids another live worker is sending: leave their messages for redelivery."""


class SentEventStore:
    def __init__(self, engine: Engine, *, claim_lease_seconds: float = 30.0):
        self.engine = engine
        self.claim_lease_seconds = claim_lease_seconds

    def create_table(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(DDL))

    def ping(self) -> None:
        """Raises unless PostgreSQL answers and the table exists (python -m notifier.migrate has run)."""
        with self.engine.connect() as conn:
            conn.execute(text(f"SELECT 1 FROM {TABLE} LIMIT 1"))

    def claim(self, events: Sequence[tuple[str, str]]) -> ClaimResult:
        """Claim (event_id, event_type) pairs; ids must be distinct."""
        if not events:
            return ClaimResult(frozenset(), frozenset(), frozenset())
        with self.engine.begin() as conn:
            rows = conn.execute(
                _CLAIM,
                {
                    "ids": [e[0] for e in events],
                    "types": [e[1] for e in events],
                    "lease": float(self.claim_lease_seconds),
                },
            ).all()
        claimed = {r.event_id for r in rows if r.claimed}
        sent = {r.event_id for r in rows if not r.claimed and r.existing == "sent"}
        busy = {r.event_id for r in rows if not r.claimed and r.existing != "sent"}
        return ClaimResult(frozenset(claimed), frozenset(sent), frozenset(busy))

    def finish(self, sent: dict[str, str], released: Iterable[str]) -> None:
        """Mark ``sent`` (event id -> SES message id) as sent and drop the claims in ``released``."""
        released = list(released)
        if not sent and not released:
            return
        with self.engine.begin() as conn:
            if sent:
                conn.execute(_MARK_SENT, {"ids": list(sent), "message_ids": list(sent.values())})
            if released:
                conn.execute(_RELEASE, {"ids": released})
