"""The clinic's guardrails as plain functions, with no dependency on pulumi-policy.

Resource rules take `(resource_type, props, environment)` and return violation messages (empty = compliant);
`props` are the resource's inputs in camelCase, exactly as the engine hands them to a policy pack. Stack rules take
every resource of the stack (`Resource`) and return `(message, urn)` pairs: they check relations between resources
(a bucket and its encryption configuration, a queue and its dead-letter queue). Each rule is a row of a table keyed
by resource type token, so a new resource type is covered by adding a row, not a branch.

`policy/__main__.py` wraps these for pulumi-policy; the tests call them directly and over the recorded graph of both
committed stacks. pulumi-policy is kept out of the test venv on purpose: it pins protobuf ~5.29 and would downgrade
the protobuf the Pulumi program and its tests run with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from limits import LOG_RETENTION_DAYS, MIN_PROD_BACKUP_DAYS

PROJECT = "clinic-platform"
MANDATORY, ADVISORY = "mandatory", "advisory"
# Audit and authenticator logs answer "who read which patient's secret"; api covers every request.
REQUIRED_CONTROL_PLANE_LOGS = frozenset({"api", "audit", "authenticator"})
# Both: memory bounds the blast radius of a leak on a shared node, cpu keeps one pod from starving its neighbours.
REQUIRED_LIMITS = ("cpu", "memory")

Check = Callable[[str, Mapping[str, Any], str], list[str]]


# --- helpers ---------------------------------------------------------------------------------------------------


def _true(value: Any) -> bool:
    """Booleans arrive as bools, or as "true"/"false" strings for a few AWS fields (launch-template EBS)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _decoded(value: Any) -> Any:
    """Policy documents and redrive policies are JSON strings in the inputs."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        return json.loads(value)
    return value


def _path(props: Mapping[str, Any], *keys: str) -> Any:
    value: Any = props
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --- encryption at rest ----------------------------------------------------------------------------------------


def rds_storage_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if not _true(props.get("storageEncrypted")):
        return ["storageEncrypted must be true: patient data is never stored unencrypted"]
    return []


def sqs_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if _true(props.get("sqsManagedSseEnabled")) or props.get("kmsMasterKeyId"):
        return []
    return ["set sqsManagedSseEnabled=true or kmsMasterKeyId: messages carry patient events"]


# --- keys ------------------------------------------------------------------------------------------------------

# A statement allowing any of these lets its principals read or write data under the key.
KEY_USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey", "kms:CreateGrant")


def _uses_key(action: str) -> bool:
    action = action.lower()
    return action in ("*", "kms:*") or any(
        use.lower().startswith(action.rstrip("*")) if action.endswith("*") else action.startswith(use.lower())
        for use in KEY_USE_ACTIONS
    )


def _names_its_principals(statement: Mapping[str, Any]) -> bool:
    """A statement of the account (or of everyone) is narrowed to named principals by aws:PrincipalArn."""
    principal = statement.get("Principal")
    values = ["*"] if principal == "*" else _as_list((principal or {}).get("AWS"))
    if not any(v == "*" or str(v).endswith(":root") or str(v).isdigit() for v in values):
        return True  # names roles or a service principal itself
    condition = statement.get("Condition") or {}
    return any("aws:PrincipalArn" in tests for op, tests in condition.items() if op.startswith("Arn"))


def kms_key_explicit_policy(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    """The default key policy gives the account kms:*: any principal whose IAM allows kms:* could use the key."""
    policy = _decoded(props.get("policy"))
    if not isinstance(policy, Mapping) or not policy.get("Statement"):
        return ["policy must be set: without it KMS applies the default policy (kms:* for the whole account)"]
    problems = []
    for statement in _as_list(policy["Statement"]):
        if statement.get("Effect") != "Allow" or "NotAction" in statement:
            if "NotAction" in statement:
                problems.append(f"statement {statement.get('Sid', '?')}: NotAction allows more than it names")
            continue
        used = [a for a in _as_list(statement.get("Action")) if _uses_key(str(a))]
        if used and not _names_its_principals(statement):
            problems.append(
                f"statement {statement.get('Sid', '?')} lets the whole account use the key ({', '.join(used)}); "
                "name the roles (aws:PrincipalArn) or a service principal"
            )
    return problems


def sns_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return [] if props.get("kmsMasterKeyId") else ["kmsMasterKeyId must be set (SNS does not encrypt by default)"]


def log_group_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return [] if props.get("kmsKeyId") else ["kmsKeyId must be set: logs of a clinic carry patient identifiers"]


def backup_vault_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return (
        [] if props.get("kmsKeyArn") else ["kmsKeyArn must be set to a key of the clinic's (not the AWS-managed one)"]
    )


def log_group_expires(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    days = props.get("retentionInDays")
    if days in LOG_RETENTION_DAYS and not isinstance(days, bool):
        return []
    if days is None or days == 0:
        return ["retentionInDays must be set: a log group without it keeps every event forever"]
    return [
        f"retentionInDays = {days!r} must be a value CloudWatch Logs accepts: "
        + ", ".join(map(str, LOG_RETENTION_DAYS))
    ]


def ebs_volume_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return [] if _true(props.get("encrypted")) else ["encrypted must be true"]


def launch_template_volumes_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return [
        f"blockDeviceMappings[{i}] ({m.get('deviceName', '?')}) must set ebs.encrypted=true"
        for i, m in enumerate(_as_list(props.get("blockDeviceMappings")))
        if isinstance(m, Mapping) and m.get("ebs") is not None and not _true(_path(m, "ebs", "encrypted"))
    ]


def eks_secrets_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if resource_type == "eks:index:Cluster":
        ok = bool(props.get("encryptionConfigKeyArn"))
    else:  # aws:eks/cluster:Cluster
        config = props.get("encryptionConfig") or {}
        ok = "secrets" in _as_list(config.get("resources")) and bool(_path(config, "provider", "keyArn"))
    return [] if ok else ["Kubernetes secrets must be envelope-encrypted with a KMS key (encryptionConfigKeyArn)"]


def s3_inline_encryption(props: Mapping[str, Any]) -> bool:
    """A bucket that carries its (deprecated) inline SSE configuration."""
    rules = _as_list(_path(props, "serverSideEncryptionConfiguration", "rule"))
    return any(_path(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") for r in rules if isinstance(r, Mapping))


def s3_encryption_configuration(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    rules = [r for r in _as_list(props.get("rules")) if isinstance(r, Mapping)]
    algorithms = [_path(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") for r in rules]
    if not algorithms or not all(algorithms):
        return ["every rule must set applyServerSideEncryptionByDefault.sseAlgorithm"]
    return []


# --- no public data --------------------------------------------------------------------------------------------

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def s3_public_access_blocked(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if not _true(props.get(flag))]
    return [f"{', '.join(off)} must be true: exam results are never public"] if off else []


def rds_not_public(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return ["publiclyAccessible must be false"] if _true(props.get("publiclyAccessible")) else []


def denies_insecure_transport(policy: Any) -> bool:
    """The document has a Deny of every action for every principal when aws:SecureTransport is false."""
    document = _decoded(policy)
    if not isinstance(document, Mapping):
        return False
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
            continue
        principal = statement.get("Principal")
        everyone = principal == "*" or (isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS")))
        all_actions = any(a in ("*", "s3:*") for a in _as_list(statement.get("Action")))
        insecure = str(_path(statement, "Condition", "Bool", "aws:SecureTransport")).lower() == "false"
        if everyone and all_actions and insecure:
            return True
    return False


def s3_bucket_policy_tls_only(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if denies_insecure_transport(props.get("policy")):
        return []
    return ["the policy must Deny s3:* to Principal * when aws:SecureTransport is false"]


# --- prod database resilience ----------------------------------------------------------------------------------


def rds_prod_resilience(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if environment == "dev":
        return []
    problems = []
    if not _true(props.get("deletionProtection")):
        problems.append("deletionProtection must be true in prod")
    if resource_type == "aws:rds/instance:Instance" and not _true(props.get("multiAz")):
        problems.append("multiAz must be true in prod")
    backups = props.get("backupRetentionPeriod")
    if not isinstance(backups, (int, float)) or backups < MIN_PROD_BACKUP_DAYS:
        shown = f"{backups:g}" if isinstance(backups, (int, float)) else repr(backups)
        problems.append(f"backupRetentionPeriod = {shown} must be at least {MIN_PROD_BACKUP_DAYS} days in prod")
    return problems


# --- EKS control plane and nodes -------------------------------------------------------------------------------


def eks_control_plane_logging(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    missing = REQUIRED_CONTROL_PLANE_LOGS - set(_as_list(props.get("enabledClusterLogTypes")))
    return [f"enabledClusterLogTypes must include {', '.join(sorted(missing))}"] if missing else []


def imdsv2_required(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    if resource_type in ("eks:index:ManagedNodeGroup", "eks:index:NodeGroupV2", "eks:index:NodeGroup"):
        # pulumi-eks builds its own launch template: IMDSv2 unless told, or given a template of ours.
        ok = _true(props.get("enableIMDSv2")) or props.get("launchTemplate") is not None
        return [] if ok else ["set enableIMDSv2=true (or pass a launch template requiring IMDSv2)"]
    if resource_type == "aws:eks/nodeGroup:NodeGroup":
        # Without a launch template of ours, nothing in the program says the nodes require IMDSv2.
        return [] if props.get("launchTemplate") else ["use a launch template with metadataOptions.httpTokens=required"]
    tokens = _path(props, "metadataOptions", "httpTokens")
    return [] if tokens == "required" else [f"metadataOptions.httpTokens = {tokens!r} must be 'required' (IMDSv2)"]


# --- pods ------------------------------------------------------------------------------------------------------

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}


def pods_non_root_with_limits(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    spec = _path(props, *POD_SPEC_PATHS[resource_type])
    if not isinstance(spec, Mapping):
        return ["no pod spec found"]
    pod_context = spec.get("securityContext") or {}
    problems = []
    containers = [
        c for c in _as_list(spec.get("initContainers")) + _as_list(spec.get("containers")) if isinstance(c, Mapping)
    ]
    if not containers:
        problems.append("the pod spec has no containers")
    for container in containers:
        name = container.get("name", "?")
        context = container.get("securityContext") or {}
        # A container's own securityContext overrides the pod's.
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        # Numbers reach a policy as floats (protobuf Struct): 10001.0 is a uid like 10001.
        uid = user if isinstance(user, (int, float)) and not isinstance(user, bool) else None
        if uid == 0 or not (_true(non_root) or (uid is not None and uid > 0)):
            problems.append(f"container {name}: must run as non-root (runAsNonRoot=true or runAsUser > 0)")
        limits = _path(container, "resources", "limits") or {}
        missing = [k for k in REQUIRED_LIMITS if not limits.get(k)]
        if missing:
            problems.append(f"container {name}: resources.limits must set {', '.join(missing)}")
    return problems


# --- public load balancers ------------------------------------------------------------------------------------

INGRESS_TYPE = "kubernetes:networking.k8s.io/v1:Ingress"
ALB = "alb.ingress.kubernetes.io/"
# TLS 1.3 policies of the ALB (ELBSecurityPolicy-TLS13-1-2-Res-2021-06 and stricter): forward secrecy only.
TLS13_POLICY_PREFIX = "ELBSecurityPolicy-TLS13-"


def prod_alb_https_only(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    """An internet-facing ALB Ingress in prod: HTTPS with a certificate, HTTP only to redirect, a TLS 1.3 policy.
    The certificate's ARN may still be unknown in a preview (issued by the same update): its key must be there."""
    annotations = _path(props, "metadata", "annotations") or {}
    if environment == "dev" or annotations.get(f"{ALB}scheme") != "internet-facing":
        return []
    problems = []
    if f"{ALB}certificate-arn" not in annotations:
        problems.append(f"{ALB}certificate-arn must name the certificate (apps.certificateArn or apps.hostedZoneId)")
    listen = _as_list(_decoded(annotations.get(f"{ALB}listen-ports")))
    ports = [next(iter(p), None) for p in listen if isinstance(p, dict)]  # [{"HTTP": 80}, {"HTTPS": 443}]
    if "HTTPS" not in ports:
        problems.append(f"{ALB}listen-ports = {annotations.get(f'{ALB}listen-ports')!r} must include HTTPS")
    if "HTTP" in ports and annotations.get(f"{ALB}ssl-redirect") != "443":
        problems.append(f"{ALB}ssl-redirect must be '443' while HTTP is open")
    policy = annotations.get(f"{ALB}ssl-policy")
    if not (isinstance(policy, str) and policy.startswith(TLS13_POLICY_PREFIX)):
        problems.append(f"{ALB}ssl-policy = {policy!r} must be a {TLS13_POLICY_PREFIX}* policy")
    return problems


