"""ClinicApps: what the clinic's API, notifier and file processor share on the cluster — the restricted namespace,
the API's signing key, the public ALB and the network policies — and one AppWorkload per app (its IRSA role,
migrations, hardened Deployment, Service, autoscaler and disruption budget). The images come resolved from
ImageRegistry."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.app_workload import AppWorkload, AppWorkloadArgs, Shutdown
from components.cluster import Cluster
from components.lb_controller import LoadBalancerController
from limits import APP_DB_POOL_SIZE, FILE_PROCESSOR_DB_POOL_SIZE, FILE_PROCESSOR_REPLICAS
from limits.capacity import API_POD, FILE_PROCESSOR_POD, NOTIFIER_POD

# Kubernetes specs are written here as dicts in the API's own camelCase (components/app_workload.py says why:
# pulumi/pulumi#16646).

NAMESPACE = "clinic"
API_PORT = 8000
NOTIFIER_PORT = 8080
FILE_PROCESSOR_PORT = 8080
EXAM_PREFIX = "exams/"
# Where the file processor moves a result that is not a readable PDF (`quarantine/exams/...`): outside the API's
# reach, whose role reads EXAM_PREFIX only.
QUARANTINE_PREFIX = "quarantine/"
# Notifier consumes these event domains; the file queue is the file processor's.
NOTIFIER_DOMAINS = ("account", "appointment", "exam", "exam-result")
FILE_DOMAIN = "file"
# The ALB's TLS policy: TLS 1.3, and TLS 1.2 with forward-secret AEAD ciphers only ("Res": restricted).
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
# ACM validates a DNS record within minutes once it resolves; the wait stops well before a CI job's limit.
CERTIFICATE_VALIDATION_TIMEOUT = "30m"
# The ALB action (an Ingress backend by that name) that answers /metrics from the internet with a 404.
METRICS_NOT_PUBLIC = "metrics-not-public"
# AWS limits load balancer names to 32 characters: letters, digits and hyphens.
ALB_NAME_MAX = 32

# A rollout behind the ALB (IP targets) drops no request when these line up (tests/infra/test_clinic_apps.py checks
# them against each other and against the apps' own limits):
# - a new API pod is Ready only once the ALB calls its target healthy (the namespace injects the readiness gate), so
#   the old one is not stopped before;
# - a leaving API pod keeps serving through its preStop wait: the controller needs a few seconds to see the endpoint
#   go and deregister the target, then the ALB drains requests in flight for the deregistration delay;
# - then SIGTERM: the app stops accepting, finishes what is in flight within its own timeout and exits, all before the
#   grace period ends and the kubelet kills it.
DEREGISTRATION_DELAY_SECONDS = 30
"""Target group attribute: how long the ALB keeps a deregistering target for its requests in flight."""
DEREGISTRATION_LAG_SECONDS = 10
"""Allowance for the controller to see the pod leave its endpoints and call DeregisterTargets."""
API_PRESTOP_SECONDS = 40
"""kubelet sleep before the API gets SIGTERM."""
API_DRAIN_SECONDS = 20
"""UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN: requests in flight at SIGTERM get this long to finish."""
API_STOP_SECONDS = 10
"""What the API does after draining at most (the outbox relay's batch in hand; apps/clinic_api/README.md)."""
API_GRACE_SECONDS = 75
"""terminationGracePeriodSeconds of API pods."""
NOTIFIER_WAIT_SECONDS = 20
"""NOTIFIER_WAIT_SECONDS: the SQS long poll a SIGTERM may find in flight."""
NOTIFIER_SHUTDOWN_SECONDS = 30
"""NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS: the long poll in flight and its batch, sent, recorded and deleted (the
notifier refuses less than its wait + 10 s)."""
NOTIFIER_GRACE_SECONDS = 40
"""terminationGracePeriodSeconds of notifier pods (no load balancer sends to them: no preStop wait)."""
FILE_PROCESSOR_WAIT_SECONDS = 20
"""FILE_PROCESSOR_WAIT_SECONDS: the SQS long poll a SIGTERM may find in flight."""
FILE_PROCESSOR_CHECK_SECONDS = 15
"""FILE_PROCESSOR_CHECK_TIMEOUT_SECONDS: the PDF check's wall-clock limit, well within the queue's 30 s visibility."""
FILE_PROCESSOR_SHUTDOWN_SECONDS = 45
"""FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS: the long poll in flight and its message, checked and recorded (the
processor refuses less than its wait + check timeout + 10 s)."""
FILE_PROCESSOR_GRACE_SECONDS = 55
"""terminationGracePeriodSeconds of file processor pods (no load balancer sends to them: no preStop wait)."""


@dataclass(frozen=True)
class PlatformEndpoints:
    """What the apps are configured with: the platform's outputs, never a password."""

    region: str
    """AWS region."""
    vpc_cidr: str
    """VPC CIDR (the ALB reaches pods from inside it)."""
    database_cidrs: Sequence[str]
    """Database subnets' CIDRs (the only place pods may open 5432 to)."""
    database_address: pulumi.Input[str]
    """RDS host name."""
    database_port: pulumi.Input[int]
    """RDS port."""
    database_name: pulumi.Input[str]
    """Application database."""
    database_secret_arn: pulumi.Input[str]
    """RDS-managed master secret (read at start-up through IRSA)."""
    database_kms_key_arn: pulumi.Input[str]
    """Key the master secret is encrypted with."""
    bucket_name: pulumi.Input[str]
    """Exam-results bucket."""
    bucket_arn: pulumi.Input[str]
    """Exam-results bucket ARN."""
    bucket_kms_key_arn: pulumi.Input[str]
    """Key of the exam-results bucket."""
    queue_urls: pulumi.Input[Mapping[str, str]]
    """Queue URL per event domain."""
    queue_arns: pulumi.Input[Mapping[str, str]]
    """Queue ARN per event domain."""
    dead_letter_queue_arns: pulumi.Input[Mapping[str, str]]
    """DLQ ARN per event domain (the notifier reports their depth)."""
    queue_kms_key_arn: pulumi.Input[str]
    """Key of the queues: the API needs a data key to send, the notifier to decrypt what it receives."""
    email_identity_arn: pulumi.Input[str]
    """SES identity the notifier sends as."""
    email_configuration_set: pulumi.Input[str]
    """SES configuration set name."""
    email_configuration_set_arn: pulumi.Input[str]
    """SES configuration set ARN."""
    email_from_address: pulumi.Input[str]
    """From address."""


@dataclass(frozen=True)
class TelemedicineAccess:
    """What the API needs to let people into video rooms (components/telemedicine.py)."""

    base_url: pulumi.Input[str]
    """https://<video host>: rooms are `<base_url>/<room>`."""
    jwt_secret: pulumi.Input[str]
    """The secret prosody verifies room tokens with (a secret Output)."""
    app_id: str
    """Token issuer prosody accepts."""
    audience: str
    """Token audience prosody accepts."""
    domain: str
    """XMPP domain, the token's subject."""


@dataclass(frozen=True)
class ClinicAppsArgs:
    cluster: Cluster
    """The cluster (provider, IRSA)."""
    controller: LoadBalancerController
    """The load balancer controller the Ingress must be ordered after."""
    platform: PlatformEndpoints
    """The platform's outputs the apps are configured with."""
    api_image: pulumi.Input[str]
    """What the API runs: ImageRegistry.images["api"], `<repository>@sha256:...` (or a full reference)."""
    notifier_image: pulumi.Input[str]
    """What the notifier runs, likewise."""
    file_processor_image: pulumi.Input[str]
    """What the file processor runs, likewise."""
    api_replicas: int = 1
    """API replicas at rest (the HPA's minimum)."""
    api_max_replicas: int = 3
    """HPA ceiling for the API."""
    notifier_replicas: int = 1
    """Notifier replicas."""
    hostname: str | None = None
    """Public host name of the clinic (Ingress rule, and the host of the links the API emails); required."""
    certificate_arn: str | None = None
    """ACM certificate for HTTPS on the ALB (HTTP redirects to HTTPS when set)."""
    time_zone: str = "America/Sao_Paulo"
    """The clinic's IANA time zone (schedules' wall-clock hours, times shown in pages and emails)."""
    hosted_zone_id: str | None = None
    """Route 53 hosted zone of the host name: the clinic's record (an alias to the ALB) goes there, and, without a
    certificate ARN, the DNS validation of the certificate the program issues."""
    alb_group: str | None = None
    """IngressGroup of the clinic's ALB, when other Ingresses (the video service) share it."""
    telemedicine: TelemedicineAccess | None = None
    """Video visits: the API mints room tokens with this."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for AWS resources."""
    protect_data_key: bool = False
    """Protect the API's data key (prod): every stored CPF is encrypted under it, so losing it loses them."""


def load_balancer_name(component_name: str) -> str:
    """The clinic ALB's name, fixed by the Ingress so the platform can look the ALB up (alarms on its metrics):
    `<component>-alb`, or, when that is no valid ALB name, a shortened form ending in a hash of the full name."""
    wanted = f"{component_name}-alb"
    if (
        len(wanted) <= ALB_NAME_MAX
        and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", wanted)
        and not wanted.startswith("internal-")
    ):
        return wanted
    digest = hashlib.sha256(component_name.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).removeprefix("internal-").strip("-")
    return f"{stem[: ALB_NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def validate_dns(hostname: str | None, hosted_zone_id: str | None) -> None:
    """The zone gets the host name's record and, without a certificate ARN, its certificate's validation record."""
    if hosted_zone_id and not hostname:
        raise ValueError(
            f"hosted_zone_id = {hosted_zone_id!r} is invalid without a hostname; allowed: set hostname "
            "(the record and the certificate are for it), or leave hosted_zone_id unset"
        )


def public_url(hostname: str | None, https: bool) -> str:
    """Where the links the API emails (email verification, password reset) point. Without a host name there is none
    to give: the ALB's generated name is known only once the Ingress exists, after the API's Deployment, and the
    API's own default is localhost, which no patient can open."""
    if hostname is None:
        raise ValueError(
            "hostname = None is invalid; allowed: the clinic's public host name, such as clinic.example.org (the "
            "links the API emails are built on it; without it they would point at localhost)"
        )
    return f"{'https' if https else 'http'}://{hostname}"


def validate_time_zone(time_zone: str) -> None:
    """The API refuses to start on a zone it does not know; refuse it here, before a rollout that would crash-loop."""
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time_zone = {time_zone!r} is invalid; allowed: an IANA time zone name such as America/Sao_Paulo"
        ) from None


