"""Paged lists (clinic_api/pagination.py): `GET /appointments`, `GET /exams` and the per-object lists (an exam's
audit trail and results, closures, a doctor's exceptions) a page at a time on the real
PostgreSQL, the next page in the `Link` header, rows inserted between fetches, bounds, and cursors that were altered
or belong to someone else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import running_clinic
from sqlalchemy import text
from sqlalchemy.orm import Session

from clinic_api.agendas.models import ScheduleException
from clinic_api.models import Appointment, AuditLog, Consent, Exam, ExamResult
from clinic_api.pagination import PAGE_DEFAULT, PAGE_MAX

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def add_appointment(clinic, patient: dict, doctor: dict, starts_at: datetime) -> int:
    with Session(clinic.app.state.engine) as session:
        appointment = Appointment(
            patient_id=patient["id"],
            doctor_id=doctor["id"],
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=30),
            kind="in_person",
            status="confirmed",
        )
        session.add(appointment)
        session.commit()
        return appointment.id


def add_exam(clinic, patient: dict) -> int:
    with Session(clinic.app.state.engine) as session:
        exam = Exam(patient_id=patient["id"], exam_type="blood count", status="requested")
        session.add(exam)
        session.commit()
        return exam.id


def walk(clinic, path: str, headers: dict, between=lambda page: None, key=lambda item: item["id"]) -> list[list[int]]:
    """Every page's ids (`key`), following `Link: rel="next"` until a page has none; `between(n)` runs after page n."""
    pages, url = [], path
    while url:
        response = clinic.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)  # the body is the list, as before pages
        pages.append([key(item) for item in response.json()])
        between(len(pages))
        url = response.links.get("next", {}).get("url")
        assert len(pages) < 50, "the walk does not end"
    return pages


def field_errors(response) -> list[str]:
    assert response.status_code == 422, response.text
    return [e["field"] for e in response.json()["errors"]]


def test_a_patient_walks_every_appointment_once_in_order_while_others_are_booked(clinic):
    patient, other = clinic.user("patient"), clinic.user("patient")
    first, second = clinic.user("doctor"), clinic.user("doctor")
    ids = []
    for hour in range(8):  # two at each of some instants (two doctors): the id decides between them
        ids.append(add_appointment(clinic, patient, first, START + timedelta(hours=hour)))
        if hour % 3 == 0:
            ids.append(add_appointment(clinic, patient, second, START + timedelta(hours=hour)))
    add_appointment(clinic, other, first, START + timedelta(hours=20))  # another patient's: never listed
    with clinic.app.state.engine.begin() as db:  # instants Python cannot hold, read as the same 9999-12-31
        for starts_at in ("10000-01-01 00:00:00+00", "20000-01-01 00:00:00+00"):
            ids.append(
                db.execute(
                    text(
                        "INSERT INTO appointments (patient_id, doctor_id, starts_at, ends_at, kind, status) VALUES"
                        " (:p, :d, CAST(:s AS timestamptz), CAST(:s AS timestamptz) + interval '30 minutes',"
                        " 'in_person', 'confirmed') RETURNING id"
                    ),
                    {"p": patient["id"], "d": first["id"], "s": starts_at},
                ).scalar_one()
            )
    inserted = []

    def book_more(page: int) -> None:
        # Behind the walk (earlier than anything left): not shown. Ahead of it: shown once, in its place.
        add_appointment(clinic, patient, second, START - timedelta(hours=page))
        inserted.append(add_appointment(clinic, patient, second, START + timedelta(hours=8 + page)))

    pages = walk(clinic, "/appointments?limit=3", patient["headers"], between=book_more)
    seen = [i for page in pages for i in page]
    assert all(len(page) == 3 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 3
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in ids] == ids  # each once, in the order of start then id
    assert [i for i in seen if i not in ids] == inserted[: len(seen) - len(ids)] and len(seen) > len(ids)
    every = [a["id"] for a in clinic.client.get(f"/appointments?limit={PAGE_MAX}", headers=patient["headers"]).json()]
    assert [i for i in every if i in seen] == seen  # the walk's order is the list's order
    # A page boundary at every row, the one between the two instants read as 9999-12-31 included.
    assert [i for page in walk(clinic, "/appointments?limit=1", patient["headers"]) for i in page] == every


