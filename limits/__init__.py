"""Limits and rules shared by the stack settings, the components and the policy pack — each written once, here.

Plain values and pure functions, nothing else imported: the policy pack imports this module from its own virtualenv
(policy/__main__.py puts the project directory on its path), where neither Pulumi's AWS provider nor pydantic is
installed.
"""

import re

# The values CloudWatch Logs accepts for retention_in_days.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# Patterns matched whole (re.fullmatch).
REGION_PATTERN = r"[a-z]{2}(-[a-z]+)+-\d"
DOMAIN_PATTERN = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]{1,64}@" + DOMAIN_PATTERN
# RDS: 1-63 lowercase letters, digits or hyphens, starting with a letter, no `--`, not ending with `-`.
DB_INSTANCE_ID_PATTERN = r"[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]|[a-z]"

# IAM role ARNs (access entries, CI roles).
ROLE_ARN_PATTERN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"
# The CI runner's GitHub connection (new connections are codeconnections, older ones codestar-connections) and the
# repository whose workflow jobs it takes.
CONNECTION_ARN_PATTERN = (
    r"arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
    r"connection/[0-9a-f-]{36}"
)
GITHUB_REPOSITORY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}"
# CodeBuild compute types a CI runner build may use.
CI_COMPUTE_TYPES: tuple[str, ...] = ("BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE")

# `single` shared NAT gateway (cheap) or `per-az` (one per AZ, no cross-AZ single point of failure).
NAT_MODES: tuple[str, ...] = ("single", "per-az")


def is_graviton(instance_type: str) -> bool:
    """m7g.large, c6gn.xlarge, t4g.small: a `g` after the generation digit marks AWS Graviton (arm64)."""
    return bool(re.match(r"[a-z]+\d+g", instance_type))


# Prod keeps patients' data: RDS's own backups (point-in-time recovery window) at least this long...
MIN_PROD_BACKUP_DAYS = 14
# The only Enhanced Monitoring intervals RDS accepts (seconds; 0 turns it off), CreateDBInstance MonitoringInterval.
RDS_MONITORING_INTERVALS: tuple[int, ...] = (0, 1, 5, 10, 15, 30, 60)
# ...and daily AWS Backup recovery points at least as long as RDS's longest PITR window.
MIN_PROD_VAULT_RETENTION_DAYS = 35
# ...and its audit trail (who read or changed patients' data, by any path) at least six years: HIPAA keeps security
# documentation six years (45 CFR 164.316(b)(2)(i)), the longest fixed term among the rules a clinic's audit meets.
# Brazil's CFM keeps the medical record itself 20 years (Resolução 1.821/2007, Lei 13.787/2018): the ceiling below.
MIN_PROD_AUDIT_RETENTION_DAYS = 2190
MAX_AUDIT_RETENTION_DAYS = 7300

# The database classes a stack may use, with their memory: max_connections and the alarm on it derive from it.
DB_INSTANCE_CLASS_MEMORY_GIB: dict[str, int] = {
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.m7g.large": 8,
    "db.m7g.xlarge": 16,
    "db.m7g.2xlarge": 32,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
    "db.r7g.2xlarge": 64,
}
DB_INSTANCE_CLASSES: tuple[str, ...] = tuple(DB_INSTANCE_CLASS_MEMORY_GIB)
# RDS PostgreSQL's own formula, LEAST({DBInstanceClassMemory/9531392}, 5000), on the class's nominal memory. RDS's
# DBInstanceClassMemory is a little less than nominal, so the database is given this value explicitly: the limit it
# enforces and the alarm at 80 % of it then agree.
BYTES_PER_DB_CONNECTION = 9531392
MAX_DB_CONNECTIONS_CAP = 5000


def max_db_connections(instance_class: str) -> int:
    return min(
        DB_INSTANCE_CLASS_MEMORY_GIB[instance_class] * 1024**3 // BYTES_PER_DB_CONNECTION, MAX_DB_CONNECTIONS_CAP
    )


# The connections alarm (CloudWatch and Prometheus) fires above this share of max_connections.
DB_CONNECTIONS_ALARM_FRACTION = 0.8
# Pool size the platform gives each app (components/clinic_apps.py sets it in their environment). At most, an API
# pod opens its engine's pool and overflow, its hot-path pool and one /metrics reader; a notifier pod its engine's.
APP_DB_POOL_SIZE = 5
API_POD_DB_CONNECTIONS = 3 * APP_DB_POOL_SIZE + 1
NOTIFIER_POD_DB_CONNECTIONS = 2 * APP_DB_POOL_SIZE
# The file processor handles one message at a time: one connection, no overflow (its /readyz waits its turn).
FILE_PROCESSOR_DB_POOL_SIZE = 1
FILE_PROCESSOR_POD_DB_CONNECTIONS = FILE_PROCESSOR_DB_POOL_SIZE
# One pod checks a PDF in well under a second: uploads come by the minute, and the queue holds them through a restart.
FILE_PROCESSOR_REPLICAS = 1


def peak_app_db_connections(api_max_replicas: int, notifier_replicas: int) -> int:
    """Every pod at its ceiling: the HPA's maximum of API pods, plus one surge pod per Deployment during a rollout
    (maxSurge 1), plus one migrations Job per app that has one (API, notifier; Alembic holds one connection)."""
    return (
        (api_max_replicas + 1) * API_POD_DB_CONNECTIONS
        + (notifier_replicas + 1) * NOTIFIER_POD_DB_CONNECTIONS
        + (FILE_PROCESSOR_REPLICAS + 1) * FILE_PROCESSOR_POD_DB_CONNECTIONS
        + 2
    )
