"""Patient and doctor profiles, and a user's own password. The CPF is written through `CpfVault` (a keyed hash to
find it, the value encrypted) and only ever shown masked."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import access_log, cpf, outbox
from clinic_api.accounts import service as accounts
from clinic_api.accounts.service import SAME_PASSWORD, TOO_MANY_GUESSES, WRONG_PASSWORD
from clinic_api.deps import (
    CurrentUser,
    LoginThrottleDep,
    PathId,
    SessionDep,
    SettingsDep,
    current_user,
    require_role,
)
from clinic_api.errors import errors, invalid
from clinic_api.models import Appointment, DoctorProfile, Exam, PatientProfile, User
from clinic_api.schemas import (
    DoctorOut,
    DoctorProfileIn,
    DoctorProfileOut,
    PasswordChange,
    PatientProfileIn,
    PatientProfileOut,
    ProfileOut,
    Text,
    Token,
    UserOut,
)
from clinic_api.security import Principal, issue_token
from clinic_api.settings import Settings
from clinic_api.throttle import client_of

router = APIRouter(tags=["profiles"])
NO_PATIENT = "patient not found"
NO_DOCTOR = "doctor not found"
CPF_TAKEN = "a patient with this CPF exists"
CRM_TAKEN = "a doctor with this CRM number in this state exists"
PATIENTS_ONLY = "{field}: only a patient's profile has this field"
NOT_NULL = "{field} cannot be removed; send a new value instead"
PATIENT_FIELDS = ("date_of_birth", "phone", "emergency_contact_name", "emergency_contact_phone", "cpf")


def vault(settings: Settings) -> cpf.CpfVault:
    return cpf.CpfVault.from_secret(settings.privacy.data_key.get_secret_value())


def profile_out(session: Session, user: User, settings: Settings) -> ProfileOut:
    out = ProfileOut(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=user.role,
        language=user.language,
        disabled=user.disabled_at is not None,
    )
    if user.role == "patient":
        p = session.get(PatientProfile, user.id) or PatientProfile()
        out.patient = PatientProfileOut(
            date_of_birth=p.date_of_birth,
            phone=p.phone,
            emergency_contact_name=p.emergency_contact_name,
            emergency_contact_phone=p.emergency_contact_phone,
            cpf=cpf.masked(vault(settings).decrypt(p.cpf_encrypted)) if p.cpf_encrypted else None,
        )
    if user.role == "doctor" and (d := session.get(DoctorProfile, user.id)):
        out.doctor = DoctorProfileOut.model_validate(d)
    return out


def update_profile(session: Session, user: User, body: PatientProfileIn, settings: Settings) -> None:
    """Applies the fields sent, then emails the owner that their profile changed (not what it now says)."""
    changes = body.model_dump(exclude_unset=True)
    for field in ("full_name", "language", "cpf"):
        if field in changes and changes[field] is None:
            raise invalid(field, NOT_NULL.format(field=field))
    patient_changes = {k: v for k, v in changes.items() if k in PATIENT_FIELDS}
    if patient_changes and user.role != "patient":
        field = next(iter(patient_changes))
        raise invalid(field, PATIENTS_ONLY.format(field=field))
    for field in ("full_name", "language"):
        if field in changes:
            setattr(user, field, changes[field])
    if patient_changes:
        profile = session.get(PatientProfile, user.id) or PatientProfile(user_id=user.id)
        session.add(profile)
        if number := patient_changes.pop("cpf", None):
            secrets = vault(settings)
            profile.cpf_hash, profile.cpf_encrypted = secrets.lookup_hash(number), secrets.encrypt(number)
        for field, value in patient_changes.items():
            setattr(profile, field, value)
    if changes:
        outbox.record(session, "account.updated", {**outbox.recipient(user), "change": "profile"})
    try:
        session.commit()
    except IntegrityError:  # the CPF's hash is unique: one person, one record
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, CPF_TAKEN) from None


@router.get("/me/profile", response_model=ProfileOut)
def my_profile(session: SessionDep, settings: SettingsDep, principal: CurrentUser) -> ProfileOut:
    return profile_out(session, session.get_one(User, principal.id), settings)


@router.patch(
    "/me/profile",
    response_model=ProfileOut,
    responses=errors(r409=CPF_TAKEN, r422="a field's value is refused"),
)
def update_my_profile(
    body: PatientProfileIn, session: SessionDep, settings: SettingsDep, principal: CurrentUser
) -> ProfileOut:
    """Name and language for everyone; date of birth, phone, emergency contact and CPF for patients."""
    user = session.get_one(User, principal.id)
    update_profile(session, user, body, settings)
    return profile_out(session, user, settings)


@router.post(
    "/me/password",
    response_model=Token,
    responses=errors(r400=f"{WRONG_PASSWORD}, or {SAME_PASSWORD}", r429=TOO_MANY_GUESSES),
)
def change_password(
    body: PasswordChange,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    principal: CurrentUser,
) -> Token:
    """Needs the current password: a token left on a shared computer cannot take the account over. Every token
    issued before stops working (signed in elsewhere, or stolen); the caller gets a new one."""
    user = accounts.change_password(
        session, throttle, client_of(request), principal.id, body.current_password, body.new_password
    )
    auth = settings.auth
    return Token(
        access_token=issue_token(user, auth.jwt_secret.get_secret_value(), auth.token_minutes),
        expires_in=auth.token_minutes * 60,
    )


def cares_for(session: Session, doctor_id: int, patient_id: int) -> bool:
    """A doctor's patients: an appointment or an exam with them (the rule of exams.visible)."""
    return bool(
        session.scalar(
            select(
                exists().where(Appointment.doctor_id == doctor_id, Appointment.patient_id == patient_id)
                | exists().where(Exam.doctor_id == doctor_id, Exam.patient_id == patient_id)
            )
        )
    )


