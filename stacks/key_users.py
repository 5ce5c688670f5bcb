"""Who may use each of the platform's KMS keys, and through which AWS service: the one table the key policies are
built from (README "Keys"). Administration (describe, rotate, change the policy, schedule deletion) stays with the
account through IAM on every key; nobody below may manage a key, and nobody else may use one.

The apps' roles and the backup role are auto-named by Pulumi and created after the keys they use (the keys belong to
components that must not wait for the cluster), so they are named here by the pattern of their auto-name. A renamed
component breaks tests/infra/test_key_access.py, which checks every pattern against the roles the program creates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.key_policy import DECRYPT, ENCRYPT_DECRYPT, KeyUser, autonamed_role, role_name
from stacks.settings import PlatformSettings

# SQS: a producer needs a data key and to check it (GenerateDataKey, Decrypt), a consumer to decrypt (SQS docs,
# "Configuring AWS KMS permissions"); SNS publishers the same.
PRODUCE = ("kms:GenerateDataKey", "kms:Decrypt")
CONSUME = ("kms:Decrypt",)


@dataclass(frozen=True)
class PlatformRoles:
    """The IAM roles (names or auto-name patterns) that use the platform's keys."""

    api: str
    """The API's IRSA role (ClinicApps' `api` workload)."""
    notifier: str
    """The notifier's IRSA role."""
    file_processor: str
    """The file processor's IRSA role (checks uploaded results, quarantines refused ones)."""
    alertmanager: str
    """Alertmanager's IRSA role (Monitoring), which publishes to the alarm topic."""
    backup: str
    """The role AWS Backup runs the plan's jobs and copies with."""
    cluster: str
    """The EKS cluster's service role (pulumi-eks names it `<cluster>-eksRole-role`)."""
    deploy: str
    """CI's deploy role (cluster.deployRoleArn): creates the instance, the cluster, the vaults."""
    restore_drill: str | None
    """The restore drill's role (bootstrap/github-oidc.yaml, prod only): restores the database with its key."""
    operators: Sequence[str]
    """Operators' roles (cluster.adminRoleArns): restore the database, inspect and redrive dead letters."""


def platform_roles(settings: PlatformSettings) -> PlatformRoles:
    base = f"clinic-{settings.stack}"
    assert settings.cluster.deploy_role_arn is not None  # load_settings refuses a stack without one
    return PlatformRoles(
        api=autonamed_role(f"{base}-apps-api-role"),
        notifier=autonamed_role(f"{base}-apps-notifier-role"),
        file_processor=autonamed_role(f"{base}-apps-file-processor-role"),
        alertmanager=autonamed_role(f"{base}-monitoring-alertmanager-role"),
        backup=autonamed_role(f"{base}-backup-role"),
        cluster=autonamed_role(f"{base}-cluster-eks-eksRole-role"),
        deploy=role_name(settings.cluster.deploy_role_arn),
        # The bootstrap template names it clinic-<stack>-restore-drill and creates it for prod only.
        restore_drill=f"{base}-restore-drill" if settings.is_prod else None,
        operators=[role_name(arn) for arn in settings.cluster.admin_role_arns],
    )


@dataclass(frozen=True)
class PlatformKeyUsers:
    """Key users per key."""

    database: list[KeyUser]
    """The database key: RDS storage, snapshots, Performance Insights, the master secret."""
    exams: list[KeyUser]
    """The exam bucket's key."""
    queues: list[KeyUser]
    """The event queues' and dead-letter queues' key."""
    alarm_topic: list[KeyUser]
    """The alarm topic's key (CloudWatch itself is a service user in Alarms)."""
    backup_vault: list[KeyUser]
    """The backup vault's key."""
    copy_vault: list[KeyUser]
    """The copy region's vault key."""
    cluster_secrets: list[KeyUser]
    """The key EKS encrypts Kubernetes Secrets with."""


def platform_key_users(settings: PlatformSettings) -> PlatformKeyUsers:
    r = platform_roles(settings)
    # Whoever creates or restores an instance makes RDS create a grant for it, and the master secret is written by
    # Secrets Manager with the same key.
    database_admins = [r.deploy, *([r.restore_drill] if r.restore_drill else []), *r.operators]
    database = [
        KeyUser("DeployersAttachToDatabase", database_admins, ["rds", "secretsmanager"], grants=True),
        # The apps read the master secret (GetSecretValue decrypts it through Secrets Manager) and nothing else.
        KeyUser("AppsReadDatabaseSecret", [r.api, r.notifier, r.file_processor], ["secretsmanager"], actions=DECRYPT),
    ]
    if settings.backup.enabled:
        # AWS Backup snapshots the instance and copies the snapshot to the copy region as its role.
        database.append(KeyUser("BackupCopiesSnapshots", [r.backup], ["rds", "backup"], grants=True))
    queues = [
        KeyUser("ApiSendsEvents", [r.api], ["sqs"], actions=PRODUCE),
        KeyUser("NotifierReceivesEvents", [r.notifier], ["sqs"], actions=CONSUME),
        KeyUser("FileProcessorReceivesFiles", [r.file_processor], ["sqs"], actions=CONSUME),
    ]
    if r.operators:
        # The DLQ alarms tell a person to inspect and redrive dead letters: both ends of a move need the key.
        queues.append(KeyUser("OperatorsRedriveDeadLetters", list(r.operators), ["sqs"], actions=PRODUCE))
    vault = [KeyUser("BackupWritesRecoveryPoints", [r.backup, r.deploy], ["backup", "rds"], grants=True)]
    return PlatformKeyUsers(
        database=database,
        exams=[
            KeyUser("ApiReadsAndWritesExams", [r.api], ["s3"], actions=PRODUCE),
            # Reads uploaded results, writes a refused one's quarantine copy.
            KeyUser("FileProcessorChecksExams", [r.file_processor], ["s3"], actions=PRODUCE),
        ],
        queues=queues,
        alarm_topic=[KeyUser("AlertmanagerPublishes", [r.alertmanager], ["sns"], actions=PRODUCE)]
        if settings.observability.monitoring
        else [],
        backup_vault=vault,
        copy_vault=vault,
        cluster_secrets=[
            KeyUser("ClusterEncryptsSecrets", [r.deploy, r.cluster], ["eks"], actions=ENCRYPT_DECRYPT, grants=True)
        ],
    )