def test_exams_are_walked_newest_first_each_once_while_new_ones_are_ordered(clinic):
    patient, doctor = clinic.user("patient"), clinic.user("doctor")
    for _ in range(7):
        add_exam(clinic, patient)
    add_appointment(clinic, patient, doctor, START)  # the doctor's patient: the doctor lists their exams too
    for who in (patient, doctor):
        with Session(clinic.app.state.engine) as session:
            ids = list(session.scalars(text("SELECT id FROM exams ORDER BY id DESC")))
        # New exams (newer than the walk's start) sort before the walk's position: the walk shows each old one once.
        pages = walk(clinic, "/exams?limit=2", who["headers"], between=lambda _: add_exam(clinic, patient))
        assert all(len(page) == 2 for page in pages[:-1])
        assert [i for page in pages for i in page] == ids


def test_the_link_keeps_the_requests_other_parameters_and_the_last_page_has_none(clinic):
    patient = clinic.user("patient")
    for _ in range(3):
        add_exam(clinic, patient)
    response = clinic.client.get("/exams?limit=2", headers=patient["headers"])
    link = response.headers["link"]
    assert link.startswith("</exams?") and link.endswith('>; rel="next"') and "limit=2" in link
    last = clinic.client.get(response.links["next"]["url"], headers=patient["headers"])
    assert len(last.json()) == 1 and "link" not in last.headers
    whole = clinic.client.get("/exams?limit=3", headers=patient["headers"])
    assert len(whole.json()) == 3 and "link" not in whole.headers  # exactly a page: no empty page announced


def test_limit_is_bounded_and_defaults(clinic):
    patient = clinic.user("patient")
    for path in ("/appointments", "/exams"):
        for bad in ("0", "-1", str(PAGE_MAX + 1), "ten", "2147483648"):
            assert field_errors(clinic.client.get(f"{path}?limit={bad}", headers=patient["headers"])) == ["limit"]
        assert clinic.client.get(f"{path}?limit={PAGE_MAX}", headers=patient["headers"]).status_code == 200
    with Session(clinic.app.state.engine) as session:
        session.add_all(Exam(patient_id=patient["id"], exam_type="x", status="requested") for _ in range(PAGE_DEFAULT))
        session.add(Exam(patient_id=patient["id"], exam_type="x", status="requested"))
        session.commit()
    response = clinic.client.get("/exams", headers=patient["headers"])
    assert len(response.json()) == PAGE_DEFAULT and "next" in response.links


def test_a_garbled_or_altered_cursor_is_a_422_naming_cursor(clinic):
    patient, doctor = clinic.user("patient"), clinic.user("doctor")
    for hour in range(3):
        add_appointment(clinic, patient, doctor, START + timedelta(hours=hour))
        add_exam(clinic, patient)
    cursors = {}
    for path in ("/appointments", "/exams"):
        link = clinic.client.get(f"{path}?limit=1", headers=patient["headers"]).links["next"]["url"]
        cursors[path] = link.split("cursor=")[1].split("&")[0]
    exam_cursor, appointment_cursor = cursors["/exams"], cursors["/appointments"]
    payload, signature = appointment_cursor.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    garbled = [
        "",
        "x",
        "abc.def",
        "....",
        "é.é",
        "%00",
        f"{flipped}.{signature}",  # a position of the caller's choosing
        f"{payload}.{signature[:-1]}",
        exam_cursor,  # another list's
        "A" * 600,
    ]
    for cursor in garbled:
        response = clinic.client.get("/appointments", params={"cursor": cursor}, headers=patient["headers"])
        assert field_errors(response) == ["cursor"], cursor
    for cursor in (appointment_cursor, "x"):
        response = clinic.client.get("/exams", params={"cursor": cursor}, headers=patient["headers"])
        assert field_errors(response) == ["cursor"], cursor


