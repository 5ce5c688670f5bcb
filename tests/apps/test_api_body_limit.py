"""Every JSON endpoint refuses a body over the limit with 413 before reading it whole (over real HTTP: raw sockets
show that the answer comes while the client is still sending)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from api_support import served_clinic, status_and_detail

from clinic_api.body_limit import TOO_LARGE

LIMIT = 2048
PDF = b"%PDF-1.7\n" + b"0" * (4 * LIMIT) + b"\n%%EOF\n"


def exchange(url: str, head: bytes, *chunks: bytes) -> tuple[int, dict]:
    """Sends a request head and `chunks` of its body (never ending the body) and reads the answer, which must come
    without the rest of the body (a 10 s timeout otherwise)."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn, conn.makefile("rb") as answer:
        conn.sendall(head + b"".join(chunks))
        status = int(answer.readline().split()[1])
        headers = {}
        while line := answer.readline().strip():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return status, json.loads(answer.read(int(headers[b"content-length"])))


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_of_the_body(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws, max_body_bytes=LIMIT) as clinic:
        head = (
            b"POST /auth/login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        assert exchange(str(clinic.client.base_url), head) == (413, {"detail": TOO_LARGE.format(limit=LIMIT)})


def test_a_chunked_body_is_refused_once_its_bytes_pass_the_limit_while_it_is_still_being_sent(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws, max_body_bytes=LIMIT) as clinic:
        head = (
            b"POST /auth/login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1 KiB each; the terminating 0-chunk never comes
        assert exchange(str(clinic.client.base_url), head, chunk, chunk, chunk) == (
            413,
            {"detail": TOO_LARGE.format(limit=LIMIT)},
        )


def test_bodies_within_the_limit_and_result_uploads_past_it_are_served(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws, max_body_bytes=LIMIT) as clinic:
        staff, patient = clinic.user("staff"), clinic.user("patient")  # logins: JSON bodies under the limit
        padded = {"patient_id": patient["id"], "exam_type": "MRI " + "x" * 100}
        exam = clinic.client.post("/exams", headers=staff["headers"], json=padded)
        assert exam.status_code == 201, exam.text
        too_long = clinic.client.post("/exams", headers=staff["headers"], content=b" " * (LIMIT + 1))
        assert status_and_detail(too_long) == (413, TOO_LARGE.format(limit=LIMIT))
        upload = clinic.client.put(
            f"/exams/{exam.json()['id']}/result",
            headers={**staff["headers"], "Content-Type": "application/pdf"},
            content=PDF,
        )
        assert upload.status_code == 200, "the upload keeps its own limit (storage.max_upload_bytes)"
