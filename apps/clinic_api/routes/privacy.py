"""A patient's rights under the LGPD (Lei 13.709/2018, art. 18): their consents, who accessed their data, a copy of
all of it, and erasure of what the law lets go (medical records are kept: see the README, "Erasure"); and the
clinic's audit log for staff. The rules live in privacy/service.py, shared with the portal's pages."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query, Request, Response

from clinic_api import pagination
from clinic_api.accounts.service import TOO_MANY_GUESSES
from clinic_api.deps import CurrentUser, S3Dep, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors
from clinic_api.models import Consent
from clinic_api.privacy import service
from clinic_api.privacy.service import WRONG_PASSWORD
from clinic_api.schemas import (
    AccessEntry,
    AuditRow,
    ConsentIn,
    ConsentOut,
    ErasureOut,
    ErasureRequest,
    PatientExport,
    PrivacyNotice,
    Purpose,
)

router = APIRouter(tags=["privacy"])
PATIENT = require_role("patient")
ERASURE_ERRORS = errors(r400=WRONG_PASSWORD, r429=TOO_MANY_GUESSES)
Filter = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


@router.get("/privacy/notice", response_model=PrivacyNotice)
def notice(settings: SettingsDep) -> PrivacyNotice:
    """The privacy notice in force: its version (sign-up and consent changes name it) and the purposes it lists."""
    return PrivacyNotice(version=settings.privacy.notice_version, purposes=list(get_args(Purpose)))


@router.get(
    "/me/consents", response_model=list[ConsentOut], dependencies=[Depends(PATIENT)], responses=pagination.NEXT_PAGE
)
def consents(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[Consent]:
    """Every consent the patient gave, oldest first, a page at a time (the next page's URL in the `Link` header); the
    last one of the last page is in force."""
    page, following = service.consent_page(session, request, user.id, limit, cursor)
    pagination.link_next(request, response, following)
    return page


@router.post(
    "/me/consents",
    response_model=ConsentOut,
    status_code=201,
    dependencies=[Depends(PATIENT)],
    responses=errors(r422="notice_version is not the one in force, or care is missing"),
)
def change_consent(
    body: ConsentIn, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> Consent:
    """Records the patient's choices as a new entry; earlier entries stay in the history."""
    return service.change_consent(session, request, settings, user.id, body.notice_version, body.purposes)


@router.get(
    "/me/access-log", response_model=list[AccessEntry], dependencies=[Depends(PATIENT)], responses=pagination.NEXT_PAGE
)
def my_access_log(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[AccessEntry]:
    """Who read or changed the patient's data (not the patient themself): who, what, when, from where; newest first,
    a page at a time (the next page's URL in the `Link` header)."""
    page, following = service.access_page(session, request, user.id, limit, cursor)
    pagination.link_next(request, response, following)
    return page


@router.get("/me/export", response_model=PatientExport, dependencies=[Depends(PATIENT)])
def export(request: Request, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser) -> PatientExport:
    """Everything the clinic holds about the patient, as one JSON document (LGPD art. 18 II and V); result files as
    presigned links valid for `download_expires_in` seconds. The export itself is audited."""
    return service.export(session, request, settings, s3, user.id)


@router.post("/me/erasure", response_model=ErasureOut, dependencies=[Depends(PATIENT)], responses=ERASURE_ERRORS)
def erase(
    body: ErasureRequest, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> ErasureOut:
    """Deletes the patient's account (LGPD art. 18 VI): contact data and login are erased, future appointments
    cancelled; the medical record is kept, marked with the date until which the law requires it (art. 16 I; Lei
    13.787/2018 art. 6). The request and its outcome are audited; the account's tokens stop working. Wrong passwords
    count as failed sign-ins (429 after as many as sign-in allows)."""
    return service.erase(session, request, settings, user.id, body.password)


@router.get(
    "/audit",
    response_model=list[AuditRow],
    tags=["audit"],
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=pagination.NEXT_PAGE,
)
def audit_log(
    request: Request,
    response: Response,
    session: SessionDep,
    caller: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
    action: Annotated[str | None, Query(min_length=1, max_length=60, pattern=r"^[a-z_.]+$")] = None,
    user_id: Filter = None,
    subject_id: Filter = None,
) -> list[AuditRow]:
    """The clinic's audit log, newest first, a page at a time (the next page's URL in the `Link` header, the filters
    kept): result downloads and exam changes, reads of patients' data by others, account changes, exports and
    erasures. Filters: one `action`, one actor (`user_id`), one subject (`subject_id`, e.g. a patient); a cursor of
    one filtered walk is refused on another. Each read of it is a row itself (`audit.read`)."""
    page, following = service.audit_page(session, request, caller, limit, cursor, action, user_id, subject_id)
    pagination.link_next(request, response, following)
    return page
