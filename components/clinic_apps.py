"""ClinicApps: the clinic's API and notifier on the cluster — images, least-privilege IAM, migrations, hardened
workloads, the public ALB, autoscaling, disruption budgets and network policies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.cluster import Cluster
from components.lb_controller import LoadBalancerController
from stacks.settings import APP_DB_POOL_SIZE, AppsSettings

NAMESPACE = "clinic"
API_PORT = 8000
NOTIFIER_PORT = 8080
APP_UID = 10001
EXAM_PREFIX = "exams/"
# Notifier consumes these event domains (the file queue feeds no bundled consumer yet).
NOTIFIER_DOMAINS = ("account", "appointment", "exam", "exam-result")
# The ALB's TLS policy: TLS 1.2+ with forward secrecy only.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The ALB action (an Ingress backend by that name) that answers /metrics from the internet with a 404.
METRICS_NOT_PUBLIC = "metrics-not-public"
# AWS limits load balancer names to 32 characters: letters, digits and hyphens.
ALB_NAME_MAX = 32


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
    email_identity_arn: pulumi.Input[str]
    """SES identity the notifier sends as."""
    email_configuration_set: pulumi.Input[str]
    """SES configuration set name."""
    email_configuration_set_arn: pulumi.Input[str]
    """SES configuration set ARN."""
    email_from_address: pulumi.Input[str]
    """From address."""


@dataclass(frozen=True)
class ClinicAppsArgs:
    cluster: Cluster
    """The cluster (provider, IRSA)."""
    controller: LoadBalancerController
    """The load balancer controller the Ingress must be ordered after."""
    platform: PlatformEndpoints
    """The platform's outputs the apps are configured with."""
    settings: AppsSettings
    """Images, replicas, host name, certificate."""
    keep_images: bool = False
    """Prod: image repositories that still hold images are not deleted with the stack."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for AWS resources."""


def load_balancer_name(component_name: str) -> str:
    """The clinic ALB's name, fixed by the Ingress so the platform can look the ALB up (alarms on its metrics):
    `<component>-alb`, or, when that is no valid ALB name, a shortened form ending in a hash of the full name."""
    wanted = f"{component_name}-alb"
    if (len(wanted) <= ALB_NAME_MAX and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", wanted)
            and not wanted.startswith("internal-")):
        return wanted
    digest = hashlib.sha256(component_name.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).removeprefix("internal-").strip("-")
    return f"{stem[:ALB_NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def image_reference(repository_url: str, image: str) -> str:
    """A full reference as given; a digest or a tag is resolved against the app's repository."""
    if "/" in image:
        return image
    return f"{repository_url}@{image}" if image.startswith("sha256:") else f"{repository_url}:{image}"


def api_policy(bucket_arn: str, bucket_key: str, queue_arns: Sequence[str], secret_arn: str, db_key: str) -> str:
    """Exam PDFs under the prefix only; send to the event queues; read the database secret."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ExamObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"{bucket_arn}/{EXAM_PREFIX}*"},
        # Without ListBucket a missing object answers 403, not 404: the API checks existence before "ready".
        {"Sid": "ExamListing", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": f"{EXAM_PREFIX}*"}}},
        {"Sid": "ExamKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": bucket_key},
        {"Sid": "Events", "Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
         "Resource": sorted(queue_arns)},
        {"Sid": "DatabaseSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
        {"Sid": "DatabaseSecretKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": db_key},
    ]})


def notifier_policy(queue_arns: Sequence[str], dlq_arns: Sequence[str], identity_arn: str,
                    configuration_set_arn: str, secret_arn: str, db_key: str) -> str:
    """Consume its queues; read its DLQs' depth (never their messages); send email only as the clinic identity
    through its configuration set."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Consume", "Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes"],
         "Resource": sorted(queue_arns)},
        {"Sid": "DeadLetterDepth", "Effect": "Allow", "Action": "sqs:GetQueueAttributes", "Resource": sorted(dlq_arns)},
        {"Sid": "Send", "Effect": "Allow", "Action": "ses:SendEmail",
         "Resource": [identity_arn, configuration_set_arn]},
        {"Sid": "DatabaseSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
        {"Sid": "DatabaseSecretKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": db_key},
    ]})