def through(service: str, region: str) -> dict[str, Any]:
    """A key used only through `service` in `region`."""
    return {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}}


def api_policy(
    bucket_arn: str,
    bucket_key: str,
    queue_arns: Sequence[str],
    queue_key: str,
    secret_arn: str,
    db_key: str,
    region: str,
) -> str:
    """Exam PDFs under the prefix only; send to the event queues; read the database secret."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ExamObjects",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": f"{bucket_arn}/{EXAM_PREFIX}*",
                },
                # Without ListBucket a missing object answers 403, not 404: the API checks existence before "ready".
                {
                    "Sid": "ExamListing",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": bucket_arn,
                    "Condition": {"StringLike": {"s3:prefix": f"{EXAM_PREFIX}*"}},
                },
                {
                    "Sid": "ExamKey",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": bucket_key,
                    "Condition": through("s3", region),
                },
                {
                    "Sid": "Events",
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
                    "Resource": sorted(queue_arns),
                },
                # SQS asks KMS for a data key as the sender, and decrypts it to check it.
                {
                    "Sid": "EventsKey",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": queue_key,
                    "Condition": through("sqs", region),
                },
                {
                    "Sid": "DatabaseSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secret_arn,
                },
                {
                    "Sid": "DatabaseSecretKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": db_key,
                    "Condition": through("secretsmanager", region),
                },
            ],
        }
    )


def notifier_policy(
    queue_arns: Sequence[str],
    dlq_arns: Sequence[str],
    queue_key: str,
    identity_arn: str,
    configuration_set_arn: str,
    secret_arn: str,
    db_key: str,
    region: str,
) -> str:
    """Consume its queues; read its DLQs' depth (never their messages); send email only as the clinic identity
    through its configuration set."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Consume",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    "Resource": sorted(queue_arns),
                },
                {
                    "Sid": "ConsumeKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": queue_key,
                    "Condition": through("sqs", region),
                },
                {
                    "Sid": "DeadLetterDepth",
                    "Effect": "Allow",
                    "Action": "sqs:GetQueueAttributes",
                    "Resource": sorted(dlq_arns),
                },
                {
                    "Sid": "Send",
                    "Effect": "Allow",
                    "Action": "ses:SendEmail",
                    "Resource": [identity_arn, configuration_set_arn],
                },
                {
                    "Sid": "DatabaseSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secret_arn,
                },
                {
                    "Sid": "DatabaseSecretKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": db_key,
                    "Condition": through("secretsmanager", region),
                },
            ],
        }
    )


