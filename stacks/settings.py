"""Typed stack settings: the only place that reads Pulumi config.

One pydantic model per config group (`network`, `cluster`, ...), with the camelCase keys of the stack files as
aliases, bounds on the fields and the rules between fields (and the stricter ones of prod) as model validators. Each
environment's defaults are model instances (DEFAULTS); a stack file overrides them key by key. The validated models
are frozen and are what the program reads (`settings.network.vpc_cidr`).

`load_settings(raw, stack=..., region=...)` is a pure function over the project's config values, so every rule is
tested without Pulumi; `settings_from_pulumi()` feeds it the running stack's config once. Every problem is collected
and raised together in StackSettingsError, one line each naming the key, the value and what is allowed, before any
resource is registered. Pydantic's own error texts never reach the user: `_problems` words them from the field's
`Allowed` text.
"""

import datetime
import difflib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import GroupedMetadata
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from limits import (
    API_POD_DB_CONNECTIONS,
    CI_COMPUTE_TYPES,
    CONNECTION_ARN_PATTERN,
    DB_CONNECTIONS_ALARM_FRACTION,
    DB_INSTANCE_CLASSES,
    DB_INSTANCE_ID_PATTERN,
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    GITHUB_REPOSITORY_PATTERN,
    LOG_RETENTION_DAYS,
    MAX_AUDIT_RETENTION_DAYS,
    MIN_PROD_AUDIT_RETENTION_DAYS,
    MIN_PROD_BACKUP_DAYS,
    MIN_PROD_VAULT_RETENTION_DAYS,
    NAT_MODES,
    NOTIFIER_POD_DB_CONNECTIONS,
    RDS_MONITORING_INTERVALS,
    REGION_PATTERN,
    ROLE_ARN_PATTERN,
    is_graviton,
    max_db_connections,
    peak_app_db_connections,
)
from limits.capacity import (
    DAEMONSETS_PER_NODE,
    INSTANCE_TYPES,
    MONITORING_PER_NODE,
    TURN_SIDECAR,
    NodeGroupCapacity,
    capacity_problem,
)
from limits.eks_support import EKS_SUPPORT, extended_support_problem

ENVIRONMENTS: tuple[str, ...] = ("dev", "prod")
Environment = Literal["dev", "prod"]
# Major versions only: RDS applies minor upgrades itself (auto_minor_version_upgrade), a major upgrade is a decision.
POSTGRES_MAJOR_VERSIONS: tuple[str, ...] = ("15", "16", "17")
# The versions of the EKS release calendar (limits/eks_support.py); prod refuses one in extended support.
KUBERNETES_VERSIONS: tuple[str, ...] = tuple(EKS_SUPPORT)
CAPACITY_TYPES: tuple[str, ...] = ("ON_DEMAND", "SPOT")
# Burstable classes run out of CPU credits under sustained load and do not support Performance Insights' long
# retention; prod must use a fixed-performance class.
BURSTABLE_PREFIX = "db.t"
# PostgreSQL and RDS reserve these as master user names.
RESERVED_DB_USERNAMES: frozenset[str] = frozenset({"postgres", "rdsadmin", "admin", "root", "user", "public"})
MIN_AZS, MAX_AZS = 2, 4  # EKS needs subnets in at least two AZs; carving below leaves room for four.
MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 20


class StackSettingsError(ValueError):
    """Raised with every problem found in a stack's configuration, one per line."""

    def __init__(self, stack: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stack '{stack}' has {len(problems)} invalid setting(s):\n{lines}")


# --- field types: each says, in `Allowed`, what a stack file may put there ----------------------------------------


class Allowed:
    """Annotated metadata: what a value of this field may be, in the words of the error message and README."""

    def __init__(self, text: str):
        self.text = text


@dataclass(frozen=True)
class Checks(GroupedMetadata):
    """Annotated metadata for `Annotated[int, Between(1, 5)]`: a field's constraints, validators and `Allowed` text in
    one item, which pydantic expands in place (annotated-types' GroupedMetadata). A factory returning metadata, not a
    type, keeps the field's type visible to type checkers."""

    items: tuple[Any, ...]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


def _refuse(allowed: str) -> PydanticCustomError:
    """A field's own check failed for a reason more precise than its `Allowed` text."""
    return PydanticCustomError("setting", "{allowed}", {"allowed": allowed})


def _number_from_text(value: Any) -> Any:
    # `pulumi config set` stores numbers as strings; `true` for a number stays a mistake worth naming.
    return int(value) if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()) else value


def _bool_from_text(value: Any) -> Any:
    return value.lower() == "true" if isinstance(value, str) and value.lower() in ("true", "false") else value


def _text_from_number(value: Any) -> Any:
    # `engineVersion: 16` in YAML is a number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def Between(low: int, high: int) -> Checks:  # noqa: N802 - reads as a type in annotations
    return Checks(
        (
            Field(strict=True, ge=low, le=high),
            BeforeValidator(_number_from_text),
            Allowed(f"an integer from {low} to {high}"),
        )
    )


Flag = Annotated[bool, Field(strict=True), BeforeValidator(_bool_from_text), Allowed("true or false")]


def OneOf(*values: str) -> Checks:  # noqa: N802
    allowed = "one of " + ", ".join(values)

    def check(value: str) -> str:
        if value not in values:
            raise _refuse(allowed)
        return value

    return Checks((Field(strict=True), BeforeValidator(_text_from_number), AfterValidator(check), Allowed(allowed)))


def Matching(pattern: str, allowed: str) -> Checks:  # noqa: N802
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _refuse(allowed)
        return value

    return Checks((Field(strict=True), AfterValidator(check), Allowed(allowed)))