def restricted_pod(*, service_account: str, containers: list[dict[str, Any]], app: str,
                   restart_policy: str | None = None) -> dict[str, Any]:
    """A pod spec that passes the restricted Pod Security Standard, with a writable /tmp only."""
    for container in containers:
        container["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID,
                                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "securityContext": {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID, "fsGroup": APP_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app": app}}}],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return spec


def http_probes(port: int) -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5, "failureThreshold": 2},
    }


def database_env(prefix: str, p: PlatformEndpoints) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}_DATABASE__HOST", "value": p.database_address},
        {"name": f"{prefix}_DATABASE__PORT", "value": pulumi.Output.from_input(p.database_port).apply(str)},
        {"name": f"{prefix}_DATABASE__NAME", "value": p.database_name},
        {"name": f"{prefix}_DATABASE__SSLMODE", "value": "require"},
        # The size the stack's connection budget is checked against (stacks/settings.py).
        {"name": f"{prefix}_DATABASE__POOL_SIZE", "value": str(APP_DB_POOL_SIZE)},
        {"name": f"{prefix}_DATABASE__SECRET_ARN", "value": p.database_secret_arn},
        {"name": f"{prefix}_AWS__REGION", "value": p.region},
    ]


class ClinicApps(pulumi.ComponentResource):
    api_repository_url: pulumi.Output[str]
    """ECR repository of the API image."""
    notifier_repository_url: pulumi.Output[str]
    """ECR repository of the notifier image."""
    load_balancer_hostname: pulumi.Output[str]
    """DNS name of the clinic's ALB (point the host name's record at it)."""
    load_balancer_arn_suffix: pulumi.Output[str]
    """`app/<name>/<id>` of the clinic's ALB (the CloudWatch `LoadBalancer` dimension); "" until the Ingress has
    an address."""

    def __init__(self, name: str, args: ClinicAppsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:ClinicApps", name, None, opts)
        p, s, tags = args.platform, args.settings, dict(args.tags)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)

        repositories = {app: self._repository(f"{name}-{app}-repo", f"clinic-{app}", args.keep_images, tags)
                        for app in ("api", "notifier")}
        api_image = repositories["api"].repository_url.apply(lambda url: image_reference(url, s.api_image))
        notifier_image = repositories["notifier"].repository_url.apply(
            lambda url: image_reference(url, s.notifier_image))

        namespace = k8s.core.v1.Namespace(f"{name}-ns", opts=k8s_opts, metadata={"name": NAMESPACE, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/warn": "restricted"}})
        in_ns = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider, depends_on=[namespace])

        queue_arns = pulumi.Output.from_input(p.queue_arns)
        api_role = args.cluster.irsa_role(f"{name}-api-role", NAMESPACE, "clinic-api", parent=self, tags=tags,
                                          policy=pulumi.Output.all(p.bucket_arn, p.bucket_kms_key_arn, queue_arns,
                                                                   p.database_secret_arn, p.database_kms_key_arn)
                                          .apply(lambda a: api_policy(a[0], a[1], list(a[2].values()), a[3], a[4])))
        notifier_role = args.cluster.irsa_role(
            f"{name}-notifier-role", NAMESPACE, "clinic-notifier", parent=self, tags=tags,
            policy=pulumi.Output.all(queue_arns, p.dead_letter_queue_arns, p.email_identity_arn,
                                     p.email_configuration_set_arn, p.database_secret_arn, p.database_kms_key_arn)
            .apply(lambda a: notifier_policy([a[0][d] for d in NOTIFIER_DOMAINS], [a[1][d] for d in NOTIFIER_DOMAINS],
                                             *a[2:])))
        accounts = {app: k8s.core.v1.ServiceAccount(
            f"{name}-{app}-sa", opts=in_ns,
            metadata={"name": f"clinic-{app}", "namespace": NAMESPACE,
                      "annotations": {"eks.amazonaws.com/role-arn": role.arn}},
            automount_service_account_token=False)
            for app, role in (("api", api_role), ("notifier", notifier_role))}

        # Signing key for the API's tokens: generated here, kept encrypted in state, handed over as a Secret.
        jwt_key = random.RandomPassword(f"{name}-jwt-key", length=64, special=False,
                                        opts=pulumi.ResourceOptions(parent=self))
        jwt_secret = k8s.core.v1.Secret(f"{name}-api-jwt", opts=in_ns, type="Opaque",
                                        metadata={"name": "clinic-api-jwt", "namespace": NAMESPACE},
                                        string_data={"jwt-secret": jwt_key.result})

        queue_urls = pulumi.Output.from_input(p.queue_urls)
        api_env = [
            {"name": "CLINIC_ENVIRONMENT", "value": "production"},
            *database_env("CLINIC", p),
            {"name": "CLINIC_STORAGE__BUCKET", "value": p.bucket_name},
            {"name": "CLINIC_STORAGE__PREFIX", "value": EXAM_PREFIX},
            *[{"name": f"CLINIC_QUEUES__{domain.upper().replace('-', '_')}",
               "value": queue_urls.apply(lambda urls, d=domain: urls[d])}
              for domain in ("account", "appointment", "exam", "exam-result", "file")],
            {"name": "CLINIC_AUTH__JWT_SECRET",
             "valueFrom": {"secretKeyRef": {"name": "clinic-api-jwt", "key": "jwt-secret"}}},
        ]
        notifier_env = [
            *database_env("NOTIFIER", p),
            {"name": "NOTIFIER_QUEUE_URLS",
             "value": queue_urls.apply(lambda urls: json.dumps([urls[d] for d in NOTIFIER_DOMAINS]))},
            {"name": "NOTIFIER_SES__FROM_ADDRESS", "value": p.email_from_address},
            {"name": "NOTIFIER_SES__CONFIGURATION_SET", "value": p.email_configuration_set},
            {"name": "NOTIFIER_HTTP_PORT", "value": str(NOTIFIER_PORT)},
        ]

        migrations = [
            self._migrations(name, "clinic-api", s.api_image, api_image, "clinic_api.migrate", api_env, args,
                             depends_on=[namespace, accounts["api"], *api_role.resources]),
            self._migrations(name, "clinic-notifier", s.notifier_image, notifier_image, "notifier.migrate",
                             notifier_env, args, depends_on=[namespace, accounts["notifier"],
                                                             *notifier_role.resources]),
        ]

        after_migrations = pulumi.ResourceOptions(
            parent=self, provider=args.cluster.provider,
            depends_on=[*migrations, jwt_secret, *api_role.resources, *notifier_role.resources])
        self._deployment("clinic-api", f"{name}-api", after_migrations, api_image, API_PORT, s.api_replicas,
                         api_env, _resources("250m", "512Mi"), service_account="clinic-api")
        self._deployment("clinic-notifier", f"{name}-notifier", after_migrations, notifier_image, NOTIFIER_PORT,
                         s.notifier_replicas, notifier_env, _resources("100m", "256Mi"),
                         service_account="clinic-notifier")

        api_service = k8s.core.v1.Service(f"{name}-api-svc", opts=in_ns, metadata={
            "name": "clinic-api", "namespace": NAMESPACE, "labels": {"app": "clinic-api"}},
            spec={"type": "ClusterIP", "selector": {"app": "clinic-api"},
                  "ports": [{"name": "http", "port": 80, "targetPort": API_PORT}]})
        k8s.core.v1.Service(f"{name}-notifier-svc", opts=in_ns, metadata={
            "name": "clinic-notifier", "namespace": NAMESPACE, "labels": {"app": "clinic-notifier"}},
            spec={"type": "ClusterIP", "selector": {"app": "clinic-notifier"},
                  "ports": [{"name": "metrics", "port": NOTIFIER_PORT, "targetPort": NOTIFIER_PORT}]})

        # A fixed name (not one the controller derives) makes the ALB findable; changing it replaces the ALB.
        alb_name = load_balancer_name(name)
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            opts=pulumi.ResourceOptions.merge(args.controller.load_balancer_opts(parent=self),
                                              pulumi.ResourceOptions(depends_on=[api_service, namespace])),
            metadata={"name": "clinic", "namespace": NAMESPACE, "annotations": {
                **_alb_annotations(s, tags), "alb.ingress.kubernetes.io/load-balancer-name": alb_name}},
            spec={"ingressClassName": "alb", "rules": [{
                **({"host": s.hostname} if s.hostname else {}),
                "http": {"paths": [
                    # Prometheus scrapes /metrics inside the cluster; the ALB answers it with a 404 of its own,
                    # so request counts and database figures are not published to the internet.
                    {"path": "/metrics", "pathType": "Prefix", "backend": {
                        "service": {"name": METRICS_NOT_PUBLIC, "port": {"name": "use-annotation"}}}},
                    {"path": "/", "pathType": "Prefix", "backend": {
                        "service": {"name": "clinic-api", "port": {"number": 80}}}}]}}]})

        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-api-hpa", opts=in_ns, metadata={
            "name": "clinic-api", "namespace": NAMESPACE}, spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clinic-api"},
            "minReplicas": s.api_replicas, "maxReplicas": s.api_max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 70}}}]})
        for app in ("clinic-api", "clinic-notifier"):
            k8s.policy.v1.PodDisruptionBudget(f"{name}-{app}-pdb", opts=in_ns, metadata={
                "name": app, "namespace": NAMESPACE}, spec={"maxUnavailable": 1,
                                                            "selector": {"matchLabels": {"app": app}}})
        self._network_policies(name, in_ns, p)

        self.api_repository_url = repositories["api"].repository_url
        self.notifier_repository_url = repositories["notifier"].repository_url
        self.load_balancer_hostname = ingress.status.apply(
            lambda st: st.load_balancer.ingress[0].hostname if st and st.load_balancer and st.load_balancer.ingress
            else "")

        def arn_suffix(status: Any) -> pulumi.Input[str]:
            # The controller creates the ALB after the Ingress is applied; only once the Ingress reports an address
            # does the ALB exist, so the lookup runs then (and never during a preview, where the status is unknown).
            if not (status and status.load_balancer and status.load_balancer.ingress):
                return ""
            return aws.lb.get_load_balancer_output(name=alb_name,
                                                   opts=pulumi.InvokeOutputOptions(parent=self)).arn_suffix
        self.load_balancer_arn_suffix = ingress.status.apply(arn_suffix)
        self.register_outputs({"api_repository_url": self.api_repository_url,
                               "notifier_repository_url": self.notifier_repository_url,
                               "load_balancer_hostname": self.load_balancer_hostname,
                               "load_balancer_arn_suffix": self.load_balancer_arn_suffix})

    def _repository(self, name: str, repository: str, keep: bool, tags: Mapping[str, str]) -> aws.ecr.Repository:
        repo = aws.ecr.Repository(
            name, name=repository, image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            # Prod: a repository that still holds images refuses deletion, so a destroy cannot lose releases.
            force_delete=not keep, tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self))
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=repo.name, opts=pulumi.ResourceOptions(parent=repo),
                                policy=json.dumps({"rules": [
                                    {"rulePriority": 1, "description": "untagged images go after a week",
                                     "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                   "countUnit": "days", "countNumber": 7},
                                     "action": {"type": "expire"}},
                                    {"rulePriority": 2, "description": "keep the last 50 releases",
                                     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                   "countNumber": 50},
                                     "action": {"type": "expire"}}]}))
        return repo

    def _migrations(self, name: str, app: str, image_setting: str, image: pulumi.Input[str], module: str,
                    env: list[dict[str, Any]], args: ClinicAppsArgs,
                    depends_on: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """A new image gets a new Job name, so each app's migrations run once per release, before its new pods."""
        release = hashlib.sha256(image_setting.encode()).hexdigest()[:10]
        return k8s.batch.v1.Job(
            f"{name}-{app.removeprefix('clinic-')}-migrate", opts=pulumi.ResourceOptions(
                parent=self, provider=args.cluster.provider, depends_on=depends_on,
                delete_before_replace=True, custom_timeouts=pulumi.CustomTimeouts(create="10m")),
            metadata={"name": f"{app}-migrate-{release}", "namespace": NAMESPACE, "labels": {"app": app}},
            spec={"backoffLimit": 3, "activeDeadlineSeconds": 600, "template": {
                "metadata": {"labels": {"app": "clinic-migrate"}},
                "spec": restricted_pod(service_account=app, app="clinic-migrate", restart_policy="Never",
                                       containers=[{"name": "migrate", "image": image,
                                                    "command": ["python", "-m", module],
                                                    "env": env, "resources": _resources("100m", "256Mi")}])}})

    def _deployment(self, app: str, name: str, opts: pulumi.ResourceOptions, image: pulumi.Input[str], port: int,
                    replicas: int, env: list[dict[str, Any]], resources: dict[str, Any], *,
                    service_account: str) -> k8s.apps.v1.Deployment:
        container = {"name": app.removeprefix("clinic-"), "image": image, "env": env, "resources": resources,
                     "ports": [{"name": "http", "containerPort": port}], **http_probes(port)}
        return k8s.apps.v1.Deployment(name, opts=opts, metadata={"name": app, "namespace": NAMESPACE,
                                                                 "labels": {"app": app}}, spec={
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": app}},
                         "spec": restricted_pod(service_account=service_account, app=app, containers=[container])}})

    def _network_policies(self, name: str, opts: pulumi.ResourceOptions, p: PlatformEndpoints) -> None:
        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol-{suffix}", opts=opts, metadata={
                "name": suffix, "namespace": NAMESPACE}, spec=spec)

        dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        database = {"to": [{"ipBlock": {"cidr": cidr}} for cidr in p.database_cidrs],
                    "ports": [{"protocol": "TCP", "port": 5432}]}
        # AWS APIs (S3, SQS, SES, Secrets Manager, STS) over HTTPS, through NAT or the S3 endpoint.
        aws_apis = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        policy("clinic-api", {
            "podSelector": {"matchLabels": {"app": "clinic-api"}}, "policyTypes": ["Ingress", "Egress"],
            # The ALB targets pod IPs directly (target-type ip) from inside the VPC.
            "ingress": [{"from": [{"ipBlock": {"cidr": p.vpc_cidr}}, monitoring],
                         "ports": [{"protocol": "TCP", "port": API_PORT}]}],
            "egress": [dns, database, aws_apis]})
        policy("clinic-migrate", {
            "podSelector": {"matchLabels": {"app": "clinic-migrate"}}, "policyTypes": ["Egress"],
            "egress": [dns, database, aws_apis]})
        policy("clinic-notifier", {
            "podSelector": {"matchLabels": {"app": "clinic-notifier"}}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [monitoring], "ports": [{"protocol": "TCP", "port": NOTIFIER_PORT}]}],
            "egress": [dns, database, aws_apis]})


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": _double(cpu), "memory": memory}}


def _double(cpu: str) -> str:
    return f"{int(cpu.removesuffix('m')) * 2}m"


def _alb_annotations(s: AppsSettings, tags: Mapping[str, str]) -> dict[str, str]:
    annotations = {
        f"alb.ingress.kubernetes.io/actions.{METRICS_NOT_PUBLIC}": json.dumps({
            "type": "fixed-response",
            "fixedResponseConfig": {"contentType": "text/plain", "statusCode": "404", "messageBody": "not found"}}),
        "alb.ingress.kubernetes.io/scheme": "internet-facing",
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-path": "/readyz",
        "alb.ingress.kubernetes.io/tags": ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
        "alb.ingress.kubernetes.io/load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
    }
    if s.certificate_arn:
        annotations.update({
            "alb.ingress.kubernetes.io/certificate-arn": s.certificate_arn,
            "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
            "alb.ingress.kubernetes.io/ssl-redirect": "443",
            "alb.ingress.kubernetes.io/ssl-policy": SSL_POLICY,
        })
    else:
        annotations["alb.ingress.kubernetes.io/listen-ports"] = json.dumps([{"HTTP": 80}])
    return annotations