def file_processor_policy(
    region: str, queue_arn: str, queue_key: str, bucket_arn: str, bucket_key: str, secret_arn: str, db_key: str
) -> str:
    """Consume the file queue; read uploaded results; move a refused one to the quarantine prefix (copy there, delete
    the original) and read it back there (a move interrupted before its verdict was recorded); the bucket's key only
    through S3."""
    uploads, quarantine = f"{bucket_arn}/{EXAM_PREFIX}*", f"{bucket_arn}/{QUARANTINE_PREFIX}{EXAM_PREFIX}*"
    prefixes = [f"{EXAM_PREFIX}*", f"{QUARANTINE_PREFIX}{EXAM_PREFIX}*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Consume",
                    "Effect": "Allow",
                    "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                    "Resource": queue_arn,
                },
                {
                    "Sid": "ConsumeKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": queue_key,
                    "Condition": through("sqs", region),
                },
                {"Sid": "ReadResults", "Effect": "Allow", "Action": "s3:GetObject", "Resource": [uploads, quarantine]},
                {"Sid": "SetAside", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": uploads},
                {"Sid": "Quarantine", "Effect": "Allow", "Action": "s3:PutObject", "Resource": quarantine},
                # Without ListBucket a missing object answers 403, not 404: the processor tells a finished move
                # (original gone, copy in quarantine) from a failure by it.
                {
                    "Sid": "ResultListing",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": bucket_arn,
                    "Condition": {"StringLike": {"s3:prefix": prefixes}},
                },
                # Reading an SSE-KMS object decrypts with the bucket's key; the quarantine copy encrypts with it.
                {
                    "Sid": "ExamKey",
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": bucket_key,
                    "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
                },
                {
                    "Sid": "DatabaseSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secret_arn,
                },
                {
                    "Sid": "DatabaseSecretKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": db_key,
                    "Condition": through("secretsmanager", region),
                },
            ],
        }
    )


