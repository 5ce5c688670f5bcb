"""Typed stack settings: the only place that reads Pulumi config.

`load_settings(raw, stack=...)` is a pure function over the project's config values, so every rule is tested
without Pulumi; `settings_from_pulumi()` feeds it the running stack's config once. Components receive the frozen
dataclasses below and never read config themselves.

All problems are collected and raised together, each naming the key, the value and what is allowed, before any
resource is registered.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Literal

Environment = Literal["dev", "prod"]
NatMode = Literal["single", "per-az"]

ENVIRONMENTS: tuple[str, ...] = ("dev", "prod")
NAT_MODES: tuple[str, ...] = ("single", "per-az")
# Major versions only: RDS applies minor upgrades itself (auto_minor_version_upgrade), a major upgrade is a decision.
POSTGRES_MAJOR_VERSIONS: tuple[str, ...] = ("15", "16", "17")
# The classes a stack may use, with their memory: the database's max_connections and the alarm on it derive from it.
DB_INSTANCE_CLASS_MEMORY_GIB: dict[str, int] = {
    "db.t4g.micro": 1, "db.t4g.small": 2, "db.t4g.medium": 4, "db.t4g.large": 8,
    "db.m7g.large": 8, "db.m7g.xlarge": 16, "db.m7g.2xlarge": 32,
    "db.r7g.large": 16, "db.r7g.xlarge": 32, "db.r7g.2xlarge": 64,
}
DB_INSTANCE_CLASSES: tuple[str, ...] = tuple(DB_INSTANCE_CLASS_MEMORY_GIB)
# RDS PostgreSQL's own formula, LEAST({DBInstanceClassMemory/9531392}, 5000), on the class's nominal memory. RDS's
# DBInstanceClassMemory is a little less than nominal, so the database is given this value explicitly: the limit it
# enforces and the alarm at 80 % of it then agree.
BYTES_PER_DB_CONNECTION = 9531392
MAX_DB_CONNECTIONS_CAP = 5000


def max_db_connections(instance_class: str) -> int:
    return min(DB_INSTANCE_CLASS_MEMORY_GIB[instance_class] * 1024 ** 3 // BYTES_PER_DB_CONNECTION,
               MAX_DB_CONNECTIONS_CAP)


# The connections alarm (CloudWatch and Prometheus) fires above this share of max_connections.
DB_CONNECTIONS_ALARM_FRACTION = 0.8
# Pool size the platform gives each app (components/clinic_apps.py sets it in their environment). At most, an API
# pod opens its engine's pool and overflow, its hot-path pool and one /metrics reader; a notifier pod its engine's.
APP_DB_POOL_SIZE = 5
API_POD_DB_CONNECTIONS = 3 * APP_DB_POOL_SIZE + 1
NOTIFIER_POD_DB_CONNECTIONS = 2 * APP_DB_POOL_SIZE


def peak_app_db_connections(api_max_replicas: int, notifier_replicas: int) -> int:
    """Every pod at its ceiling: the HPA's maximum of API pods, plus one surge pod per Deployment during a rollout
    (maxSurge 1), plus one migrations Job per app (Alembic holds one connection)."""
    return ((api_max_replicas + 1) * API_POD_DB_CONNECTIONS + (notifier_replicas + 1) * NOTIFIER_POD_DB_CONNECTIONS
            + 2)


# Burstable classes run out of CPU credits under sustained load and do not support Performance Insights' long
# retention; prod must use a fixed-performance class.
BURSTABLE_PREFIX = "db.t"
# The values CloudWatch Logs accepts for retention_in_days.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# PostgreSQL and RDS reserve these as master user names.
RESERVED_DB_USERNAMES: frozenset[str] = frozenset({"postgres", "rdsadmin", "admin", "root", "user", "public"})
MIN_PROD_BACKUP_DAYS = 14
# Daily AWS Backup recovery points of the prod database are kept at least as long as RDS's own PITR window.
MIN_PROD_VAULT_RETENTION_DAYS = 35
# EKS versions in standard support when this was pinned; upgrade one minor at a time.
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.33", "1.34", "1.35")
CAPACITY_TYPES: tuple[str, ...] = ("ON_DEMAND", "SPOT")
MIN_AZS, MAX_AZS = 2, 4  # EKS needs subnets in at least two AZs; carving below leaves room for four.
MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 20


class StackSettingsError(ValueError):
    """Raised with every problem found in a stack's configuration, one per line."""

    def __init__(self, stack: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stack '{stack}' has {len(problems)} invalid setting(s):\n{lines}")


@dataclass(frozen=True)
class NetworkSettings:
    vpc_cidr: str
    """IPv4 CIDR of the VPC, RFC 1918, /16 to /20."""
    az_count: int
    """Availability zones to spread subnets over (2-4)."""
    nat_mode: NatMode
    """`single` shared NAT gateway (cheap) or `per-az` (one per AZ, no cross-AZ single point of failure)."""
    flow_logs: bool
    """Send VPC flow logs (all traffic) to CloudWatch Logs."""
    flow_log_retention_days: int
    """Retention of the flow-log group, a value CloudWatch accepts."""
    kubernetes_service_cidr: str
    """Kubernetes Service CIDR of the cluster; must not overlap the VPC."""


@dataclass(frozen=True)
class DatabaseSettings:
    engine_version: str
    """PostgreSQL major version; minors are applied by RDS."""
    instance_class: str
    """RDS instance class from DB_INSTANCE_CLASSES."""
    allocated_storage_gb: int
    """Initial gp3 storage (20-16384 GiB)."""
    max_allocated_storage_gb: int
    """Ceiling for storage autoscaling (>= allocated)."""
    backup_retention_days: int
    """Automated backups and point-in-time recovery window (1-35 days; prod >= 14)."""
    multi_az: bool
    """Synchronous standby in a second AZ."""
    deletion_protection: bool
    """RDS refuses deletion while set; required in prod."""
    performance_insights: bool
    """Performance Insights (KMS-encrypted)."""
    name: str
    """Name of the application database."""
    username: str
    """Master user name; its password is generated and kept by RDS in Secrets Manager."""
    restored_instance_id: str | None = None
    """An instance restored by `python -m components.db_restore`; when set, the apps and the alarms use it instead
    of the instance this stack created (which stays, protected, for comparison and forensics)."""


@dataclass(frozen=True)
class StorageSettings:
    noncurrent_version_days: int
    """Days a replaced or deleted exam PDF version is kept before it expires (1-3650)."""
    cors_allowed_origins: tuple[str, ...]
    """Browser origins allowed to PUT/GET with presigned URLs."""


@dataclass(frozen=True)
class EmailSettings:
    domain: str | None
    """Sending domain verified with DKIM (prod)."""
    from_address: str
    """The From address of the clinic's notifications."""


@dataclass(frozen=True)
class NodeGroupSettings:
    name: str
    """Managed node group name (stable: a rename replaces the group)."""
    instance_types: tuple[str, ...]
    """EC2 instance types, all of one architecture."""
    capacity_type: str
    """ON_DEMAND or SPOT (dev only)."""
    min_size: int
    """Lower scaling bound."""
    desired_size: int
    """Initial size; later owned by the autoscaler."""
    max_size: int
    """Upper scaling bound."""
    max_unavailable: int
    """Nodes replaced at once during a rolling update."""
    disk_size_gb: int
    """Encrypted gp3 root volume size."""


@dataclass(frozen=True)
class ClusterSettings:
    kubernetes_version: str
    """Pinned EKS Kubernetes version."""
    public_access_cidrs: tuple[str, ...]
    """CIDRs that may reach the public API endpoint; empty keeps the endpoint private only."""
    admin_role_arns: tuple[str, ...]
    """IAM roles given cluster-admin through EKS access entries."""
    node_groups: tuple[NodeGroupSettings, ...]
    """Managed node groups."""
    janitor_timeout_seconds: int
    """How long destroy waits for Kubernetes-made load balancers and their network interfaces to go."""


@dataclass(frozen=True)
class AppsSettings:
    api_image: str
    """Image of the API: a tag or digest in the stack's ECR repository, or a full image reference."""
    notifier_image: str
    """Image of the notifier, likewise."""
    api_replicas: int
    """API replicas at rest (the HPA's minimum)."""
    api_max_replicas: int
    """HPA ceiling for the API."""
    notifier_replicas: int
    """Notifier replicas."""
    hostname: str | None
    """Public host name of the clinic (Ingress rule); None answers on the ALB's own name."""
    certificate_arn: str | None
    """ACM certificate for HTTPS on the ALB (HTTP redirects to HTTPS when set)."""


@dataclass(frozen=True)
class ObservabilitySettings:
    monitoring: bool
    """In-cluster kube-prometheus-stack (Prometheus, Alertmanager, Grafana); required in prod."""
    prometheus_retention_days: int
    """Days Prometheus keeps samples (1-90)."""
    prometheus_storage_gb: int
    """Size of Prometheus' persistent volume (10-1000 GiB)."""
    log_retention_days: int
    """Retention of the container and control-plane log groups, a value CloudWatch accepts."""
    alarm_emails: tuple[str, ...]
    """Addresses subscribed to the alarm topic (each confirms by email); at least one in prod."""


@dataclass(frozen=True)
class BackupSettings:
    enabled: bool
    """AWS Backup plan and KMS-encrypted vault for the database (daily recovery points); required in prod."""
    retention_days: int
    """Days a daily recovery point is kept (7-3650; prod >= 35)."""
    copy_region: str | None
    """A second region that receives a copy of every recovery point, or None."""


@dataclass(frozen=True)
class PlatformSettings:
    stack: str
    """Pulumi stack name."""
    environment: Environment
    """dev (cheap, destroyable) or prod (resilient, retains data)."""
    region: str
    """AWS region (aws:region)."""
    cluster_name: str
    """EKS cluster name; also drives the ELB discovery tags on subnets."""
    network: NetworkSettings
    cluster: ClusterSettings
    database: DatabaseSettings
    storage: StorageSettings
    email: EmailSettings
    apps: AppsSettings
    observability: ObservabilitySettings
    backup: BackupSettings
    tags: Mapping[str, str]
    """Tags added to every taggable resource, on top of the project's own."""

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def protect_data(self) -> bool:
        """Prod keeps patients' data: protect and retain stateful resources."""
        return self.is_prod


# Documented defaults per environment. A key set in the stack file overrides them.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "dev": {
        "network": {"vpcCidr": "10.20.0.0/16", "azCount": 2, "natMode": "single", "flowLogs": False,
                    "flowLogRetentionDays": 7, "kubernetesServiceCidr": "172.20.0.0/16"},
        "cluster": {"kubernetesVersion": "1.34", "publicAccessCidrs": [], "adminRoleArns": [],
                    "janitorTimeoutSeconds": 900,
                    "nodeGroups": [{"name": "general", "instanceTypes": ["t3.large"], "capacityType": "SPOT",
                                    "minSize": 1, "desiredSize": 2, "maxSize": 3, "maxUnavailable": 1,
                                    "diskSizeGb": 30}]},
        "database": {"engineVersion": "16", "instanceClass": "db.t4g.micro", "allocatedStorageGb": 20,
                     "maxAllocatedStorageGb": 50, "backupRetentionDays": 1, "multiAz": False,
                     "deletionProtection": False, "performanceInsights": False, "name": "clinic",
                     "username": "clinic_admin", "restoredInstanceId": None},
        "storage": {"noncurrentVersionDays": 7, "corsAllowedOrigins": []},
        "email": {"domain": None, "fromAddress": None},
        "images": {"api": None, "notifier": None},
        "apps": {"apiReplicas": 1, "apiMaxReplicas": 3, "notifierReplicas": 1, "hostname": None,
                 "certificateArn": None},
        "observability": {"monitoring": False, "prometheusRetentionDays": 3, "prometheusStorageGb": 20,
                          "logRetentionDays": 7, "alarmEmails": []},
        "backup": {"enabled": False, "retentionDays": 7, "copyRegion": None},
    },
    "prod": {
        "network": {"vpcCidr": "10.30.0.0/16", "azCount": 3, "natMode": "per-az", "flowLogs": True,
                    "flowLogRetentionDays": 365, "kubernetesServiceCidr": "172.20.0.0/16"},
        "cluster": {"kubernetesVersion": "1.34", "publicAccessCidrs": [], "adminRoleArns": [],
                    "janitorTimeoutSeconds": 1800,
                    "nodeGroups": [{"name": "general", "instanceTypes": ["m6i.large"], "capacityType": "ON_DEMAND",
                                    "minSize": 3, "desiredSize": 3, "maxSize": 9, "maxUnavailable": 1,
                                    "diskSizeGb": 50}]},
        "database": {"engineVersion": "16", "instanceClass": "db.m7g.large", "allocatedStorageGb": 100,
                     "maxAllocatedStorageGb": 1000, "backupRetentionDays": 35, "multiAz": True,
                     "deletionProtection": True, "performanceInsights": True, "name": "clinic",
                     "username": "clinic_admin", "restoredInstanceId": None},
        "storage": {"noncurrentVersionDays": 365, "corsAllowedOrigins": []},
        "email": {"domain": None, "fromAddress": None},
        "images": {"api": None, "notifier": None},
        "apps": {"apiReplicas": 3, "apiMaxReplicas": 12, "notifierReplicas": 2, "hostname": None,
                 "certificateArn": None},
        "observability": {"monitoring": True, "prometheusRetentionDays": 15, "prometheusStorageGb": 100,
                          "logRetentionDays": 365, "alarmEmails": []},
        "backup": {"enabled": True, "retentionDays": 35, "copyRegion": None},
    },
}
TOP_LEVEL_KEYS = ("environment", "clusterName", "network", "cluster", "database", "storage", "email", "images",
                  "apps", "observability", "backup", "tags")