# --- audit trail ---------------------------------------------------------------------------------------------


def trail_encrypted(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    return [] if props.get("kmsKeyId") else ["kmsKeyId must be set: log files name patients' data and who read it"]


def trail_integrity(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    problems = []
    if not _true(props.get("enableLogFileValidation")):
        problems.append("enableLogFileValidation must be true: an altered or deleted log file must be detectable")
    if not _true(props.get("isMultiRegionTrail")):
        problems.append("isMultiRegionTrail must be true: a call in another region is as much the clinic's")
    return problems


# --- the tables ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    checks: Mapping[str, Check]
    """Resource type token -> validator."""


def _for(types: Iterable[str], check: Check) -> dict[str, Check]:
    return {t: check for t in types}


RDS_TYPES = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster")
EKS_CLUSTER_TYPES = ("eks:index:Cluster", "aws:eks/cluster:Cluster")
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_CONFIG_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
QUEUE_TYPE = "aws:sqs/queue:Queue"
REDRIVE_POLICY_TYPE = "aws:sqs/redrivePolicy:RedrivePolicy"
LOG_GROUP_TYPE = "aws:cloudwatch/logGroup:LogGroup"
TRAIL_TYPE = "aws:cloudtrail/trail:Trail"
REPLICATION_TYPE = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
ACCESS_LOGGING_TYPES = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
KMS_KEY_TYPE = "aws:kms/key:Key"

RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule(
        "encryption-at-rest",
        "Data stores, queues, volumes, logs, backups and Kubernetes secrets are encrypted at rest.",
        {
            **_for(RDS_TYPES, rds_storage_encrypted),
            QUEUE_TYPE: sqs_encrypted,
            "aws:sns/topic:Topic": sns_encrypted,
            "aws:ebs/volume:Volume": ebs_volume_encrypted,
            LOG_GROUP_TYPE: log_group_encrypted,
            "aws:backup/vault:Vault": backup_vault_encrypted,
            "aws:ec2/launchTemplate:LaunchTemplate": launch_template_volumes_encrypted,
            **_for(SSE_CONFIG_TYPES, s3_encryption_configuration),
            **_for(EKS_CLUSTER_TYPES, eks_secrets_encrypted),
            TRAIL_TYPE: trail_encrypted,
        },
    ),
    ResourceRule(
        "kms-key-explicit-policy",
        "Every KMS key has its own policy, and only named roles or service principals may use it.",
        {KMS_KEY_TYPE: kms_key_explicit_policy},
    ),
    ResourceRule(
        "no-public-data",
        "No S3 bucket or database is reachable from the internet.",
        {
            PUBLIC_ACCESS_BLOCK_TYPE: s3_public_access_blocked,
            "aws:rds/instance:Instance": rds_not_public,
            "aws:rds/clusterInstance:ClusterInstance": rds_not_public,
        },
    ),
    ResourceRule(
        "s3-tls-only",
        "Bucket policies deny every request that is not made over TLS.",
        {
            BUCKET_POLICY_TYPE: s3_bucket_policy_tls_only,
        },
    ),
    ResourceRule(
        "prod-database-resilience",
        f"Prod databases have deletion protection, Multi-AZ and >= {MIN_PROD_BACKUP_DAYS} days of backups.",
        _for(RDS_TYPES, rds_prod_resilience),
    ),
    ResourceRule(
        "eks-control-plane-logging",
        "EKS control planes send api, audit and authenticator logs.",
        _for(EKS_CLUSTER_TYPES, eks_control_plane_logging),
    ),
    ResourceRule("logs-expire", "CloudWatch log groups have a retention.", {LOG_GROUP_TYPE: log_group_expires}),
    ResourceRule(
        "imdsv2-required",
        "Instances and node groups require IMDSv2 (session tokens).",
        {
            "aws:ec2/launchTemplate:LaunchTemplate": imdsv2_required,
            "aws:ec2/instance:Instance": imdsv2_required,
            "aws:eks/nodeGroup:NodeGroup": imdsv2_required,
            "eks:index:ManagedNodeGroup": imdsv2_required,
            "eks:index:NodeGroupV2": imdsv2_required,
            "eks:index:NodeGroup": imdsv2_required,
        },
    ),
    ResourceRule(
        "pods-non-root-with-limits",
        "Every pod's containers run as non-root with cpu and memory limits.",
        _for(POD_SPEC_PATHS, pods_non_root_with_limits),
    ),
    ResourceRule(
        "audit-trail-integrity",
        "CloudTrail trails cover every region and validate their log files (signed digests).",
        {TRAIL_TYPE: trail_integrity},
    ),
    ResourceRule(
        "prod-https-only",
        "Prod's internet-facing ALBs serve HTTPS with a TLS 1.3 policy; HTTP redirects.",
        {INGRESS_TYPE: prod_alb_https_only},
    ),
)


# --- stack rules: relations between resources ------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource of a stack as a stack rule sees it (built from pulumi-policy's PolicyResource or from the
    mocks' recorded graph)."""

    urn: str
    type: str
    name: str
    props: Mapping[str, Any]
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _refers_to(resource: Resource, key: str, target: Resource, *target_keys: str) -> bool:
    """`resource.<key>` is `target`: by the property dependency (known during preview, when ids are not), or by
    value once ids are known."""
    if target.urn in resource.property_dependencies.get(key, ()):
        return True
    value = resource.props.get(key)
    return value is not None and any(value == target.props.get(k) for k in target_keys)


def _buckets_without(
    resources: Sequence[Resource],
    companion_types: Iterable[str],
    what: str,
    inline: Callable[[Mapping[str, Any]], bool] = lambda props: False,
) -> list[tuple[str, str]]:
    companions = [r for r in resources if r.type in set(companion_types)]
    return [
        (f"bucket {b.name} has no {what}", b.urn)
        for b in resources
        if b.type in BUCKET_TYPES
        and not inline(b.props)
        and not any(_refers_to(c, "bucket", b, "bucket", "id") for c in companions)
    ]


def buckets_encrypted(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    return _buckets_without(resources, SSE_CONFIG_TYPES, "server-side encryption configuration", s3_inline_encryption)


def buckets_public_access_blocked(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    return _buckets_without(resources, [PUBLIC_ACCESS_BLOCK_TYPE], "public access block")


def buckets_tls_only(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    return _buckets_without(
        resources,
        [BUCKET_POLICY_TYPE],
        "TLS-only bucket policy",
        lambda props: denies_insecure_transport(props.get("policy")),
    )


def queues_have_dead_letter_queues(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    """Every queue redrives to a DLQ, except the DLQs themselves: the queues some redrive policy points at."""
    queues = [r for r in resources if r.type == QUEUE_TYPE]
    redrive_sources = queues + [r for r in resources if r.type == REDRIVE_POLICY_TYPE]
    standalone = [r for r in resources if r.type == REDRIVE_POLICY_TYPE]

    def is_dead_letter_queue(queue: Resource) -> bool:
        for source in redrive_sources:
            if queue.urn in source.property_dependencies.get("redrivePolicy", ()):
                return True
            policy = _decoded(source.props.get("redrivePolicy"))
            if (
                isinstance(policy, Mapping)
                and queue.props.get("arn")
                and policy.get("deadLetterTargetArn") == queue.props.get("arn")
            ):
                return True
        return False

    def has_redrive(queue: Resource) -> bool:
        return bool(queue.props.get("redrivePolicy")) or any(
            _refers_to(p, "queueUrl", queue, "url", "id") for p in standalone
        )

    return [
        (f"queue {q.name} has no redrive policy to a dead-letter queue", q.urn)
        for q in queues
        if not has_redrive(q) and not is_dead_letter_queue(q)
    ]


def _trail_targets(trail: Resource, bucket: Resource) -> bool:
    return _refers_to(trail, "s3BucketName", bucket, "bucket", "id")


def _log_buckets(resources: Sequence[Resource]) -> set[str]:
    """Buckets that receive logs (a trail's or S3 access logs): they hold no patient data of their own, and logging
    or replicating them would only log the logging."""
    buckets = [r for r in resources if r.type in BUCKET_TYPES]
    trails = [r for r in resources if r.type == TRAIL_TYPE]
    access_logs = [r for r in resources if r.type in ACCESS_LOGGING_TYPES]
    return {
        b.urn
        for b in buckets
        if any(_trail_targets(t, b) for t in trails)
        or any(_refers_to(a, "targetBucket", b, "bucket", "id") for a in access_logs)
    }


def _object_selector_prefixes(trail: Resource) -> list[str] | None:
    """The object ARN prefixes whose S3 data events the trail records; [] when none, None when every bucket's."""
    prefixes: list[str] = []
    for selector in _as_list(trail.props.get("advancedEventSelectors")):
        fields: dict[str, Any] = {
            str(f.get("field")): f for f in _as_list(_path(selector, "fieldSelectors")) if isinstance(f, Mapping)
        }
        if "Data" not in _as_list(_path(fields, "eventCategory", "equals")):
            continue
        if "AWS::S3::Object" not in _as_list(_path(fields, "resources.type", "equals")):
            continue
        arns = fields.get("resources.ARN")
        if arns is None:
            return None
        prefixes += [str(v) for key in ("startsWiths", "equals") for v in _as_list(arns.get(key))]
    for selector in _as_list(trail.props.get("eventSelectors")):
        for data in _as_list(_path(selector, "dataResources")):
            if isinstance(data, Mapping) and data.get("type") == "AWS::S3::Object":
                values = [str(v) for v in _as_list(data.get("values"))]
                if any(v.rstrip("/") in ("arn:aws:s3", "arn:aws:s3:::") for v in values):
                    return None
                prefixes += values
    return prefixes


def _object_events_logged(bucket: Resource, trails: Sequence[Resource], access_logs: Sequence[Resource]) -> bool:
    if any(_refers_to(a, "bucket", bucket, "bucket", "id") for a in access_logs):
        return True
    arn = bucket.props.get("arn")
    for trail in trails:
        prefixes = _object_selector_prefixes(trail)
        if prefixes is None:
            return True
        if arn and any(p.startswith(f"{arn}/") for p in prefixes):
            return True
        # During a preview the bucket's ARN is unknown: a data selector built from it depends on it.
        if prefixes and bucket.urn in trail.property_dependencies.get("advancedEventSelectors", ()):
            return True
    return False


def prod_patient_buckets_replicated_and_logged(
    resources: Sequence[Resource], environment: str
) -> list[tuple[str, str]]:
    """In prod every bucket but a log bucket holds patients' data (exam PDFs, their replica): each has its object
    reads and writes recorded (CloudTrail data events or S3 access logs), and each that is not itself a replica is
    replicated to a second region."""
    if environment == "dev":
        return []
    trails = [r for r in resources if r.type == TRAIL_TYPE]
    access_logs = [r for r in resources if r.type in ACCESS_LOGGING_TYPES]
    configs = [r for r in resources if r.type == REPLICATION_TYPE]
    logs = _log_buckets(resources)

    def is_replica(bucket: Resource) -> bool:
        arn = bucket.props.get("arn")
        for config in configs:
            if bucket.urn in config.property_dependencies.get("rules", ()):
                return True
            if arn and any(_path(rule, "destination", "bucket") == arn for rule in _as_list(config.props.get("rules"))):
                return True
        return False

    found = []
    for bucket in resources:
        if bucket.type not in BUCKET_TYPES or bucket.urn in logs:
            continue
        if not _object_events_logged(bucket, trails, access_logs):
            found.append(
                (
                    f"bucket {bucket.name} holds patients' data and no trail records its object reads and writes "
                    "(CloudTrail data events) nor does S3 log access to it",
                    bucket.urn,
                )
            )
        if not is_replica(bucket) and not any(_refers_to(c, "bucket", bucket, "bucket", "id") for c in configs):
            found.append(
                (f"bucket {bucket.name} holds patients' data and is not replicated to a second region", bucket.urn)
            )
    return found


def audit_trail_present(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    """The stack records who did what: a trail with validated log files; in prod its log bucket has Object Lock."""
    trails = [t for t in resources if t.type == TRAIL_TYPE and _true(t.props.get("enableLogFileValidation"))]
    if not trails:
        return [("the stack has no CloudTrail trail with log file validation: nothing records who did what", "")]
    if environment == "dev":
        return []
    buckets = [r for r in resources if r.type in BUCKET_TYPES]
    return [
        (f"bucket {b.name} receives the audit trail and has no Object Lock (objectLockEnabled) in prod", b.urn)
        for t in trails
        for b in buckets
        if _trail_targets(t, b) and not _true(b.props.get("objectLockEnabled"))
    ]


# SQS's own keys: the AWS managed key's policy lets every principal of the account that may use SQS decrypt, and
# SSE-SQS has no key policy at all. Queues carrying patients' names and addresses use the clinic's key.
AWS_MANAGED_SQS_KEYS = ("alias/aws/sqs",)


def queues_on_customer_keys(resources: Sequence[Resource], environment: str) -> list[tuple[str, str]]:
    keys = [r for r in resources if r.type == KMS_KEY_TYPE]
    found = []
    for queue in (r for r in resources if r.type == QUEUE_TYPE):
        key_id = queue.props.get("kmsMasterKeyId")
        on_stack_key = any(_refers_to(queue, "kmsMasterKeyId", k, "arn", "keyId", "id") for k in keys)
        external_key = isinstance(key_id, str) and key_id.startswith("arn:") and ":key/" in key_id
        if _true(queue.props.get("sqsManagedSseEnabled")) or key_id in AWS_MANAGED_SQS_KEYS:
            found.append((f"queue {queue.name} uses an SQS-owned key ({key_id or 'SSE-SQS'})", queue.urn))
        elif not (on_stack_key or external_key):
            found.append((f"queue {queue.name} is not encrypted with a customer-managed KMS key", queue.urn))
    return found


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: Callable[[Sequence[Resource], str], list[tuple[str, str]]]


STACK_RULES: tuple[StackRule, ...] = (
    StackRule("s3-bucket-encrypted", "Every bucket has a server-side encryption configuration.", buckets_encrypted),
    StackRule(
        "s3-bucket-public-access-blocked", "Every bucket has a public access block.", buckets_public_access_blocked
    ),
    StackRule("s3-bucket-tls-only", "Every bucket has a TLS-only bucket policy.", buckets_tls_only),
    StackRule(
        "sqs-customer-managed-key",
        "Every queue is encrypted with a customer-managed KMS key (not SSE-SQS, not alias/aws/sqs).",
        queues_on_customer_keys,
    ),
    StackRule(
        "sqs-dead-letter-queue",
        "Every queue that is not a dead-letter queue has a redrive policy.",
        queues_have_dead_letter_queues,
    ),
    StackRule(
        "audit-trail",
        "A CloudTrail trail with validated log files records the account's activity; in prod into a locked bucket.",
        audit_trail_present,
    ),
    StackRule(
        "prod-patient-data-replicated-and-logged",
        "Prod buckets holding patients' data have their object access logged and are replicated to a second region.",
        prod_patient_buckets_replicated_and_logged,
    ),
)


# --- running them ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    rule: str
    urn: str
    message: str


def check_resource(resource_type: str, props: Mapping[str, Any], environment: str) -> list[tuple[str, str]]:
    """(rule name, message) for every resource rule `props` breaks."""
    return [
        (rule.name, message)
        for rule in RESOURCE_RULES
        if resource_type in rule.checks
        for message in rule.checks[resource_type](resource_type, props, environment)
    ]


def check_stack(
    inputs: Sequence[Resource], outputs: Sequence[Resource] | None = None, environment: str = "prod"
) -> list[Violation]:
    """Every rule over a whole stack: resource rules on each resource's inputs, stack rules on `outputs`
    (inputs plus what the provider returned; the inputs when not given)."""
    found = [
        Violation(name, r.urn, message)
        for r in inputs
        for name, message in check_resource(r.type, r.props, environment)
    ]
    for rule in STACK_RULES:
        found += [Violation(rule.name, urn, message) for message, urn in rule.check(outputs or inputs, environment)]
    return found


# --- enforcement -----------------------------------------------------------------------------------------------


def stack_environment(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(stack, environment) of the stack being checked, from the variables the Pulumi CLI gives a policy pack's
    process: PULUMI_STACK, and PULUMI_CONFIG (the stack's config as JSON) for `clinic-platform:environment`."""
    stack = env.get("PULUMI_STACK") or None
    try:
        config = json.loads(env.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        config = {}
    environment = config.get(f"{PROJECT}:environment") if isinstance(config, dict) else None
    if environment is None and stack:
        # Organisation-qualified names ("acme/clinic-platform/prod") end with the stack's own name.
        environment = {"dev": "dev", "prod": "prod"}.get(stack.rsplit("/", 1)[-1])
    return stack, environment


def effective_environment(environment: str | None) -> str:
    """Anything not known to be dev is held to prod's rules: a guardrail fails closed."""
    return "dev" if environment == "dev" else "prod"


def enforcement_level(environment: str | None) -> str:
    """Advisory on dev (violations are reported, the update goes on); mandatory everywhere else."""
    return ADVISORY if effective_environment(environment) == "dev" else MANDATORY
