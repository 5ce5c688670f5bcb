"""The portal's sessions (clinic_api.web.session)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic_api.models import Base, now


class WebSession(Base):
    """A signed-in browser. The cookie holds a random id; the row holds only its SHA-256, so that reading this table
    (a backup, a replica) signs nobody in."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The account's token_version at sign-in: raising it (security.revoke_tokens: a new password, "sign out
    # everywhere", erasure) ends the portal's sessions as it ends the API's tokens.
    token_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