def database_env(prefix: str, p: PlatformEndpoints, pool_size: int = APP_DB_POOL_SIZE) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}_DATABASE__HOST", "value": p.database_address},
        {"name": f"{prefix}_DATABASE__PORT", "value": pulumi.Output.from_input(p.database_port).apply(str)},
        {"name": f"{prefix}_DATABASE__NAME", "value": p.database_name},
        {"name": f"{prefix}_DATABASE__SSLMODE", "value": "require"},
        # The size the stack's connection budget is checked against (limits/, stacks/settings.py).
        {"name": f"{prefix}_DATABASE__POOL_SIZE", "value": str(pool_size)},
        {"name": f"{prefix}_DATABASE__SECRET_ARN", "value": p.database_secret_arn},
        {"name": f"{prefix}_AWS__REGION", "value": p.region},
    ]


class ClinicApps(pulumi.ComponentResource):
    load_balancer_hostname: pulumi.Output[str]
    """DNS name of the clinic's ALB (point the host name's record at it)."""
    load_balancer_arn_suffix: pulumi.Output[str]
    """`app/<name>/<id>` of the clinic's ALB (the CloudWatch `LoadBalancer` dimension); "" until the Ingress has
    an address."""

    def __init__(self, name: str, args: ClinicAppsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:ClinicApps", name, None, opts)
        validate_dns(args.hostname, args.hosted_zone_id)
        url = public_url(args.hostname, bool(args.certificate_arn or args.hosted_zone_id))
        validate_time_zone(args.time_zone)
        p, tags = args.platform, dict(args.tags)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            opts=k8s_opts,
            metadata={
                "name": NAMESPACE,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                    # The controller's webhook gives pods here a readiness gate: Ready only once the ALB target is
                    # healthy.
                    "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
                },
            },
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider, depends_on=[namespace])

        # Signing key for the API's tokens: generated here, kept encrypted in state, handed over as a Secret.
        jwt_key = random.RandomPassword(
            f"{name}-jwt-key", length=64, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        jwt_secret = k8s.core.v1.Secret(
            f"{name}-api-jwt",
            opts=in_ns,
            type="Opaque",
            metadata={"name": "clinic-api-jwt", "namespace": NAMESPACE},
            string_data={"jwt-secret": jwt_key.result},
        )

        # The key the API derives the CPF's encryption and lookup keys from (clinic_api/cpf.py). Generated once and
        # kept in state like the signing key, but unlike it, losing it loses data: protected where data is.
        data_key = random.RandomPassword(
            f"{name}-data-key",
            length=64,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data_key),
        )
        data_key_secret = k8s.core.v1.Secret(
            f"{name}-api-data-key",
            opts=in_ns,
            type="Opaque",
            metadata={"name": "clinic-api-data-key", "namespace": NAMESPACE},
            string_data={"data-key": data_key.result},
        )

        pods_read: list[pulumi.Resource] = [jwt_secret, data_key_secret]
        telemedicine_env: list[dict[str, Any]] = []
        if args.telemedicine:
            video = args.telemedicine
            # The video service's token secret, for the API only: a Secret here, read by the API's env.
            pods_read.append(
                k8s.core.v1.Secret(
                    f"{name}-api-telemedicine",
                    opts=in_ns,
                    type="Opaque",
                    metadata={"name": "clinic-api-telemedicine", "namespace": NAMESPACE},
                    string_data={"jwt-secret": video.jwt_secret},
                )
            )
            telemedicine_env = [
                {"name": "CLINIC_TELEMEDICINE_BASE_URL", "value": video.base_url},
                {
                    "name": "CLINIC_TELEMEDICINE__JWT_SECRET",
                    "valueFrom": {"secretKeyRef": {"name": "clinic-api-telemedicine", "key": "jwt-secret"}},
                },
                {"name": "CLINIC_TELEMEDICINE__APP_ID", "value": video.app_id},
                {"name": "CLINIC_TELEMEDICINE__AUDIENCE", "value": video.audience},
                {"name": "CLINIC_TELEMEDICINE__DOMAIN", "value": video.domain},
            ]

        queue_urls = pulumi.Output.from_input(p.queue_urls)

        def queue_url(domain: str) -> pulumi.Output[str]:
            return queue_urls.apply(lambda urls: urls[domain])

        api_env = [
            {"name": "CLINIC_ENVIRONMENT", "value": "production"},
            *database_env("CLINIC", p),
            {"name": "CLINIC_STORAGE__BUCKET", "value": p.bucket_name},
            {"name": "CLINIC_STORAGE__PREFIX", "value": EXAM_PREFIX},
            *[
                {"name": f"CLINIC_QUEUES__{domain.upper().replace('-', '_')}", "value": queue_url(domain)}
                for domain in ("account", "appointment", "exam", "exam-result", "file")
            ],
            {
                "name": "CLINIC_AUTH__JWT_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "clinic-api-jwt", "key": "jwt-secret"}},
            },
            {
                "name": "CLINIC_PRIVACY__DATA_KEY",
                "valueFrom": {"secretKeyRef": {"name": "clinic-api-data-key", "key": "data-key"}},
            },
            {"name": "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", "value": str(API_DRAIN_SECONDS)},
            {"name": "CLINIC_AGENDA__TIME_ZONE", "value": args.time_zone},
            *telemedicine_env,
            # The address in emailed links: HTTPS where the ALB has a certificate (given, or issued in the zone).
            {"name": "CLINIC_PUBLIC_URL", "value": url},
        ]
        notifier_env = [
            *database_env("NOTIFIER", p),
            {
                "name": "NOTIFIER_QUEUE_URLS",
                "value": queue_urls.apply(lambda urls: json.dumps([urls[d] for d in NOTIFIER_DOMAINS])),
            },
            {"name": "NOTIFIER_SES__FROM_ADDRESS", "value": p.email_from_address},
            {"name": "NOTIFIER_SES__CONFIGURATION_SET", "value": p.email_configuration_set},
            {"name": "NOTIFIER_HTTP_PORT", "value": str(NOTIFIER_PORT)},
            {"name": "NOTIFIER_WAIT_SECONDS", "value": str(NOTIFIER_WAIT_SECONDS)},
            {"name": "NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS", "value": str(NOTIFIER_SHUTDOWN_SECONDS)},
        ]
        file_processor_env = [
            *database_env("FILE_PROCESSOR", p, pool_size=FILE_PROCESSOR_DB_POOL_SIZE),
            {"name": "FILE_PROCESSOR_QUEUE_URL", "value": queue_url(FILE_DOMAIN)},
            {"name": "FILE_PROCESSOR_BUCKET", "value": p.bucket_name},
            {"name": "FILE_PROCESSOR_UPLOAD_PREFIX", "value": EXAM_PREFIX},
            {"name": "FILE_PROCESSOR_QUARANTINE_PREFIX", "value": QUARANTINE_PREFIX},
            {"name": "FILE_PROCESSOR_HTTP_PORT", "value": str(FILE_PROCESSOR_PORT)},
            {"name": "FILE_PROCESSOR_WAIT_SECONDS", "value": str(FILE_PROCESSOR_WAIT_SECONDS)},
            {"name": "FILE_PROCESSOR_CHECK_TIMEOUT_SECONDS", "value": str(FILE_PROCESSOR_CHECK_SECONDS)},
            {"name": "FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS", "value": str(FILE_PROCESSOR_SHUTDOWN_SECONDS)},
        ]

        queue_arns = pulumi.Output.from_input(p.queue_arns)
        # Each app is a workload of its own; its resources were this component's children until the split, and
        # keep their URNs through aliases (previous_parent, previous_names).
        api = AppWorkload(
            f"{name}-api",
            AppWorkloadArgs(
                app="clinic-api",
                namespace=NAMESPACE,
                cluster=args.cluster,
                tags=tags,
                policy=pulumi.Output.all(
                    p.bucket_arn,
                    p.bucket_kms_key_arn,
                    queue_arns,
                    p.queue_kms_key_arn,
                    p.database_secret_arn,
                    p.database_kms_key_arn,
                ).apply(lambda a: api_policy(a[0], a[1], list(a[2].values()), a[3], a[4], a[5], p.region)),
                image=args.api_image,
                release=args.api_image,
                env=api_env,
                migrate_module="clinic_api.migrate",
                port=API_PORT,
                service_port=80,
                service_port_name="http",
                cpu=API_POD.cpu,
                memory=API_POD.memory,
                replicas=args.api_replicas,
                max_replicas=args.api_max_replicas,
                shutdown=Shutdown(prestop_seconds=API_PRESTOP_SECONDS, grace_seconds=API_GRACE_SECONDS),
                after=[namespace],
                pods_read=pods_read,
                service_after=args.controller.ready,
                previous_parent=self,
                previous_names={"deployment": f"{name}-api", "pdb": f"{name}-clinic-api-pdb"},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        AppWorkload(
            f"{name}-notifier",
            AppWorkloadArgs(
                app="clinic-notifier",
                namespace=NAMESPACE,
                cluster=args.cluster,
                tags=tags,
                policy=pulumi.Output.all(
                    queue_arns,
                    p.dead_letter_queue_arns,
                    p.queue_kms_key_arn,
                    p.email_identity_arn,
                    p.email_configuration_set_arn,
                    p.database_secret_arn,
                    p.database_kms_key_arn,
                ).apply(
                    lambda a: notifier_policy(
                        [a[0][d] for d in NOTIFIER_DOMAINS],
                        [a[1][d] for d in NOTIFIER_DOMAINS],
                        a[2],
                        a[3],
                        a[4],
                        a[5],
                        a[6],
                        p.region,
                    )
                ),
                image=args.notifier_image,
                release=args.notifier_image,
                env=notifier_env,
                migrate_module="notifier.migrate",
                port=NOTIFIER_PORT,
                service_port=NOTIFIER_PORT,
                service_port_name="metrics",
                cpu=NOTIFIER_POD.cpu,
                memory=NOTIFIER_POD.memory,
                replicas=args.notifier_replicas,
                after=[namespace],
                service_after=args.controller.ready,
                shutdown=Shutdown(prestop_seconds=0, grace_seconds=NOTIFIER_GRACE_SECONDS),
                previous_parent=self,
                previous_names={"deployment": f"{name}-notifier", "pdb": f"{name}-clinic-notifier-pdb"},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        # The API's migrations create the exam columns it writes (and a new release's, before its pods): it runs none.
        AppWorkload(
            f"{name}-file-processor",
            AppWorkloadArgs(
                app="clinic-file-processor",
                namespace=NAMESPACE,
                cluster=args.cluster,
                tags=tags,
                policy=pulumi.Output.all(
                    queue_arns,
                    p.queue_kms_key_arn,
                    p.bucket_arn,
                    p.bucket_kms_key_arn,
                    p.database_secret_arn,
                    p.database_kms_key_arn,
                ).apply(lambda a: file_processor_policy(p.region, a[0][FILE_DOMAIN], a[1], a[2], a[3], a[4], a[5])),
                image=args.file_processor_image,
                release=args.file_processor_image,
                env=file_processor_env,
                port=FILE_PROCESSOR_PORT,
                service_port=FILE_PROCESSOR_PORT,
                service_port_name="metrics",
                cpu=FILE_PROCESSOR_POD.cpu,
                memory=FILE_PROCESSOR_POD.memory,
                replicas=FILE_PROCESSOR_REPLICAS,
                after=[namespace],
                pods_after=[api.migrations] if api.migrations else [],
                service_after=args.controller.ready,
                shutdown=Shutdown(prestop_seconds=0, grace_seconds=FILE_PROCESSOR_GRACE_SECONDS),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        certificate_arn: pulumi.Input[str] | None = args.certificate_arn
        if args.hosted_zone_id and args.hostname and not certificate_arn:
            certificate_arn = issued_certificate(name, args.hostname, args.hosted_zone_id, tags, parent=self)

        # A fixed name (not one the controller derives) makes the ALB findable; changing it replaces the ALB.
        alb_name = load_balancer_name(name)
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            opts=pulumi.ResourceOptions.merge(
                args.controller.load_balancer_opts(parent=self),
                pulumi.ResourceOptions(depends_on=[api.service, namespace]),
            ),
            metadata={
                "name": "clinic",
                "namespace": NAMESPACE,
                "annotations": {
                    **_alb_annotations(certificate_arn, tags),
                    "alb.ingress.kubernetes.io/load-balancer-name": alb_name,
                    # Joining a group moves the Ingress to a new controller stack: on a running stack the controller
                    # replaces the ALB once (README "Telemedicine").
                    **({"alb.ingress.kubernetes.io/group.name": args.alb_group} if args.alb_group else {}),
                },
            },
            spec={
                "ingressClassName": "alb",
                "rules": [
                    {
                        **({"host": args.hostname} if args.hostname else {}),
                        "http": {
                            "paths": [
                                # Prometheus scrapes /metrics inside the cluster; the ALB answers it with a 404 of
                                # its own, so request counts and database figures are not published to the internet.
                                {
                                    "path": "/metrics",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {"name": METRICS_NOT_PUBLIC, "port": {"name": "use-annotation"}}
                                    },
                                },
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "clinic-api", "port": {"number": 80}}},
                                },
                            ]
                        },
                    }
                ],
            },
        )

        self._network_policies(name, in_ns, p)

        self.load_balancer_hostname = ingress.status.apply(
            lambda st: (
                st.load_balancer.ingress[0].hostname if st and st.load_balancer and st.load_balancer.ingress else ""
            )
        )

        def find_alb(status: Any) -> Any:
            # The controller creates the ALB after the Ingress is applied; only once the Ingress reports an address
            # does the ALB exist, so the lookup runs then (and never during a preview, where the status is unknown).
            if not (status and status.load_balancer and status.load_balancer.ingress):
                return None
            return aws.lb.get_load_balancer_output(name=alb_name, opts=pulumi.InvokeOutputOptions(parent=self))

        alb = ingress.status.apply(find_alb)
        self.load_balancer_arn_suffix = alb.apply(lambda found: found.arn_suffix if found else "")
        if args.hosted_zone_id:
            # Depends on the Ingress (through its status): on destroy the record goes first, then the ALB.
            aws.route53.Record(
                f"{name}-dns",
                zone_id=args.hosted_zone_id,
                name=args.hostname,
                type="A",
                aliases=[
                    {
                        "name": self.load_balancer_hostname,
                        "zone_id": alb.apply(lambda found: found.zone_id if found else ""),
                        "evaluate_target_health": True,
                    }
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "load_balancer_hostname": self.load_balancer_hostname,
                "load_balancer_arn_suffix": self.load_balancer_arn_suffix,
            }
        )

    def _network_policies(self, name: str, opts: pulumi.ResourceOptions, p: PlatformEndpoints) -> None:
        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{suffix}", opts=opts, metadata={"name": suffix, "namespace": NAMESPACE}, spec=spec
            )

        dns = {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
        database = {
            "to": [{"ipBlock": {"cidr": cidr}} for cidr in p.database_cidrs],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
        # AWS APIs (S3, SQS, SES, Secrets Manager, STS) over HTTPS, through NAT or the S3 endpoint.
        aws_apis = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        policy(
            "clinic-api",
            {
                "podSelector": {"matchLabels": {"app": "clinic-api"}},
                "policyTypes": ["Ingress", "Egress"],
                # The ALB targets pod IPs directly (target-type ip) from inside the VPC.
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": p.vpc_cidr}}, monitoring],
                        "ports": [{"protocol": "TCP", "port": API_PORT}],
                    }
                ],
                "egress": [dns, database, aws_apis],
            },
        )
        policy(
            "clinic-migrate",
            {
                "podSelector": {"matchLabels": {"app": "clinic-migrate"}},
                "policyTypes": ["Egress"],
                "egress": [dns, database, aws_apis],
            },
        )
        policy(
            "clinic-notifier",
            {
                "podSelector": {"matchLabels": {"app": "clinic-notifier"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [monitoring], "ports": [{"protocol": "TCP", "port": NOTIFIER_PORT}]}],
                "egress": [dns, database, aws_apis],
            },
        )
        policy(
            "clinic-file-processor",
            {
                "podSelector": {"matchLabels": {"app": "clinic-file-processor"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [monitoring], "ports": [{"protocol": "TCP", "port": FILE_PROCESSOR_PORT}]}],
                "egress": [dns, database, aws_apis],
            },
        )