def test_a_patients_cursor_shows_another_patient_nothing(clinic):
    ana, bia, doctor = clinic.user("patient"), clinic.user("patient"), clinic.user("doctor")
    for hour in range(4):
        add_appointment(clinic, ana, doctor, START + timedelta(days=1, hours=hour))
        add_exam(clinic, ana)
    add_appointment(clinic, bia, doctor, START + timedelta(days=1, hours=10))
    add_exam(clinic, bia)
    for path in ("/appointments", "/exams"):
        link = clinic.client.get(f"{path}?limit=1", headers=ana["headers"]).links["next"]["url"]
        assert field_errors(clinic.client.get(link, headers=bia["headers"])) == ["cursor"]
        assert field_errors(clinic.client.get(link, headers=doctor["headers"])) == ["cursor"]  # it is Ana's
        bias = [item for page in walk(clinic, f"{path}?limit=1", bia["headers"]) for item in page]
        assert len(bias) == 1
        doctors = [item for page in walk(clinic, f"{path}?limit=1", doctor["headers"]) for item in page]
        assert len(doctors) == 5  # the doctor's own walk: both patients'


# --- The account and privacy lists: one clinic (one database) for all of them ------------------------------------


@pytest.fixture(scope="module")
def lists(postgres, shared_clinic_aws):
    """A clinic with a few rows in each account and privacy list, and who reads them."""
    with running_clinic(postgres, shared_clinic_aws) as clinic:
        people = {
            role: clinic.user(role.rstrip("2"))
            for role in ("staff", "staff2", "admin", "admin2", "patient", "patient2")
        }
        people["doctors"] = [clinic.user("doctor") for _ in range(5)]
        with Session(clinic.app.state.engine) as session:
            session.add_all(
                Consent(user_id=people["patient"]["id"], notice_version="2026-11", purposes=["care"] * (n % 2 + 1))
                for n in range(5)
            )
            session.commit()
        for _ in range(5):  # five rows in the patient's access log, and the staff's in the audit log
            clinic.client.get(f"/patients/{people['patient']['id']}/profile", headers=people["staff"]["headers"])
        clinic.people = people
        yield clinic


# path, reader, another caller of the reader's role, the same list under another filter (or None), an item's check
LISTS = {
    "users": ("/users?role=doctor", "staff", "staff2", "/users?role=patient", lambda item, p: item["role"] == "doctor"),
    "doctors": ("/doctors", "patient", "patient2", None, lambda item, p: item["role"] == "doctor"),
    "consents": ("/me/consents", "patient", "patient2", None, lambda item, p: item["notice_version"] == "2026-11"),
    "access-log": ("/me/access-log", "patient", "patient2", None, lambda item, p: item["who_id"] == p["staff"]["id"]),
    "audit": (
        "/audit?user_id={staff}",
        "admin",
        "admin2",
        "/audit?user_id={admin}",
        lambda item, p: item["user_id"] == p["staff"]["id"],
    ),
}


def pages_of(clinic, path: str, headers: dict) -> tuple[list[list[dict]], list[str]]:
    """Every page's items and the cursor of each page but the first, following `Link: rel="next"`."""
    pages, cursors, url = [], [], path
    while url:
        response = clinic.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        url = response.links.get("next", {}).get("url")
        if url:
            cursors.append(url.split("cursor=")[1].split("&")[0])
        assert len(pages) < 50, "the walk does not end"
    return pages, cursors