def find_patient(session: Session, patient_id: int, caller: Principal) -> User:
    patient = session.get(User, patient_id)
    # 404 for a patient the doctor does not treat: their existence is not confirmed either.
    if patient is None or patient.role != "patient" or patient.erased_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_PATIENT)
    if caller.role == "doctor" and not cares_for(session, caller.id, patient_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_PATIENT)
    return patient


@router.get(
    "/patients/{patient_id}/profile",
    response_model=ProfileOut,
    dependencies=[Depends(require_role("doctor", "staff", "admin"))],
    responses=errors(r404=NO_PATIENT),
)
def patient_profile(
    patient_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, caller: CurrentUser
) -> ProfileOut:
    """Staff and admins: any patient; doctors: their patients. Each read is in the patient's access log."""
    patient = find_patient(session, patient_id, caller)
    access_log.record(session, request, caller.id, "profile.read", [patient.id])
    session.commit()
    return profile_out(session, patient, settings)


@router.patch(
    "/patients/{patient_id}/profile",
    response_model=ProfileOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=errors(r404=NO_PATIENT, r409=CPF_TAKEN),
)
def update_patient_profile(
    patient_id: PathId,
    body: PatientProfileIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CurrentUser,
) -> ProfileOut:
    patient = find_patient(session, patient_id, caller)
    access_log.record(session, request, caller.id, "profile.update", [patient.id])
    update_profile(session, patient, body, settings)
    return profile_out(session, patient, settings)


class CpfLookup(BaseModel):
    cpf: Text = Field(max_length=14, description="11 digits, with or without dots and dash")


@router.post(
    "/patients/lookup",
    response_model=UserOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=errors(r404=NO_PATIENT, r422="cpf is not a valid CPF"),
)
def lookup_by_cpf(
    body: CpfLookup, request: Request, session: SessionDep, settings: SettingsDep, caller: CurrentUser
) -> User:
    """Finds a patient by CPF (a POST: the CPF stays out of URLs and the logs that record them)."""
    if not cpf.is_valid(body.cpf):
        raise invalid("cpf", "is not a valid CPF (its check digits do not match)")
    patient = session.scalar(
        select(User)
        .join(PatientProfile, PatientProfile.user_id == User.id)
        .where(PatientProfile.cpf_hash == vault(settings).lookup_hash(body.cpf), User.erased_at.is_(None))
    )
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_PATIENT)
    access_log.record(session, request, caller.id, "profile.lookup", [patient.id])
    session.commit()
    return patient


def find_doctor(session: Session, doctor_id: int) -> User:
    doctor = session.get(User, doctor_id)
    if doctor is None or doctor.role != "doctor":
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_DOCTOR)
    return doctor


def doctor_out(session: Session, doctor: User) -> DoctorOut:
    profile = session.get(DoctorProfile, doctor.id)
    return DoctorOut(
        id=doctor.id,
        full_name=doctor.full_name,
        profile=DoctorProfileOut.model_validate(profile) if profile else None,
    )


@router.get(
    "/doctors/{doctor_id}",
    response_model=DoctorOut,
    dependencies=[Depends(current_user)],
    responses=errors(r404=NO_DOCTOR),
)
def doctor(doctor_id: PathId, session: SessionDep) -> DoctorOut:
    return doctor_out(session, find_doctor(session, doctor_id))


@router.put(
    "/doctors/{doctor_id}/profile",
    response_model=DoctorOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=errors(r404=NO_DOCTOR, r409=CRM_TAKEN),
)
def set_doctor_profile(doctor_id: PathId, body: DoctorProfileIn, session: SessionDep) -> DoctorOut:
    """Staff keep the doctor's specialty, CRM registration (number and state) and bio."""
    doctor = find_doctor(session, doctor_id)
    profile = session.get(DoctorProfile, doctor.id) or DoctorProfile(user_id=doctor.id)
    for field, value in body.model_dump().items():
        setattr(profile, field, value)
    session.add(profile)
    outbox.record(session, "account.updated", {**outbox.recipient(doctor), "change": "profile"})
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, CRM_TAKEN) from None
    return doctor_out(session, doctor)