def issued_certificate(
    name: str, hostname: str, zone_id: str, tags: Mapping[str, str], parent: pulumi.Resource
) -> pulumi.Output[str]:
    """An ACM certificate for the host name, validated through a record in its zone; the ARN resolves only once
    ACM has issued it, so the Ingress (and the ALB's HTTPS listener) waits for a usable certificate."""
    child = pulumi.ResourceOptions(parent=parent)
    certificate = aws.acm.Certificate(
        f"{name}-cert", domain_name=hostname, validation_method="DNS", tags=dict(tags), opts=child
    )
    # One name, no alternatives: exactly one validation record.
    option = certificate.domain_validation_options.apply(lambda options: options[0])
    record = aws.route53.Record(
        f"{name}-cert-validation",
        zone_id=zone_id,
        name=option.resource_record_name,
        type=option.resource_record_type,
        records=[option.resource_record_value],
        ttl=300,
        # ACM gives the same record for the same name in every certificate: a renewal or replacement reuses it.
        allow_overwrite=True,
        opts=child,
    )
    validation = aws.acm.CertificateValidation(
        f"{name}-cert-issued",
        certificate_arn=certificate.arn,
        validation_record_fqdns=[record.fqdn],
        opts=pulumi.ResourceOptions(
            parent=parent, custom_timeouts=pulumi.CustomTimeouts(create=CERTIFICATE_VALIDATION_TIMEOUT)
        ),
    )
    return validation.certificate_arn