@pytest.mark.parametrize("name", LISTS)
def test_account_and_privacy_lists_walk_each_row_once_and_refuse_others_cursors(lists, name):
    path, reader, other, other_filter, check = LISTS[name]
    people = lists.people
    ids = {key: people[key]["id"] for key in ("staff", "admin")}
    path, headers = path.format(**ids), people[reader]["headers"]
    join = "&" if "?" in path else "?"
    whole = clinic_get(lists, f"{path}{join}limit={PAGE_MAX}", headers)
    assert len(whole) >= 5 and all(check(item, people) for item in whole), "the filter applies"

    pages, cursors = pages_of(lists, f"{path}{join}limit=2", headers)  # the walk keeps the filter in its Link
    assert [item for page in pages for item in page] == whole, "each row once, in the list's order"
    assert all(len(page) == 2 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 2  # the last page has no Link

    for bad in ("0", str(PAGE_MAX + 1)):
        assert field_errors(lists.client.get(f"{path}{join}limit={bad}", headers=headers)) == ["limit"]
    cursor = cursors[0]
    refused = [
        (f"{path}{join}cursor={cursor}", people[other]["headers"]),  # someone else's
        (f"/exams?cursor={cursor}", headers),  # another list's
    ]
    if other_filter:  # the same list under another filter: a list of its own
        refused.append((f"{other_filter.format(**ids)}&cursor={cursor}", headers))
    for url, caller in refused:
        assert field_errors(lists.client.get(url, headers=caller)) == ["cursor"], url
    for other_name, (other_path, other_reader, *_) in LISTS.items():
        if other_name != name and other_reader == reader:  # the same caller's other lists refuse it too
            other_path = other_path.format(**ids)
            url = f"{other_path}{'&' if '?' in other_path else '?'}cursor={cursor}"
            assert field_errors(lists.client.get(url, headers=headers)) == ["cursor"], url


def clinic_get(clinic, url: str, headers: dict) -> list[dict]:
    response = clinic.client.get(url, headers=headers)
    assert response.status_code == 200 and "link" not in response.headers, response.text
    return response.json()


def test_a_page_of_accounts_is_in_its_patients_access_logs_and_reading_the_audit_log_records_the_position(lists):
    people = lists.people
    staff, admin, patient = people["staff"], people["admin"], people["patient"]
    patient_ids = [people[p]["id"] for p in ("patient", "patient2")]
    first = lists.client.get("/users?role=patient&limit=1", headers=staff["headers"])
    following = lists.client.get(first.links["next"]["url"], headers=staff["headers"])
    assert [[u["id"] for u in r.json()] for r in (first, following)] == [[patient_ids[0]], [patient_ids[1]]]
    log = lists.client.get("/me/access-log?limit=1", headers=patient["headers"]).json()
    assert [(e["who_id"], e["action"]) for e in log] == [(staff["id"], "accounts.list")]

    top = lists.client.get(f"/audit?user_id={staff['id']}&limit=1", headers=admin["headers"])
    lists.client.get(top.links["next"]["url"], headers=admin["headers"])
    reads = lists.client.get(f"/audit?action=audit.read&user_id={admin['id']}&limit=2", headers=admin["headers"])
    assert [r["detail"] for r in reads.json()] == [
        {"user_id": staff["id"], "after_id": top.json()[0]["id"]},  # the decoded position, not the signed cursor
        {"user_id": staff["id"]},
    ]


# --- per-object lists: an exam's audit trail and result history, the clinic's closures, a doctor's exceptions -------

FAR = datetime(2099, 3, 1, 12, tzinfo=UTC)
TAG = "paging test"


@pytest.fixture(scope="module")
def object_lists(postgres, shared_clinic_aws):
    """One clinic (its own database) with five rows in each per-object list, and who may read it: the clinic, and
    {name: (path, headers, ids in the list's order, the id of one that ended long ago)}."""
    with running_clinic(postgres, shared_clinic_aws) as clinic:
        yield clinic, _object_lists(clinic)


def _object_lists(clinic) -> dict:
    staff, patient = clinic.user("staff"), clinic.user("patient")
    doctor = clinic.user("doctor")
    exam = add_exam(clinic, patient)
    with Session(clinic.app.state.engine) as session:
        audit = [
            AuditLog(user_id=staff["id"], action="result.download", exam_id=exam, outcome="granted", detail={"n": n})
            for n in range(5)
        ]
        results = [ExamResult(exam_id=exam, result_key=f"exams/{exam}/{n}.pdf") for n in range(5)]
        # Pairs share a start: the id decides between them, and ids given in descending order are stored in the
        # reverse of it (so only the id orders them). One ended long ago: listed on request.
        starts = [FAR, FAR + timedelta(days=2), FAR + timedelta(days=1), FAR + timedelta(days=1), FAR]
        closures, exceptions = (
            [exception(owner, start, base - n) for n, start in enumerate(starts)]
            for owner, base in ((None, 10**6), (doctor["id"], 2 * 10**6))
        )
        past = [exception(owner, datetime(2001, 1, 1, tzinfo=UTC)) for owner in (None, doctor["id"])]
        session.add_all([*audit, *results, *closures, *exceptions, *past])
        session.commit()
        by_start = (
            sorted(closures, key=lambda c: (c.starts_at, c.id)),
            sorted(exceptions, key=lambda e: (e.starts_at, e.id)),
        )
        return {
            "audit": (f"/exams/{exam}/audit", staff["headers"], list(reversed(range(5))), None),
            "results": (f"/exams/{exam}/results", staff["headers"], [r.id for r in reversed(results)], None),
            "closures": ("/closures", patient["headers"], [c.id for c in by_start[0]], past[0].id),
            "exceptions": (
                f"/doctors/{doctor['id']}/exceptions",
                doctor["headers"],
                [e.id for e in by_start[1]],
                past[1].id,
            ),
        }


def exception(doctor_id: int | None, starts_at: datetime, id: int | None = None) -> ScheduleException:
    ends_at = starts_at + timedelta(hours=4)
    return ScheduleException(id=id, doctor_id=doctor_id, starts_at=starts_at, ends_at=ends_at, reason=TAG)


@pytest.mark.parametrize("name", ["audit", "results", "closures", "exceptions"])
def test_per_object_lists_are_walked_each_row_once_in_order_and_bounded(object_lists, name):
    clinic, lists = object_lists
    path, headers, ids, past = lists[name]
    for bad in ("0", str(PAGE_MAX + 1)):
        assert field_errors(clinic.client.get(f"{path}?limit={bad}", headers=headers)) == ["limit"], bad
    key = (lambda entry: entry["detail"]["n"]) if name == "audit" else (lambda item: item["id"])  # no id in an entry
    pages = walk(clinic, f"{path}?limit=2", headers, key=key)
    seen = [i for page in pages for i in page]
    assert all(len(page) == 2 for page in pages[:-1]) and pages[-1] and len(pages) >= 3
    assert len(seen) == len(set(seen)) and [i for i in seen if i in ids] == ids
    if past is not None:  # by default only the ones not ended yet; the whole history on request, the oldest first
        assert past not in seen
        every = [i for page in walk(clinic, f"{path}?include_past=true&limit=2", headers) for i in page]
        assert [i for i in every if i in [past, *ids]] == [past, *ids]


def test_a_per_object_lists_cursor_is_refused_on_another_object_list_or_caller(object_lists):
    clinic, lists = object_lists
    staff = clinic.user("staff")
    other_exam, other_doctor = add_exam(clinic, clinic.user("patient")), clinic.user("doctor")
    cursors = {}
    for name, (path, headers, _, _) in lists.items():
        cursors[name] = clinic.client.get(f"{path}?limit=1", headers=headers).links["next"]["url"].split("cursor=")[1]
    audit, results, closures, exceptions = (lists[name][0] for name in ("audit", "results", "closures", "exceptions"))
    staff_cursor = clinic.client.get(f"{exceptions}?limit=1", headers=staff["headers"]).links["next"]["url"]
    staff_cursor = staff_cursor.split("cursor=")[1]
    refused = [
        (f"/exams/{other_exam}/audit", cursors["audit"], lists["audit"][1]),  # another exam's trail
        (f"/exams/{other_exam}/results", cursors["results"], lists["audit"][1]),
        (results, cursors["audit"], lists["audit"][1]),  # another list of the same exam
        (audit, cursors["audit"], staff["headers"]),  # another caller's
        (exceptions, cursors["closures"], staff["headers"]),
        (exceptions, cursors["exceptions"], staff["headers"]),
        (f"/doctors/{other_doctor['id']}/exceptions", staff_cursor, staff["headers"]),  # another doctor's
        (closures, cursors["closures"], staff["headers"]),
        (closures, cursors["exceptions"], lists["exceptions"][1]),
    ]
    for path, cursor, headers in refused:
        assert field_errors(clinic.client.get(path, params={"cursor": cursor}, headers=headers)) == ["cursor"], path