NODE_GROUP_KEYS = tuple(DEFAULTS["dev"]["cluster"]["nodeGroups"][0])


class _Reader:
    """Reads typed values out of one config group, recording problems instead of stopping at the first."""

    def __init__(self, problems: list[str], group: str, values: Mapping[str, Any], defaults: Mapping[str, Any]):
        self.problems, self.group, self.values, self.defaults = problems, group, values, defaults
        for key in values:
            if key not in defaults:
                self.fail(key, values[key], f"a known key of '{group}': {_choices(defaults, key)}")

    def key(self, name: str) -> str:
        return f"{self.group}.{name}"

    def fail(self, name: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{self.key(name)} = {value!r} is invalid; allowed: {allowed}")

    def raw(self, name: str) -> Any:
        return self.values.get(name, self.defaults[name])

    def int(self, name: str, low: int, high: int) -> int:
        value = self.raw(name)
        # bool is an int in Python; `true` for a number is a mistake worth naming.
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(name, value, f"an integer from {low} to {high}")
            return low
        return value

    def bool(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            self.fail(name, value, "true or false")
            return False
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `engineVersion: 16` in YAML is a number
        if value not in allowed:
            self.fail(name, value, "one of " + ", ".join(allowed))
            return allowed[0]
        return value

    def text(self, name: str, pattern: str, describe: str) -> str:
        value = self.raw(name)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            self.fail(name, value, describe)
            return ""
        return value

    def check(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            self.fail(name, self.raw(name), allowed)


def _choices(known: Mapping[str, Any] | tuple[str, ...], key: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ", ".join(known) + hint


def _parse_network(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                   is_prod: bool) -> NetworkSettings:
    r = _Reader(problems, "network", values, defaults)
    vpc_cidr = _private_cidr(r, "vpcCidr", MIN_VPC_PREFIX, MAX_VPC_PREFIX)
    service_cidr = _private_cidr(r, "kubernetesServiceCidr", 12, 24)
    if vpc_cidr and service_cidr and vpc_cidr.overlaps(service_cidr):
        r.fail("kubernetesServiceCidr", str(service_cidr), f"a CIDR that does not overlap network.vpcCidr {vpc_cidr}")
    nat_mode = r.choice("natMode", NAT_MODES)
    if is_prod and nat_mode == "single":
        r.fail("natMode", nat_mode, "per-az in prod (a single NAT gateway is a single point of failure)")
    retention = r.int("flowLogRetentionDays", 1, LOG_RETENTION_DAYS[-1])
    r.check(retention in LOG_RETENTION_DAYS, "flowLogRetentionDays",
            "a CloudWatch Logs retention: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    flow_logs = r.bool("flowLogs")
    if is_prod and not flow_logs:
        r.fail("flowLogs", flow_logs, "true in prod (network access to patient data must be auditable)")
    return NetworkSettings(
        vpc_cidr=str(vpc_cidr or ""),
        az_count=r.int("azCount", MIN_AZS, MAX_AZS),
        nat_mode=nat_mode,  # type: ignore[arg-type]
        flow_logs=flow_logs,
        flow_log_retention_days=retention,
        kubernetes_service_cidr=str(service_cidr or ""),
    )


def _private_cidr(r: _Reader, name: str, low: int, high: int) -> ipaddress.IPv4Network | None:
    value = r.raw(name)
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as exc:
        r.fail(name, value, f"an IPv4 CIDR with no host bits set ({exc})")
        return None
    if not net.is_private:
        r.fail(name, value, "a private (RFC 1918) range such as 10.0.0.0/16")
        return None
    if not low <= net.prefixlen <= high:
        r.fail(name, value, f"a prefix length from /{low} to /{high}")
        return None
    return net


_ROLE_ARN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"
_INSTANCE_TYPE = r"[a-z][a-z0-9-]*\.[a-z0-9]+"


def _parse_cluster(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                   is_prod: bool, az_count: int) -> ClusterSettings:
    r = _Reader(problems, "cluster", values, defaults)
    cidrs = _string_list(r, "publicAccessCidrs")
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            r.fail("publicAccessCidrs", cidr, "CIDRs with no host bits set, such as 203.0.113.0/24")
            continue
        if net.prefixlen == 0:
            r.fail("publicAccessCidrs", cidr, "the CIDRs of your office/VPN/CI egress, never the whole internet")
    roles = _string_list(r, "adminRoleArns")
    for arn in roles:
        if not re.fullmatch(_ROLE_ARN, arn):
            r.fail("adminRoleArns", arn, "IAM role ARNs such as arn:aws:iam::123456789012:role/platform-admin")
    groups = r.raw("nodeGroups")
    if not isinstance(groups, list) or not groups:
        r.fail("nodeGroups", groups, "a non-empty list of node groups (see README)")
        groups = []
    parsed = [_parse_node_group(problems, f"cluster.nodeGroups[{i}]", g, is_prod, az_count)
              for i, g in enumerate(groups)]
    names = [g.name for g in parsed]
    if len(set(names)) != len(names):
        r.fail("nodeGroups", names, "node groups with distinct names")
    return ClusterSettings(
        kubernetes_version=r.choice("kubernetesVersion", KUBERNETES_VERSIONS),
        public_access_cidrs=tuple(cidrs),
        admin_role_arns=tuple(roles),
        node_groups=tuple(parsed),
        janitor_timeout_seconds=r.int("janitorTimeoutSeconds", 60, 3600),
    )


def _parse_node_group(problems: list[str], group: str, values: Any, is_prod: bool, az_count: int) -> NodeGroupSettings:
    if not isinstance(values, Mapping):
        problems.append(f"{group} = {values!r} is invalid; allowed: a map with {', '.join(NODE_GROUP_KEYS)}")
        values = {}
    defaults = {**DEFAULTS["dev"]["cluster"]["nodeGroups"][0], "name": None}
    r = _Reader(problems, group, values, defaults)
    name = r.text("name", r"[a-z][a-z0-9-]{0,30}", "1-31 lowercase letters, digits or -, starting with a letter")
    types = _string_list(r, "instanceTypes")
    if not types or not all(re.fullmatch(_INSTANCE_TYPE, t) for t in types):
        r.fail("instanceTypes", types, "a non-empty list of EC2 instance types such as [\"m6i.large\"]")
    elif len({_is_graviton(t) for t in types}) > 1:
        r.fail("instanceTypes", types, "instance types of one architecture (all Graviton or all x86)")
    capacity = r.choice("capacityType", CAPACITY_TYPES)
    if is_prod and capacity == "SPOT":
        r.fail("capacityType", capacity, "ON_DEMAND in prod (spot nodes can be reclaimed with two minutes' notice)")
    low, desired, high = r.int("minSize", 0, 100), r.int("desiredSize", 0, 100), r.int("maxSize", 1, 100)
    if not low <= desired <= high:
        r.fail("desiredSize", desired, f"minSize <= desiredSize <= maxSize (got {low} <= {desired} <= {high})")
    if is_prod and low < az_count:
        r.fail("minSize", low, f"at least network.azCount ({az_count}) in prod, one node per AZ")
    unavailable = r.int("maxUnavailable", 1, 100)
    if unavailable > high:
        r.fail("maxUnavailable", unavailable, f"at most maxSize ({high})")
    return NodeGroupSettings(name=name, instance_types=tuple(types), capacity_type=capacity, min_size=low,
                             desired_size=desired, max_size=high, max_unavailable=unavailable,
                             disk_size_gb=r.int("diskSizeGb", 20, 1000))


def _is_graviton(instance_type: str) -> bool:
    """m7g.large, c6gn.xlarge, t4g.small: a `g` after the generation digit marks AWS Graviton (arm64)."""
    return bool(re.match(r"[a-z]+\d+g", instance_type))


def _string_list(r: _Reader, name: str) -> list[str]:
    value = r.raw(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        r.fail(name, value, "a list of strings")
        return []
    return value


DB_INSTANCE_ID_PATTERN = r"[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]|[a-z]"


def _parse_database(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                    is_prod: bool) -> DatabaseSettings:
    r = _Reader(problems, "database", values, defaults)
    instance_class = r.choice("instanceClass", DB_INSTANCE_CLASSES)
    if is_prod and instance_class.startswith(BURSTABLE_PREFIX):
        r.fail("instanceClass", instance_class, "a non-burstable class in prod (db.m7g.* or db.r7g.*)")
    allocated = r.int("allocatedStorageGb", 20, 16384)
    maximum = r.int("maxAllocatedStorageGb", 20, 65536)
    if maximum < allocated:
        r.fail("maxAllocatedStorageGb", maximum, f"at least database.allocatedStorageGb ({allocated})")
    backups = r.int("backupRetentionDays", 1, 35)
    if is_prod and backups < MIN_PROD_BACKUP_DAYS:
        r.fail("backupRetentionDays", backups, f"{MIN_PROD_BACKUP_DAYS} to 35 in prod")
    multi_az = r.bool("multiAz")
    deletion_protection = r.bool("deletionProtection")
    if is_prod and not multi_az:
        r.fail("multiAz", multi_az, "true in prod (a standby in a second AZ)")
    if is_prod and not deletion_protection:
        r.fail("deletionProtection", deletion_protection, "true in prod (the database holds patients' data)")
    username = r.text("username", r"[a-zA-Z][a-zA-Z0-9_]{0,15}", "1-16 letters, digits or _, starting with a letter")
    if username.lower() in RESERVED_DB_USERNAMES:
        r.fail("username", username, "a name not reserved by PostgreSQL/RDS: not " + ", ".join(sorted(RESERVED_DB_USERNAMES)))
    restored = r.raw("restoredInstanceId")
    if restored is not None:
        restored = r.text("restoredInstanceId", DB_INSTANCE_ID_PATTERN,
                          "an RDS instance identifier (1-63 lowercase letters, digits or -, starting with a letter)") or None
    return DatabaseSettings(
        engine_version=r.choice("engineVersion", POSTGRES_MAJOR_VERSIONS),
        instance_class=instance_class,
        allocated_storage_gb=allocated,
        max_allocated_storage_gb=maximum,
        backup_retention_days=backups,
        multi_az=multi_az,
        deletion_protection=deletion_protection,
        performance_insights=r.bool("performanceInsights"),
        name=r.text("name", r"[a-z][a-z0-9_]{0,62}", "1-63 lowercase letters, digits or _, starting with a letter"),
        username=username,
        restored_instance_id=restored,
    )


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+)(:\d{1,5})?")


def _parse_storage(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                   is_prod: bool) -> StorageSettings:
    r = _Reader(problems, "storage", values, defaults)
    origins = r.raw("corsAllowedOrigins")
    if not isinstance(origins, list):
        r.fail("corsAllowedOrigins", origins, "a list of origins such as [\"https://clinic.example.org\"]")
        origins = []
    for origin in origins:
        match = _ORIGIN.fullmatch(origin) if isinstance(origin, str) else None
        local = bool(match) and match.group(2) in ("localhost", "127.0.0.1")
        if not match or (match.group(1) == "http" and (is_prod or not local)):
            r.fail("corsAllowedOrigins", origin,
                   "scheme://host[:port] with https (http only for localhost in dev), no path, no wildcard")
    return StorageSettings(
        noncurrent_version_days=r.int("noncurrentVersionDays", 1, 3650),
        cors_allowed_origins=tuple(origins),
    )


_DOMAIN = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]{1,64}@" + _DOMAIN


def _parse_email(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                 is_prod: bool) -> EmailSettings:
    r = _Reader(problems, "email", values, defaults)
    domain = r.raw("domain")
    if domain is not None:
        domain = r.text("domain", _DOMAIN, "a lowercase DNS domain such as clinic.example.org") or None
    elif is_prod:
        r.fail("domain", domain, "a domain in prod (sending from a DKIM-verified domain, not a single address)")
    from_address = r.text("fromAddress", EMAIL_PATTERN, "an email address such as no-reply@clinic.example.org")
    if domain and from_address and not from_address.lower().endswith("@" + domain):
        r.fail("fromAddress", from_address, f"an address at email.domain ({domain})")
    return EmailSettings(domain=domain, from_address=from_address)


# Public: components validate their own arguments against the same rules (STYLE 5).
REGION_PATTERN = r"[a-z]{2}(-[a-z]+)+-\d"


# A tag (0.1.0, a git SHA), a digest (sha256:<64 hex>), or a full reference (registry/repo:tag or repo@sha256:...).
_IMAGE = (r"(sha256:[0-9a-f]{64}|[\w][\w.-]{0,127}"
          r"|[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64}))")
_CERTIFICATE_ARN = r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}"


def _parse_apps(problems: list[str], images: Mapping[str, Any], values: Mapping[str, Any], environment: str,
                is_prod: bool) -> AppsSettings:
    i = _Reader(problems, "images", images, DEFAULTS[environment]["images"])
    image_help = "an image tag (0.1.0), a digest (sha256:...) or a full reference (registry/repo:tag)"
    api_image, notifier_image = i.text("api", _IMAGE, image_help), i.text("notifier", _IMAGE, image_help)
    for name, image in (("api", api_image), ("notifier", notifier_image)):
        if is_prod and image.rsplit(":", 1)[-1] in ("latest", "main", "dev"):
            i.fail(name, image, "an immutable tag or a digest in prod, not a moving tag")
    r = _Reader(problems, "apps", values, DEFAULTS[environment]["apps"])
    replicas, ceiling = r.int("apiReplicas", 1, 50), r.int("apiMaxReplicas", 1, 100)
    if ceiling < replicas:
        r.fail("apiMaxReplicas", ceiling, f"at least apps.apiReplicas ({replicas})")
    if is_prod and replicas < 2:
        r.fail("apiReplicas", replicas, "2 or more in prod (a rolling update or a lost node must not stop the API)")
    hostname = r.raw("hostname")
    if hostname is not None:
        hostname = r.text("hostname", _DOMAIN, "a lowercase DNS name such as clinic.example.org") or None
    certificate = r.raw("certificateArn")
    if certificate is not None:
        certificate = r.text("certificateArn", _CERTIFICATE_ARN, "an ACM certificate ARN") or None
    return AppsSettings(api_image=api_image, notifier_image=notifier_image, api_replicas=replicas,
                        api_max_replicas=ceiling, notifier_replicas=r.int("notifierReplicas", 1, 20),
                        hostname=hostname, certificate_arn=certificate)


def _parse_observability(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any],
                         is_prod: bool) -> ObservabilitySettings:
    r = _Reader(problems, "observability", values, defaults)
    monitoring = r.bool("monitoring")
    if is_prod and not monitoring:
        r.fail("monitoring", monitoring, "true in prod (the clinic's SLOs are watched in-cluster)")
    retention = r.int("logRetentionDays", 1, LOG_RETENTION_DAYS[-1])
    r.check(retention in LOG_RETENTION_DAYS, "logRetentionDays",
            "a CloudWatch Logs retention: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    emails = _string_list(r, "alarmEmails")
    for address in emails:
        if not re.fullmatch(EMAIL_PATTERN, address):
            r.fail("alarmEmails", address, "email addresses such as oncall@clinic.example.org")
    if len(set(emails)) != len(emails):
        r.fail("alarmEmails", emails, "addresses without repeats")
    if is_prod and not emails:
        r.fail("alarmEmails", emails, "at least one address in prod (an alarm nobody receives protects nobody)")
    return ObservabilitySettings(
        monitoring=monitoring,
        prometheus_retention_days=r.int("prometheusRetentionDays", 1, 90),
        prometheus_storage_gb=r.int("prometheusStorageGb", 10, 1000),
        log_retention_days=retention,
        alarm_emails=tuple(emails),
    )


def _parse_backup(problems: list[str], values: Mapping[str, Any], defaults: Mapping[str, Any], is_prod: bool,
                  region: str | None) -> BackupSettings:
    r = _Reader(problems, "backup", values, defaults)
    enabled = r.bool("enabled")
    if is_prod and not enabled:
        r.fail("enabled", enabled, "true in prod (daily recovery points of patients' data, kept apart from RDS)")
    retention = r.int("retentionDays", 7, 3650)
    if is_prod and retention < MIN_PROD_VAULT_RETENTION_DAYS:
        r.fail("retentionDays", retention, f"{MIN_PROD_VAULT_RETENTION_DAYS} to 3650 in prod")
    copy_region = r.raw("copyRegion")
    if copy_region is not None:
        copy_region = r.text("copyRegion", REGION_PATTERN, "an AWS region such as eu-central-1") or None
        if copy_region and copy_region == region:
            r.fail("copyRegion", copy_region, f"a region other than aws:region ({region})")
        if copy_region and not enabled:
            r.fail("copyRegion", copy_region, "unset unless backup.enabled is true (only recovery points are copied)")
    return BackupSettings(enabled=enabled, retention_days=retention, copy_region=copy_region)


def _parse_tags(problems: list[str], tags: Any) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        problems.append(f"tags = {tags!r} is invalid; allowed: a map of tag names to string values")
        return {}
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
            problems.append(f"tags key {key!r} is invalid; allowed: 1-128 characters, not starting with 'aws:'")
        elif not isinstance(value, str) or len(value) > 256:
            problems.append(f"tags.{key} = {value!r} is invalid; allowed: a string of at most 256 characters")
        else:
            out[key] = value
    return out


def _group(problems: list[str], raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if not isinstance(value, Mapping):
        problems.append(f"{name} = {value!r} is invalid; allowed: a map of settings (see README)")
        return {}
    return value


_PARSERS: dict[str, Callable[[list[str], Mapping[str, Any], Mapping[str, Any], bool], Any]] = {
    "network": _parse_network,
    "database": _parse_database,
    "storage": _parse_storage,
    "email": _parse_email,
}


def load_settings(raw: Mapping[str, Any], *, stack: str, region: str | None) -> PlatformSettings:
    """Validates the project's config (keys without the project prefix) into frozen settings."""
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{key} is not a setting of this project; allowed: {_choices(TOP_LEVEL_KEYS, key)}")
    environment = raw.get("environment")
    if environment not in ENVIRONMENTS:
        problems.append(f"environment = {environment!r} is invalid; allowed: one of {', '.join(ENVIRONMENTS)}")
        raise StackSettingsError(stack, problems)  # every default below depends on it
    is_prod = environment == "prod"
    if not region or not re.fullmatch(REGION_PATTERN, region):
        problems.append(f"aws:region = {region!r} is invalid; allowed: an AWS region such as eu-west-1")
    cluster_name = raw.get("clusterName", f"clinic-{stack}")
    if not isinstance(cluster_name, str) or not re.fullmatch(r"[a-z][a-z0-9-]{1,38}[a-z0-9]", cluster_name):
        problems.append(f"clusterName = {cluster_name!r} is invalid; allowed: 3-40 lowercase letters, digits or -, "
                        "starting with a letter")
    groups = {name: parse(problems, _group(problems, raw, name), DEFAULTS[environment][name], is_prod)
              for name, parse in _PARSERS.items()}
    groups["cluster"] = _parse_cluster(problems, _group(problems, raw, "cluster"), DEFAULTS[environment]["cluster"],
                                       is_prod, groups["network"].az_count)
    groups["apps"] = _parse_apps(problems, _group(problems, raw, "images"), _group(problems, raw, "apps"),
                                 environment, is_prod)
    groups["observability"] = _parse_observability(problems, _group(problems, raw, "observability"),
                                                   DEFAULTS[environment]["observability"], is_prod)
    groups["backup"] = _parse_backup(problems, _group(problems, raw, "backup"), DEFAULTS[environment]["backup"],
                                     is_prod, region)
    tags = _parse_tags(problems, _group(problems, raw, "tags"))
    if not problems:
        problems += _connection_budget(groups["apps"], groups["database"])
    if problems:
        raise StackSettingsError(stack, problems)
    return PlatformSettings(stack=stack, environment=environment, region=region or "", cluster_name=cluster_name,
                            tags=tags, **groups)


def _connection_budget(apps: AppsSettings, database: DatabaseSettings) -> list[str]:
    """The apps at full scale must stay under the connections alarm: past max_connections, new pods cannot connect."""
    budget = DB_CONNECTIONS_ALARM_FRACTION * max_db_connections(database.instance_class)
    peak = peak_app_db_connections(apps.api_max_replicas, apps.notifier_replicas)
    if peak <= budget:
        return []
    fits = max(n for n in range(0, apps.api_max_replicas + 1)
               if n == 0 or peak_app_db_connections(n, apps.notifier_replicas) <= budget)
    return [f"apps.apiMaxReplicas = {apps.api_max_replicas} is invalid with database.instanceClass = "
            f"{database.instance_class!r}: at full scale the apps open up to {peak} PostgreSQL connections "
            f"({API_POD_DB_CONNECTIONS} per API pod, {NOTIFIER_POD_DB_CONNECTIONS} per notifier pod, with a rollout's "
            f"surge pods and the migrations Jobs), above {budget:.0f} ({DB_CONNECTIONS_ALARM_FRACTION:.0%} of the "
            f"class's max_connections {max_db_connections(database.instance_class)}, where the alarm fires); "
            f"allowed: apps.apiMaxReplicas at most {fits} with apps.notifierReplicas = {apps.notifier_replicas}, "
            "or a larger instance class"]


def settings_from_pulumi() -> PlatformSettings:
    """Reads the running stack's config once (all keys, so a misspelt key is an error, not a silent default)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    prefix = f"{pulumi.get_project()}:"
    # The engine passes config either set in-process (mocks, automation) or through PULUMI_CONFIG.
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {key[len(prefix):]: _decode(value) for key, value in everything.items() if key.startswith(prefix)}
    return load_settings(raw, stack=pulumi.get_stack(), region=everything.get("aws:region"))


def _decode(value: Any) -> Any:
    """Structured config (maps, lists, numbers, booleans) reaches the program JSON-encoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