def _alb_annotations(certificate_arn: pulumi.Input[str] | None, tags: Mapping[str, str]) -> dict[str, Any]:
    annotations: dict[str, pulumi.Input[str]] = {
        f"alb.ingress.kubernetes.io/actions.{METRICS_NOT_PUBLIC}": json.dumps(
            {
                "type": "fixed-response",
                "fixedResponseConfig": {"contentType": "text/plain", "statusCode": "404", "messageBody": "not found"},
            }
        ),
        "alb.ingress.kubernetes.io/scheme": "internet-facing",
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-path": "/readyz",
        "alb.ingress.kubernetes.io/tags": ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
        "alb.ingress.kubernetes.io/load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
        "alb.ingress.kubernetes.io/target-group-attributes": (
            f"deregistration_delay.timeout_seconds={DEREGISTRATION_DELAY_SECONDS}"
        ),
    }
    if certificate_arn:
        # HTTPS only: port 80 answers every request with a redirect (the API sends HSTS on every response).
        annotations.update(
            {
                "alb.ingress.kubernetes.io/certificate-arn": certificate_arn,
                "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
                "alb.ingress.kubernetes.io/ssl-redirect": "443",
                "alb.ingress.kubernetes.io/ssl-policy": SSL_POLICY,
            }
        )
    else:
        annotations["alb.ingress.kubernetes.io/listen-ports"] = json.dumps([{"HTTP": 80}])
    return annotations