def _is_log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise _refuse("a CloudWatch Logs retention: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    return days


def _is_monitoring_interval(seconds: int) -> int:
    if seconds not in RDS_MONITORING_INTERVALS:
        raise _refuse("one of " + ", ".join(map(str, RDS_MONITORING_INTERVALS)) + " (seconds; 0 is off)")
    return seconds


LogRetention = Annotated[
    int,
    Field(strict=True),
    BeforeValidator(_number_from_text),
    AfterValidator(_is_log_retention),
    Allowed("a CloudWatch Logs retention value"),
]


def PrivateCidr(low: int, high: int) -> Checks:  # noqa: N802
    def check(value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise _refuse(f"an IPv4 CIDR with no host bits set ({exc})") from None
        if not net.is_private:
            raise _refuse("a private (RFC 1918) range such as 10.0.0.0/16")
        if not low <= net.prefixlen <= high:
            raise _refuse(f"a prefix length from /{low} to /{high}")
        return value

    return Checks((Field(strict=True), AfterValidator(check), Allowed(f"a private IPv4 CIDR, /{low} to /{high}")))


def _public_access_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise _refuse("CIDRs with no host bits set, such as 203.0.113.0/24") from None
    if net.prefixlen == 0:
        raise _refuse("the CIDRs of your office/VPN/CI egress, never the whole internet")
    return value


def IanaZone() -> Checks:  # noqa: N802
    allowed = "an IANA time zone name such as America/Sao_Paulo"

    def check(value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _refuse(allowed) from None
        return value

    return Checks((Field(strict=True), AfterValidator(check), Allowed(allowed)))


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+)(:\d{1,5})?")


def _cors_origin(value: str, info: ValidationInfo) -> str:
    match = _ORIGIN.fullmatch(value)
    local = match is not None and match.group(2) in ("localhost", "127.0.0.1")
    if match is None or (match.group(1) == "http" and (_is_prod(info) or not local)):
        raise _refuse("scheme://host[:port] with https (http only for localhost in dev), no path, no wildcard")
    return value


def _not_reserved(username: str) -> str:
    if username.lower() in RESERVED_DB_USERNAMES:
        raise _refuse("a name not reserved by PostgreSQL/RDS: not " + ", ".join(sorted(RESERVED_DB_USERNAMES)))
    return username


def _tag_key(key: str) -> str:
    if key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
        raise _refuse("1-128 characters, not starting with 'aws:'")
    return key


Domain = Annotated[str, Matching(DOMAIN_PATTERN, "a lowercase DNS domain such as clinic.example.org")]
Email = Annotated[str, Matching(EMAIL_PATTERN, "an email address such as no-reply@clinic.example.org")]
Region = Annotated[str, Matching(REGION_PATTERN, "an AWS region such as eu-west-1")]
# A tag (0.1.0, a git SHA), a digest (sha256:<64 hex>), or a full reference (registry/repo:tag or repo@sha256:...).
Image = Annotated[
    str,
    Matching(
        r"(sha256:[0-9a-f]{64}|[\w][\w.-]{0,127}"
        r"|[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64}))",
        "an image tag (0.1.0), a digest (sha256:...) or a full reference (registry/repo:tag)",
    ),
]
MOVING_TAGS = ("latest", "main", "dev")
RoleArn = Annotated[
    str, Matching(ROLE_ARN_PATTERN, "IAM role ARNs such as arn:aws:iam::123456789012:role/platform-admin")
]
InstanceType = Annotated[
    str, Matching(r"[a-z][a-z0-9-]*\.[a-z0-9]+", 'a non-empty list of EC2 instance types such as ["m6i.large"]')
]


# --- rules between fields ------------------------------------------------------------------------------------------


def _is_prod(info: ValidationInfo) -> bool:
    return (info.context or {}).get("environment") == "prod"


class _Rules:
    """Collects a model's broken rules so all of them are reported together, each with its key and value."""

    def __init__(self) -> None:
        self.broken: list[tuple[str, Any, str]] = []

    def check(self, ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            self.broken.append((key, value, allowed))

    def raise_any(self) -> None:
        if self.broken:
            raise PydanticCustomError(
                "settings_rules", "{count} rule(s) broken", {"count": len(self.broken), "problems": self.broken}
            )


class _Group(BaseModel):
    """A config group: camelCase keys, no unknown key, frozen once validated."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )


# --- the groups ----------------------------------------------------------------------------------------------------


class NetworkSettings(_Group):
    vpc_cidr: Annotated[str, PrivateCidr(MIN_VPC_PREFIX, MAX_VPC_PREFIX)]
    """IPv4 CIDR of the VPC, RFC 1918, /16 to /20."""
    az_count: Annotated[int, Between(MIN_AZS, MAX_AZS)]
    """Availability zones to spread subnets over (and no more than the region has)."""
    nat_mode: Annotated[str, OneOf(*NAT_MODES)]
    """`single` shared NAT gateway (cheap) or `per-az` (one per AZ, no cross-AZ single point of failure)."""
    flow_logs: Flag
    """Send VPC flow logs (all traffic) to CloudWatch Logs."""
    flow_log_retention_days: LogRetention
    """Retention of the flow-log group, a value CloudWatch accepts."""
    kubernetes_service_cidr: Annotated[str, PrivateCidr(12, 24)]
    """Kubernetes Service CIDR of the cluster; must not overlap the VPC."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "NetworkSettings":
        rules, prod = _Rules(), _is_prod(info)
        vpc, services = ipaddress.IPv4Network(self.vpc_cidr), ipaddress.IPv4Network(self.kubernetes_service_cidr)
        rules.check(
            not vpc.overlaps(services),
            "kubernetesServiceCidr",
            self.kubernetes_service_cidr,
            f"a CIDR that does not overlap network.vpcCidr {vpc}",
        )
        rules.check(
            not prod or self.nat_mode == "per-az",
            "natMode",
            self.nat_mode,
            "per-az in prod (a single NAT gateway is a single point of failure)",
        )
        rules.check(
            not prod or self.flow_logs,
            "flowLogs",
            self.flow_logs,
            "true in prod (network access to patient data must be auditable)",
        )
        rules.raise_any()
        return self


class NodeGroupSettings(_Group):
    name: Annotated[
        str, Matching(r"[a-z][a-z0-9-]{0,30}", "1-31 lowercase letters, digits or -, starting with a letter")
    ]
    """Managed node group name (stable: a rename replaces the group)."""
    instance_types: Annotated[
        tuple[InstanceType, ...],
        Field(min_length=1),
        Allowed('a non-empty list of EC2 instance types such as ["m6i.large"]'),
    ]
    """EC2 instance types, all of one architecture."""
    capacity_type: Annotated[str, OneOf(*CAPACITY_TYPES)] = "SPOT"
    """ON_DEMAND or SPOT (dev only)."""
    min_size: Annotated[int, Between(0, 100)] = 1
    """Lower scaling bound."""
    desired_size: Annotated[int, Between(0, 100)] = 2
    """Initial size; later owned by the autoscaler."""
    max_size: Annotated[int, Between(1, 100)] = 3
    """Upper scaling bound."""
    max_unavailable: Annotated[int, Between(1, 100)] = 1
    """Nodes replaced at once during a rolling update."""
    disk_size_gb: Annotated[int, Between(20, 1000)] = 30
    """Encrypted gp3 root volume size."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "NodeGroupSettings":
        rules, prod = _Rules(), _is_prod(info)
        rules.check(
            len({is_graviton(t) for t in self.instance_types}) == 1,
            "instanceTypes",
            list(self.instance_types),
            "instance types of one architecture (all Graviton or all x86)",
        )
        # The node capacity check needs each type's allocatable CPU and memory (limits/capacity.py).
        rules.check(
            all(t in INSTANCE_TYPES for t in self.instance_types),
            "instanceTypes",
            list(self.instance_types),
            "types whose capacity the stack knows: " + ", ".join(INSTANCE_TYPES),
        )
        rules.check(
            not prod or self.capacity_type == "ON_DEMAND",
            "capacityType",
            self.capacity_type,
            "ON_DEMAND in prod (spot nodes can be reclaimed with two minutes' notice)",
        )
        rules.check(
            self.min_size <= self.desired_size <= self.max_size,
            "desiredSize",
            self.desired_size,
            f"minSize <= desiredSize <= maxSize (got {self.min_size} <= {self.desired_size} <= {self.max_size})",
        )
        az_count = (info.context or {}).get("az_count")
        rules.check(
            not prod or az_count is None or self.min_size >= az_count,
            "minSize",
            self.min_size,
            f"at least network.azCount ({az_count}) in prod, one node per AZ",
        )
        rules.check(
            self.max_unavailable <= self.max_size,
            "maxUnavailable",
            self.max_unavailable,
            f"at most maxSize ({self.max_size})",
        )
        rules.raise_any()
        return self


class ClusterSettings(_Group):
    kubernetes_version: Annotated[str, OneOf(*KUBERNETES_VERSIONS)]
    """Pinned EKS Kubernetes version."""
    public_access_cidrs: Annotated[
        tuple[Annotated[str, Field(strict=True), AfterValidator(_public_access_cidr)], ...],
        Allowed("CIDRs (never /0); empty keeps the endpoint private only"),
    ]
    """CIDRs that may reach the public API endpoint; empty keeps the endpoint private only."""
    deploy_role_arn: (
        Annotated[
            str,
            Matching(
                ROLE_ARN_PATTERN,
                "the IAM role ARN CI's deploy jobs assume, such as arn:aws:iam::123456789012:role/clinic-deploy",
            ),
        ]
        | None
    ) = None
    """The role CI's deploy and destroy jobs assume: cluster admin through an access entry (required)."""
    preview_role_arn: (
        Annotated[
            str,
            Matching(
                ROLE_ARN_PATTERN,
                "the IAM role ARN pull-request previews assume, such as arn:aws:iam::123456789012:role/clinic-preview",
            ),
        ]
        | None
    ) = None
    """The role pull-request previews assume: a read-only access entry (AmazonEKSAdminViewPolicy)."""
    admin_role_arns: Annotated[tuple[RoleArn, ...], Allowed("IAM role ARNs given cluster-admin via access entries")]
    """Operators' IAM roles given cluster-admin through EKS access entries."""
    viewer_role_arns: Annotated[
        tuple[RoleArn, ...], Allowed("IAM role ARNs given AmazonEKSViewPolicy (no Secrets) via access entries")
    ] = ()
    """Operators' IAM roles that may only look (AmazonEKSViewPolicy, no Secrets)."""
    node_groups: Annotated[
        tuple[NodeGroupSettings, ...], Field(min_length=1), Allowed("a non-empty list of node groups (see README)")
    ]
    """Managed node groups."""
    janitor_timeout_seconds: Annotated[int, Between(60, 3600)]
    """How long destroy waits for Kubernetes-made load balancers and their network interfaces to go."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "ClusterSettings":
        rules, names = _Rules(), [group.name for group in self.node_groups]
        rules.check(len(set(names)) == len(names), "nodeGroups", names, "node groups with distinct names")
        roles = [self.deploy_role_arn, self.preview_role_arn, *self.admin_role_arns, *self.viewer_role_arns]
        for arn in sorted({arn for arn in roles if arn and roles.count(arn) > 1}):
            rules.check(
                False,
                "adminRoleArns",
                arn,
                "each role in one place only among deployRoleArn, "
                "previewRoleArn, adminRoleArns and viewerRoleArns (EKS keeps one access entry per role)",
            )
        # Extended support bills every cluster hour on top; dev runs such a version with a warning from Cluster.
        support = extended_support_problem(
            self.kubernetes_version, (info.context or {}).get("today") or datetime.date.today()
        )
        rules.check(
            not (_is_prod(info) and support),
            "kubernetesVersion",
            self.kubernetes_version,
            f"a version in EKS standard support in prod: {support}",
        )
        rules.raise_any()
        return self


class CiSettings(_Group):
    github_connection_arn: (
        Annotated[
            str,
            Matching(
                CONNECTION_ARN_PATTERN,
                "an AWS CodeConnections connection ARN such as "
                "arn:aws:codeconnections:eu-west-1:123456789012:connection/<uuid>",
            ),
        ]
        | None
    ) = None
    """GitHub connection of the in-VPC CI runner (components/ci_runner.py); unset: no runner."""
    repository: Annotated[str, Matching(GITHUB_REPOSITORY_PATTERN, "a GitHub repository as owner/name")] | None = None
    """GitHub repository `owner/name` whose workflow jobs the runner takes (required with the connection)."""
    compute_type: Annotated[str, OneOf(*CI_COMPUTE_TYPES)] = "BUILD_GENERAL1_MEDIUM"
    """CodeBuild compute type of each runner build."""
    build_timeout_minutes: Annotated[int, Between(60, 480)] = 150
    """A runner build (one job) stops after this long: at least every runner job's timeout-minutes."""

    @model_validator(mode="after")
    def _rules(self) -> "CiSettings":
        rules = _Rules()
        rules.check(
            self.github_connection_arn is None or self.repository is not None,
            "repository",
            self.repository,
            "the GitHub repository owner/name whose jobs the runner takes (required with ci.githubConnectionArn)",
        )
        rules.raise_any()
        return self


class DatabaseSettings(_Group):
    engine_version: Annotated[str, OneOf(*POSTGRES_MAJOR_VERSIONS)]
    """PostgreSQL major version; minors are applied by RDS."""
    instance_class: Annotated[str, OneOf(*DB_INSTANCE_CLASSES)]
    """RDS instance class (prod: not burstable)."""
    allocated_storage_gb: Annotated[int, Between(20, 16384)]
    """Initial gp3 storage."""
    max_allocated_storage_gb: Annotated[int, Between(20, 65536)]
    """Ceiling for storage autoscaling (>= allocated)."""
    backup_retention_days: Annotated[int, Between(1, 35)]
    """Automated backups and point-in-time recovery window (prod >= 14)."""
    multi_az: Flag
    """Synchronous standby in a second AZ."""
    deletion_protection: Flag
    """RDS refuses deletion while set; required in prod."""
    performance_insights: Flag
    """Performance Insights (KMS-encrypted)."""
    monitoring_interval_seconds: Annotated[
        int,
        Field(strict=True),
        BeforeValidator(_number_from_text),
        AfterValidator(_is_monitoring_interval),
        Allowed("one of " + ", ".join(map(str, RDS_MONITORING_INTERVALS)) + " (0 is off; prod: not 0)"),
    ]
    """RDS Enhanced Monitoring: OS metrics every this many seconds, into CloudWatch Logs (RDSOSMetrics)."""
    name: Annotated[
        str, Matching(r"[a-z][a-z0-9_]{0,62}", "1-63 lowercase letters, digits or _, starting with a letter")
    ]
    """Name of the application database."""
    username: Annotated[
        str,
        Matching(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", "1-16 letters, digits or _, starting with a letter"),
        AfterValidator(_not_reserved),
    ]
    """Master user name; its password is generated and kept by RDS in Secrets Manager."""
    restored_instance_id: (
        Annotated[
            str,
            Matching(
                DB_INSTANCE_ID_PATTERN,
                "an RDS instance identifier (1-63 lowercase letters, digits or -, starting with a letter)",
            ),
        ]
        | None
    ) = None
    """An instance restored by `python -m ops.db_restore`; when set, the apps and the alarms use it instead
    of the instance this stack created (which stays, protected, for comparison and forensics)."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "DatabaseSettings":
        rules, prod = _Rules(), _is_prod(info)
        rules.check(
            not prod or not self.instance_class.startswith(BURSTABLE_PREFIX),
            "instanceClass",
            self.instance_class,
            "a non-burstable class in prod (db.m7g.* or db.r7g.*)",
        )
        rules.check(
            self.max_allocated_storage_gb >= self.allocated_storage_gb,
            "maxAllocatedStorageGb",
            self.max_allocated_storage_gb,
            f"at least database.allocatedStorageGb ({self.allocated_storage_gb})",
        )
        rules.check(
            not prod or self.backup_retention_days >= MIN_PROD_BACKUP_DAYS,
            "backupRetentionDays",
            self.backup_retention_days,
            f"{MIN_PROD_BACKUP_DAYS} to 35 in prod",
        )
        rules.check(not prod or self.multi_az, "multiAz", self.multi_az, "true in prod (a standby in a second AZ)")
        rules.check(
            not prod or self.monitoring_interval_seconds > 0,
            "monitoringIntervalSeconds",
            self.monitoring_interval_seconds,
            "1, 5, 10, 15, 30 or 60 in prod (the database's OS metrics are watched)",
        )
        rules.check(
            not prod or self.deletion_protection,
            "deletionProtection",
            self.deletion_protection,
            "true in prod (the database holds patients' data)",
        )
        rules.raise_any()
        return self


class StorageSettings(_Group):
    noncurrent_version_days: Annotated[int, Between(1, 3650)]
    """Days a replaced or deleted exam PDF version is kept before it expires."""
    cors_allowed_origins: Annotated[
        tuple[Annotated[str, Field(strict=True), AfterValidator(_cors_origin)], ...],
        Allowed("`https://host[:port]` (dev also `http://localhost`)"),
    ]
    """Browser origins allowed to PUT/GET with presigned URLs."""
    replicate_exams: Flag = False
    """Replicate every new exam PDF to a bucket in backup.copyRegion under that region's key (required in prod)."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "StorageSettings":
        rules = _Rules()
        rules.check(
            not _is_prod(info) or self.replicate_exams,
            "replicateExams",
            self.replicate_exams,
            "true in prod (exam PDFs must survive the loss of the stack's region)",
        )
        rules.raise_any()
        return self


class AuditSettings(_Group):
    retention_days: Annotated[int, Between(1, MAX_AUDIT_RETENTION_DAYS)]
    """Days the audit trail's log files are kept (and, in prod, locked against deletion); prod >= 6 years."""
    reader_role_arns: Annotated[
        tuple[RoleArn, ...], Allowed("IAM role ARNs such as arn:aws:iam::123456789012:role/clinic-auditor")
    ] = ()
    """Roles that may decrypt the audit log files (auditors); nobody else may use the trail's key."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "AuditSettings":
        rules = _Rules()
        rules.check(
            not _is_prod(info) or self.retention_days >= MIN_PROD_AUDIT_RETENTION_DAYS,
            "retentionDays",
            self.retention_days,
            f"{MIN_PROD_AUDIT_RETENTION_DAYS} to {MAX_AUDIT_RETENTION_DAYS} in prod (six years of who read patients' "
            "data)",
        )
        rules.raise_any()
        return self


class EmailSettings(_Group):
    from_address: Email
    """The From address of the clinic's notifications (required; in prod at email.domain)."""
    domain: Domain | None = None
    """Sending domain verified with DKIM (required in prod)."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "EmailSettings":
        rules = _Rules()
        rules.check(
            self.domain is not None or not _is_prod(info),
            "domain",
            self.domain,
            "a domain in prod (sending from a DKIM-verified domain, not a single address)",
        )
        rules.check(
            not self.domain or self.from_address.lower().endswith("@" + self.domain),
            "fromAddress",
            self.from_address,
            f"an address at email.domain ({self.domain})",
        )
        rules.raise_any()
        return self


class ImageSettings(_Group):
    api: Image
    """Image of the API: a tag or digest in the stack's ECR repository, or a full image reference."""
    notifier: Image
    """Image of the notifier, likewise."""
    file_processor: Image
    """Image of the file processor, likewise."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "ImageSettings":
        rules = _Rules()
        for key, image in (("api", self.api), ("notifier", self.notifier), ("fileProcessor", self.file_processor)):
            rules.check(
                not _is_prod(info) or image.rsplit(":", 1)[-1] not in MOVING_TAGS,
                key,
                image,
                "an immutable tag or a digest in prod, not a moving tag",
            )
        rules.raise_any()
        return self


class AppsSettings(_Group):
    api_replicas: Annotated[int, Between(1, 50)]
    """API replicas at rest (the HPA's minimum; prod >= 2)."""
    api_max_replicas: Annotated[int, Between(1, 100)]
    """HPA ceiling for the API (within the database's connection budget)."""
    notifier_replicas: Annotated[int, Between(1, 20)]
    """Notifier replicas."""
    hostname: Annotated[str, Matching(DOMAIN_PATTERN, "a lowercase DNS name such as clinic.example.org")] | None = None
    """Public host name of the clinic (Ingress rule, and the host of the links the API emails); required."""
    certificate_arn: (
        Annotated[
            str, Matching(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}", "an ACM certificate ARN")
        ]
        | None
    ) = None
    """ACM certificate for HTTPS on the ALB (HTTP redirects to HTTPS when set)."""
    time_zone: Annotated[str, IanaZone()] = "America/Sao_Paulo"
    """The clinic's IANA time zone: doctors' weekly hours are wall-clock hours in it, and pages and emails show
    times on its clock."""
    hosted_zone_id: (
        Annotated[str, Matching(r"Z[A-Z0-9]{1,31}", "a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ")] | None
    ) = None
    """Route 53 hosted zone of the host name: the host name's record (an alias to the ALB) goes there, and, without
    a certificate ARN, the DNS validation of the certificate the program issues."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "AppsSettings":
        rules, region = _Rules(), (info.context or {}).get("region")
        rules.check(
            self.api_max_replicas >= self.api_replicas,
            "apiMaxReplicas",
            self.api_max_replicas,
            f"at least apps.apiReplicas ({self.api_replicas})",
        )
        rules.check(
            not _is_prod(info) or self.api_replicas >= 2,
            "apiReplicas",
            self.api_replicas,
            "2 or more in prod (a rolling update or a lost node must not stop the API)",
        )
        if self.certificate_arn is not None:
            rules.check(
                self.certificate_arn.split(":")[3] == region,
                "certificateArn",
                self.certificate_arn,
                f"a certificate in aws:region ({region}), where the ALB is",
            )
        if self.hosted_zone_id is not None:
            rules.check(
                self.hostname is not None,
                "hostedZoneId",
                self.hosted_zone_id,
                "unset unless apps.hostname is set (the record and the certificate are for that name)",
            )
        rules.check(
            not _is_prod(info)
            or self.certificate_arn is not None
            or (self.hosted_zone_id is not None and self.hostname is not None),
            "certificateArn",
            self.certificate_arn,
            "in prod, an ACM certificate ARN, or apps.hostname with apps.hostedZoneId so the program issues "
            "one (patients' data never crosses the internet unencrypted)",
        )
        rules.raise_any()
        return self


class ObservabilitySettings(_Group):
    monitoring: Flag
    """In-cluster kube-prometheus-stack (Prometheus, Alertmanager, Grafana); required in prod."""
    prometheus_retention_days: Annotated[int, Between(1, 90)]
    """Days Prometheus keeps samples."""
    prometheus_storage_gb: Annotated[int, Between(10, 1000)]
    """Size of Prometheus' persistent volume (encrypted gp3)."""
    log_retention_days: LogRetention
    """Retention of the container and control-plane log groups, a value CloudWatch accepts."""
    alarm_emails: Annotated[
        tuple[Annotated[str, Matching(EMAIL_PATTERN, "email addresses such as oncall@clinic.example.org")], ...],
        Allowed("email addresses such as oncall@clinic.example.org"),
    ]
    """Addresses subscribed to the alarm topic (each confirms by email); at least one in prod."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "ObservabilitySettings":
        rules, prod, emails = _Rules(), _is_prod(info), list(self.alarm_emails)
        rules.check(
            not prod or self.monitoring,
            "monitoring",
            self.monitoring,
            "true in prod (the clinic's SLOs are watched in-cluster)",
        )
        rules.check(len(set(emails)) == len(emails), "alarmEmails", emails, "addresses without repeats")
        rules.check(
            not prod or bool(emails),
            "alarmEmails",
            emails,
            "at least one address in prod (an alarm nobody receives protects nobody)",
        )
        rules.raise_any()
        return self


class BackupSettings(_Group):
    enabled: Flag
    """AWS Backup plan and KMS-encrypted vault for the database (daily recovery points); required in prod."""
    retention_days: Annotated[int, Between(7, 3650)]
    """Days a daily recovery point is kept (prod >= 35)."""
    copy_region: Region | None = None
    """A second region that receives a copy of every recovery point, or None."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "BackupSettings":
        rules, prod, region = _Rules(), _is_prod(info), (info.context or {}).get("region")
        rules.check(
            not prod or self.enabled,
            "enabled",
            self.enabled,
            "true in prod (daily recovery points of patients' data, kept apart from RDS)",
        )
        rules.check(
            not prod or self.retention_days >= MIN_PROD_VAULT_RETENTION_DAYS,
            "retentionDays",
            self.retention_days,
            f"{MIN_PROD_VAULT_RETENTION_DAYS} to 3650 in prod",
        )
        if self.copy_region is not None:
            rules.check(
                self.copy_region != region, "copyRegion", self.copy_region, f"a region other than aws:region ({region})"
            )
            rules.check(
                self.enabled,
                "copyRegion",
                self.copy_region,
                "unset unless backup.enabled is true (only recovery points are copied)",
            )
        rules.raise_any()
        return self


class TelemedicineSettings(_Group):
    enabled: Flag
    """Jitsi Meet for video visits (web, prosody, jicofo, videobridge + TURN behind an NLB with Elastic IPs)."""
    hostname: (
        Annotated[str, Matching(DOMAIN_PATTERN, "a lowercase DNS name such as meet.clinic.example.org")] | None
    ) = None
    """Public host name of the video service (its own rule on the clinic's ALB); default meet.<apps.hostname>."""
    certificate_arn: (
        Annotated[
            str, Matching(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}", "an ACM certificate ARN")
        ]
        | None
    ) = None
    """ACM certificate for the host name; without it the program issues one in apps.hostedZoneId."""
    jvb_replicas: Annotated[int, Between(1, 10)] = 1
    """Videobridges: 1 (the bridge advertises the NLB's addresses as its own; a second would need its own NLB)."""
    jvb_cpu_millis: Annotated[int, Between(500, 8000)] = 1000
    """CPU the videobridge requests (and its limit), in millicores."""
    jvb_memory_mib: Annotated[int, Between(1024, 16384)] = 2048
    """Memory the videobridge requests (and its limit), in MiB; its JVM heap is sized from it."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "TelemedicineSettings":
        rules = _Rules()
        rules.check(
            self.jvb_replicas == 1,
            "jvbReplicas",
            self.jvb_replicas,
            "1: a videobridge advertises the NLB's Elastic IPs as its own address, so a second bridge behind the "
            "same NLB would receive media meant for the first; more bridges need one NLB and address set each, and "
            "Octo between them (not built)",
        )
        if self.certificate_arn is not None:
            region = (info.context or {}).get("region")
            rules.check(
                self.certificate_arn.split(":")[3] == region,
                "certificateArn",
                self.certificate_arn,
                f"a certificate in aws:region ({region}), where the ALB is",
            )
        rules.raise_any()
        return self


TagKey = Annotated[str, AfterValidator(_tag_key), Allowed("1-128 characters, not starting with 'aws:'")]
TagValue = Annotated[str, Field(strict=True, max_length=256), Allowed("a string of at most 256 characters")]


class PlatformSettings(_Group):
    """The whole stack: its groups, plus the stack name and region, which come from Pulumi rather than the file."""

    stack: str
    """Pulumi stack name."""
    region: Region
    """AWS region (aws:region)."""
    environment: Environment
    """dev (cheap, destroyable) or prod (resilient, retains data)."""
    cluster_name: Annotated[
        str, Matching(r"[a-z][a-z0-9-]{1,38}[a-z0-9]", "3-40 lowercase letters, digits or -, starting with a letter")
    ]
    """EKS cluster name; also drives the ELB discovery tags on subnets."""
    network: NetworkSettings
    cluster: ClusterSettings
    ci: CiSettings = CiSettings()
    database: DatabaseSettings
    storage: StorageSettings
    email: EmailSettings
    images: ImageSettings
    apps: AppsSettings
    observability: ObservabilitySettings
    backup: BackupSettings
    audit: AuditSettings
    telemedicine: TelemedicineSettings
    tags: Annotated[dict[TagKey, TagValue], Allowed("a map of tag names to string values")] = {}
    """Tags added to every taggable resource, on top of the project's own."""

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def protect_data(self) -> bool:
        """Prod keeps patients' data: protect and retain stateful resources."""
        return self.is_prod

    @model_validator(mode="after")
    def _reach(self) -> "PlatformSettings":
        """Something must reach the private API endpoint (the in-VPC runner, or operators from named CIDRs), and CI
        must be let in: nobody is admitted as the cluster's creator (components/cluster.py)."""
        rules = _Rules()
        rules.check(
            self.cluster.deploy_role_arn is not None,
            "cluster.deployRoleArn",
            None,
            "the IAM role ARN CI's deploy jobs assume (required: the cluster admits no one else for CI)",
        )
        rules.raise_any()
        if self.cluster.public_access_cidrs or self.ci.github_connection_arn:
            return self
        raise PydanticCustomError(
            "settings_budget",
            "{problem}",
            {
                "problem": (
                    "cluster.publicAccessCidrs = [] is invalid with no in-VPC runner (ci.githubConnectionArn unset): "
                    "nothing could reach the cluster's private API endpoint; allowed: set ci.githubConnectionArn and "
                    'ci.repository (the CI runner in the VPC, README "First deployment"), or name the CIDRs operators '
                    "run Pulumi from"
                )
            },
        )

    @model_validator(mode="after")
    def _emailed_links(self) -> "PlatformSettings":
        """The API emails links (email verification, password reset) on the clinic's host name. Without one there is
        none to give it: the ALB's generated name is known only after the API is deployed, and the API's own default
        is localhost, which no patient can open."""
        rules = _Rules()
        rules.check(
            self.apps.hostname is not None,
            "apps.hostname",
            None,
            "the clinic's public host name, such as clinic.example.org (required: the links the API emails, for "
            "email verification and password reset, are built on it; without it they would point at localhost)",
        )
        rules.raise_any()
        return self

    @property
    def telemedicine_hostname(self) -> str | None:
        """The video service's host name: telemedicine.hostname, else meet.<apps.hostname>; None when disabled."""
        if not self.telemedicine.enabled:
            return None
        if self.telemedicine.hostname:
            return self.telemedicine.hostname
        return f"meet.{self.apps.hostname}" if self.apps.hostname else None

    @model_validator(mode="after")
    def _telemedicine(self) -> "PlatformSettings":
        """Video visits need a host name of their own on the ALB, and HTTPS: browsers give a page the camera and the
        microphone only in a secure context."""
        video, apps, rules, host = self.telemedicine, self.apps, _Rules(), self.telemedicine_hostname
        if not video.enabled:
            return self
        rules.check(
            host is not None,
            "telemedicine.hostname",
            None,
            "a DNS name such as meet.clinic.example.org when telemedicine.enabled is true (or set apps.hostname: "
            "the default is meet.<apps.hostname>)",
        )
        rules.check(
            host is None or host != apps.hostname,
            "telemedicine.hostname",
            video.hostname,
            f"a host name other than apps.hostname ({apps.hostname}): Jitsi answers on every path of its own host",
        )
        clinic_tls = apps.certificate_arn is not None or apps.hosted_zone_id is not None
        rules.check(
            clinic_tls,
            "apps.certificateArn",
            None,
            "set (or apps.hostedZoneId) when telemedicine.enabled is true: the video host shares the clinic's ALB, "
            "whose HTTP listener must redirect to HTTPS, or room tokens would cross the internet in clear",
        )
        # The videobridge and its TURN sidecar are one pod: it must fit on one node of some group.
        turn = TURN_SIDECAR
        overhead = DAEMONSETS_PER_NODE + MONITORING_PER_NODE if self.observability.monitoring else DAEMONSETS_PER_NODE
        room = max(
            (
                min(INSTANCE_TYPES[t].allocatable.cpu_millicores for t in g.instance_types) - overhead.cpu_millicores,
                min(INSTANCE_TYPES[t].allocatable.memory_mib for t in g.instance_types) - overhead.memory_mib,
            )
            for g in self.cluster.node_groups
        )
        rules.check(
            video.jvb_cpu_millis + turn.cpu_millicores <= room[0] and video.jvb_memory_mib + turn.memory_mib <= room[1],
            "telemedicine.jvbCpuMillis",
            f"{video.jvb_cpu_millis} (jvbMemoryMib {video.jvb_memory_mib})",
            f"at most {room[0] - turn.cpu_millicores} millicores and {room[1] - turn.memory_mib} MiB: the videobridge "
            f"pod (with its TURN sidecar, {turn.cpu} / {turn.memory}) must fit on one node of the node groups after "
            "their DaemonSets, or larger instance types",
        )
        rules.check(
            host is None or not clinic_tls or video.certificate_arn is not None or apps.hosted_zone_id is not None,
            "telemedicine.certificateArn",
            None,
            f"an ACM certificate for {host}, or apps.hostedZoneId (the zone that holds it) so the program issues "
            "one: browsers give the camera and microphone only to HTTPS pages",
        )
        rules.raise_any()
        return self

    @model_validator(mode="after")
    def _second_region(self) -> "PlatformSettings":
        """The exam replica goes where the database's copies go: one second region per stack."""
        rules = _Rules()
        rules.check(
            not self.storage.replicate_exams or self.backup.copy_region is not None,
            "storage.replicateExams",
            self.storage.replicate_exams,
            "false unless backup.copyRegion names the second region the replica lives in",
        )
        rules.raise_any()
        return self

    @model_validator(mode="after")
    def _connection_budget(self) -> "PlatformSettings":
        """The apps at full scale must stay under the connections alarm: past max_connections, new pods cannot
        connect."""
        apps, instance_class = self.apps, self.database.instance_class
        budget = DB_CONNECTIONS_ALARM_FRACTION * max_db_connections(instance_class)
        peak = peak_app_db_connections(apps.api_max_replicas, apps.notifier_replicas)
        if peak <= budget:
            return self
        fits = max(
            n
            for n in range(0, apps.api_max_replicas + 1)
            if n == 0 or peak_app_db_connections(n, apps.notifier_replicas) <= budget
        )
        raise PydanticCustomError(
            "settings_budget",
            "{problem}",
            {
                "problem": (
                    f"apps.apiMaxReplicas = {apps.api_max_replicas} is invalid with database.instanceClass = "
                    f"{instance_class!r}: at full scale the apps open up to {peak} PostgreSQL connections "
                    f"({API_POD_DB_CONNECTIONS} per API pod, {NOTIFIER_POD_DB_CONNECTIONS} per notifier pod, with a "
                    f"rollout's surge pods and the migrations Jobs), above {budget:.0f} "
                    f"({DB_CONNECTIONS_ALARM_FRACTION:.0%} of the class's max_connections "
                    f"{max_db_connections(instance_class)}, where the alarm fires); allowed: apps.apiMaxReplicas at "
                    f"most {fits} with apps.notifierReplicas = {apps.notifier_replicas}, or a larger instance class"
                )
            },
        )

    @model_validator(mode="after")
    def _node_capacity(self) -> "PlatformSettings":
        """A burst to the HPA ceiling must find room on the nodes the autoscaler may add (limits/capacity.py)."""
        groups = [NodeGroupCapacity(g.instance_types, g.max_size) for g in self.cluster.node_groups]
        problem = capacity_problem(
            self.apps.api_max_replicas, self.apps.notifier_replicas, groups, monitoring=self.observability.monitoring
        )
        if problem:
            raise PydanticCustomError(
                "settings_budget",
                "{problem}",
                {"problem": f"apps.apiMaxReplicas = {self.apps.api_max_replicas} is invalid: {problem}"},
            )
        return self


# --- per-environment defaults: a stack file overrides them key by key ---------------------------------------------
# `email` and `images` have none: the stack file must say where mail comes from and which images run.

_GENERAL_NODES = dict(name="general", min_size=1, desired_size=2, max_size=3, max_unavailable=1)
DEFAULTS: dict[str, dict[str, _Group]] = {
    "dev": {
        "network": NetworkSettings(
            vpc_cidr="10.20.0.0/16",
            az_count=2,
            nat_mode="single",
            flow_logs=False,
            flow_log_retention_days=7,
            kubernetes_service_cidr="172.20.0.0/16",
        ),
        "cluster": ClusterSettings(
            kubernetes_version="1.35",
            public_access_cidrs=(),
            admin_role_arns=(),
            janitor_timeout_seconds=900,
            node_groups=(
                NodeGroupSettings(
                    **_GENERAL_NODES, instance_types=("t3.large",), capacity_type="SPOT", disk_size_gb=30
                ),
            ),
        ),
        "database": DatabaseSettings(
            engine_version="16",
            instance_class="db.t4g.micro",
            allocated_storage_gb=20,
            max_allocated_storage_gb=50,
            backup_retention_days=1,
            multi_az=False,
            deletion_protection=False,
            performance_insights=False,
            # Off: Enhanced Monitoring writes OS metrics to CloudWatch Logs, paid per GB ingested, for a
            # throw-away instance whose CloudWatch metrics are enough.
            monitoring_interval_seconds=0,
            name="clinic",
            username="clinic_admin",
        ),
        "storage": StorageSettings(noncurrent_version_days=7, cors_allowed_origins=(), replicate_exams=False),
        "apps": AppsSettings(api_replicas=1, api_max_replicas=3, notifier_replicas=1),
        "observability": ObservabilitySettings(
            monitoring=False,
            prometheus_retention_days=3,
            prometheus_storage_gb=20,
            log_retention_days=7,
            alarm_emails=(),
        ),
        "backup": BackupSettings(enabled=False, retention_days=7),
        # Two weeks: enough to look back over a working sprint, cheap to store.
        "audit": AuditSettings(retention_days=14),
        # Off in dev: the NLB and its Elastic IPs cost ~$26 a month idle, and browsers give a camera only to an
        # HTTPS page, which dev has only with apps.hostedZoneId or a certificate.
        "telemedicine": TelemedicineSettings(enabled=False),
    },
    "prod": {
        "network": NetworkSettings(
            vpc_cidr="10.30.0.0/16",
            az_count=3,
            nat_mode="per-az",
            flow_logs=True,
            flow_log_retention_days=365,
            kubernetes_service_cidr="172.20.0.0/16",
        ),
        "cluster": ClusterSettings(
            kubernetes_version="1.35",
            public_access_cidrs=(),
            admin_role_arns=(),
            janitor_timeout_seconds=1800,
            node_groups=(
                NodeGroupSettings(
                    **{**_GENERAL_NODES, "min_size": 3, "desired_size": 3, "max_size": 9},
                    instance_types=("m6i.large",),
                    capacity_type="ON_DEMAND",
                    disk_size_gb=50,
                ),
            ),
        ),
        "database": DatabaseSettings(
            engine_version="16",
            instance_class="db.m7g.large",
            allocated_storage_gb=100,
            max_allocated_storage_gb=1000,
            backup_retention_days=35,
            multi_az=True,
            deletion_protection=True,
            performance_insights=True,
            # One sample a minute: the resolution of the RDS alarms' periods and of what anyone reads after an
            # incident (processes, memory, swap, per-disk I/O); 1-5 s would multiply the RDSOSMetrics ingestion
            # 12-60 times for a granularity nobody watches live.
            monitoring_interval_seconds=60,
            name="clinic",
            username="clinic_admin",
        ),
        "storage": StorageSettings(noncurrent_version_days=365, cors_allowed_origins=(), replicate_exams=True),
        "apps": AppsSettings(api_replicas=3, api_max_replicas=12, notifier_replicas=2),
        "observability": ObservabilitySettings(
            monitoring=True,
            prometheus_retention_days=15,
            prometheus_storage_gb=100,
            log_retention_days=365,
            alarm_emails=(),
        ),
        "backup": BackupSettings(enabled=True, retention_days=35),
        # Seven years: the six-year minimum with a year's margin for an audit that starts late.
        "audit": AuditSettings(retention_days=2557),
        "telemedicine": TelemedicineSettings(enabled=True, jvb_memory_mib=3072),
    },
}

# The keys a stack file may set at the top level (stack and region come from Pulumi itself).
TOP_LEVEL_KEYS: tuple[str, ...] = tuple(
    field.alias or name for name, field in PlatformSettings.model_fields.items() if name not in ("stack", "region")
)
GROUPS: dict[str, type[_Group]] = {
    field.alias or name: field.annotation
    for name, field in PlatformSettings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Group)
}


# --- loading -------------------------------------------------------------------------------------------------------


def load_settings(
    raw: Mapping[str, Any], *, stack: str, region: str | None, today: datetime.date | None = None
) -> PlatformSettings:
    """Validates the project's config (keys without the project prefix) into frozen settings. `today` decides which
    Kubernetes versions are still in EKS standard support (default: the day the program runs)."""
    problems = [
        f"{key} is not a setting of this project; allowed: {_choices(TOP_LEVEL_KEYS, key)}"
        for key in raw
        if key not in TOP_LEVEL_KEYS
    ]
    environment = raw.get("environment")
    if environment not in ENVIRONMENTS:
        problems.append(f"environment = {environment!r} is invalid; allowed: one of {', '.join(ENVIRONMENTS)}")
        raise StackSettingsError(stack, problems)  # every default below depends on it
    data: dict[str, Any] = {key: value for key, value in raw.items() if key in TOP_LEVEL_KEYS}
    data.update(stack=stack, region=region, clusterName=raw.get("clusterName", f"clinic-{stack}"))
    for group in GROUPS:
        value = _decode(raw.get(group, {}))
        default = DEFAULTS[environment].get(group)
        # A key the stack file sets overrides the environment's default; a group that is not a map stays as it is,
        # for the model to refuse by name.
        data[group] = (
            {**(default.model_dump(by_alias=True) if default else {}), **value} if isinstance(value, Mapping) else value
        )
    data["tags"] = _decode(raw.get("tags", {}))
    context = {
        "environment": environment,
        "region": region,
        "az_count": _az_count(data["network"]),
        "today": today or datetime.date.today(),
    }
    try:
        settings = PlatformSettings.model_validate(data, context=context, by_alias=True, by_name=False)
    except ValidationError as error:
        problems += _problems(error)
    if problems:
        raise StackSettingsError(stack, problems)
    return settings


def _az_count(network: Any) -> int | None:
    """The prod rule "one node per AZ" compares node groups with this; None when the network's own is invalid."""
    count = _number_from_text(network.get("azCount")) if isinstance(network, Mapping) else None
    valid = isinstance(count, int) and not isinstance(count, bool) and MIN_AZS <= count <= MAX_AZS
    return count if valid else None


def _problems(error: ValidationError) -> list[str]:
    """Pydantic's errors, worded as this project's: `<key> = <value> is invalid; allowed: <what>`."""
    problems: list[str] = []
    errors = error.errors(include_url=False)
    for e in errors:
        loc, ctx = e["loc"], e.get("ctx") or {}
        if e["type"] == "too_short" and any(other["loc"][: len(loc)] == loc != other["loc"] for other in errors):
            continue  # pydantic counts a list whose items were refused as empty: the items' own errors say more
        if e["type"] == "settings_budget":
            problems.append(ctx["problem"])
        elif e["type"] == "settings_rules":
            problems += [
                f"{_key(loc + (key,))} = {value!r} is invalid; allowed: {allowed}"
                for key, value, allowed in ctx["problems"]
            ]
        elif loc and loc[0] == "tags" and loc[-1] == "[key]":
            problems.append(f"tags key {loc[1]!r} is invalid; allowed: {_allowed(e)}")
        elif e["type"] == "extra_forbidden":
            model, _ = _walk(loc[:-1])
            known = [f.alias or n for n, f in model.model_fields.items()] if model else []
            problems.append(
                f"{_key(loc)} = {e['input']!r} is invalid; allowed: a known key of "
                f"'{_key(loc[:-1])}': {_choices(known, str(loc[-1]))}"
            )
        else:
            value = None if e["type"] == "missing" else e["input"]
            problems.append(f"{_key(loc)} = {value!r} is invalid; allowed: {_allowed(e)}")
    return problems


def _key(loc: tuple[Any, ...]) -> str:
    """("cluster", "nodeGroups", 0, "minSize") -> cluster.nodeGroups[0].minSize. An index into a list of plain values
    is left out: the message names the list's key and the offending item."""
    key = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            key += f"[{part}]" if _walk(loc[: i + 1])[0] else ""
        else:
            key += f".{part}" if key else str(part)
    return "aws:region" if key == "region" else key


def _walk(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """Follows `loc` from PlatformSettings: the model found there (None at a plain value) and what describes the
    value there (the last field's metadata, or the type of a map's value; a list's items keep the list's words)."""
    node: Any = PlatformSettings
    described: Any = None
    for part in loc:
        if isinstance(part, int):
            node = get_args(node)[0]  # an item of tuple[X, ...]
        elif get_origin(node) is dict:
            node = described = get_args(node)[1]  # the value under a map's key
        elif isinstance(node, type) and issubclass(node, BaseModel):
            field = next((f for n, f in node.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return None, described
            node, described = field.annotation, (field.metadata or field.annotation)
        else:
            return None, described
    return (node if isinstance(node, type) and issubclass(node, BaseModel) else None), described


def _allowed_in(described: Any) -> str | None:
    """The outermost `Allowed` in a field's metadata or inside its annotation (an optional field's type)."""
    items = (
        described if isinstance(described, list) else [*getattr(described, "__metadata__", ()), *get_args(described)]
    )
    items = [inner for item in items for inner in (item if isinstance(item, Checks) else (item,))]
    direct = [item.text for item in items if isinstance(item, Allowed)]
    if direct:
        return direct[0]
    return next((found for item in items if get_args(item) and (found := _allowed_in(item))), None)


def _allowed(e: Any) -> str:
    if e["type"] == "setting":
        return e["ctx"]["allowed"]
    model, described = _walk(e["loc"])
    if model is not None:
        return "a map of settings (see README)"
    return _allowed_in(described) or e["msg"]  # a test checks that every field says what it allows


def _choices(known: Any, key: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ", ".join(known) + hint


def settings_from_pulumi() -> PlatformSettings:
    """Reads the running stack's config once (all keys, so a misspelt key is an error, not a silent default)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    prefix = f"{pulumi.get_project()}:"
    # The engine passes config either set in-process (mocks, automation) or through PULUMI_CONFIG.
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {key[len(prefix) :]: _decode(value) for key, value in everything.items() if key.startswith(prefix)}
    return load_settings(raw, stack=pulumi.get_stack(), region=everything.get("aws:region"))


def _decode(value: Any) -> Any:
    """Structured config (maps, lists, numbers, booleans) reaches the program JSON-encoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
