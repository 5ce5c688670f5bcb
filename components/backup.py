"""DatabaseBackup: daily AWS Backup recovery points of the clinic's RDS instances in a KMS-encrypted vault, copied
to a vault in a second region, kept apart from RDS's own automated backups."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.key_policy import KeyUser, account_context, key_policy, validate_key_users
from limits import REGION_PATTERN

SERVICE_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
)
# 05:00 UTC: after the instance's automated backup window (02:00-03:00) and Sunday maintenance (03:30-04:30), see
# database.py. A snapshot cannot start while RDS is taking its own backup; the job would wait or fail.
SCHEDULE = "cron(0 5 * * ? *)"
START_WINDOW_MINUTES = 60
COMPLETION_WINDOW_MINUTES = 8 * 60
_REGION = re.compile(REGION_PATTERN)


@dataclass(frozen=True)
class DatabaseBackupArgs:
    instance_arns: Sequence[pulumi.Input[str]]
    """ARNs of the RDS instances to back up."""
    retention_days: int
    """Days a daily recovery point is kept."""
    region: str
    """Region of the stack (the vault's); the copy region must differ."""
    enabled: bool = True
    """False creates nothing (refused for a protected stack)."""
    copy_region: str | None = None
    """A second region that receives a copy of every recovery point, or None."""
    protect: bool = False
    """Prod: vaults and keys are `protect`ed and the vaults locked in governance mode."""
    vault_key_users: Sequence[KeyUser] = ()
    """Who may use the vault's key (the backup role, the deployer), through which services."""
    copy_vault_key_users: Sequence[KeyUser] = ()
    """Who may use the copy vault's key, through services of the copy region."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource and every recovery point."""


def validate_backup_args(args: DatabaseBackupArgs) -> None:
    s = args
    validate_key_users(args.vault_key_users)
    validate_key_users(args.copy_vault_key_users)
    if args.protect and not s.enabled:
        raise ValueError(
            "enabled = False is invalid for a protected stack; allowed: True (prod keeps "
            "recovery points of patients' data apart from RDS)"
        )
    if not s.enabled:
        return
    if not args.instance_arns:
        raise ValueError("instance_arns = [] is invalid; allowed: at least one RDS instance ARN")
    if not 1 <= s.retention_days <= 36500:
        raise ValueError(f"retention_days = {s.retention_days} is invalid; allowed: 1 to 36500")
    if not _REGION.fullmatch(args.region):
        raise ValueError(f"region = {args.region!r} is invalid; allowed: an AWS region such as eu-west-1")
    if s.copy_region is not None and (s.copy_region == args.region or not _REGION.fullmatch(s.copy_region)):
        raise ValueError(
            f"copy_region = {s.copy_region!r} is invalid; allowed: an AWS region other than {args.region}, or None"
        )


def backup_trust_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


class DatabaseBackup(pulumi.ComponentResource):
    vault_name: pulumi.Output[str] | None
    """The backup vault in the stack's region (None when backups are off)."""
    plan_id: pulumi.Output[str] | None
    """The backup plan (None when backups are off)."""
    copy_vault_arn: pulumi.Output[str] | None
    """The vault receiving copies in the copy region (None without a copy region)."""

    def __init__(self, name: str, args: DatabaseBackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:DatabaseBackup", name, None, opts)
        validate_backup_args(args)
        s = args
        self.vault_name = self.plan_id = self.copy_vault_arn = None
        if not s.enabled:
            self.register_outputs({"vault_name": None, "plan_id": None, "copy_vault_arn": None})
            return
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        vault = self._vault(name, "vault", args, tags, args.region, args.vault_key_users, provider=None)
        copy_vault = None
        if s.copy_region:
            # A provider of its own for the copy region; it takes its credentials from the same environment as the
            # default provider (the stack sets no aws:profile or assume-role settings that it would miss).
            copy_provider = aws.Provider(f"{name}-copy-region", region=s.copy_region, opts=child)
            copy_vault = self._vault(
                name, "copy-vault", args, tags, s.copy_region, args.copy_vault_key_users, provider=copy_provider
            )

        role = aws.iam.Role(f"{name}-role", assume_role_policy=backup_trust_policy(), tags=tags, opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{policy.rsplit('/', 1)[1]}",
                role=role.name,
                policy_arn=policy,
                opts=pulumi.ResourceOptions(parent=role),
            )
            for policy in SERVICE_ROLE_POLICIES
        ]

        plan = aws.backup.Plan(
            f"{name}-plan",
            tags=tags,
            opts=child,
            rules=[
                {
                    "rule_name": "daily",
                    "target_vault_name": vault.name,
                    "schedule": SCHEDULE,
                    "schedule_expression_timezone": "Etc/UTC",
                    "start_window": START_WINDOW_MINUTES,
                    "completion_window": COMPLETION_WINDOW_MINUTES,
                    # No continuous backup: for RDS it takes over the instance's automated backups and sets their
                    # retention to the plan's, fighting database.backupRetentionDays on every update. RDS keeps
                    # point-in-time recovery; this plan adds daily snapshots kept apart from it (and, below, in a
                    # second region).
                    "enable_continuous_backup": False,
                    "lifecycle": {"delete_after": s.retention_days},
                    "recovery_point_tags": tags,
                    "copy_actions": [
                        {"destination_vault_arn": copy_vault.arn, "lifecycle": {"delete_after": s.retention_days}}
                    ]
                    if copy_vault
                    else None,
                }
            ],
        )
        # The role's permissions are attached before anything is selected, so the first job cannot fail on them.
        aws.backup.Selection(
            f"{name}-rds",
            name=f"{name}-rds",
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=list(args.instance_arns),
            opts=pulumi.ResourceOptions(parent=plan, depends_on=attachments),
        )

        self.vault_name = vault.name
        self.plan_id = plan.id
        self.copy_vault_arn = copy_vault.arn if copy_vault else None
        self.register_outputs(
            {"vault_name": self.vault_name, "plan_id": self.plan_id, "copy_vault_arn": self.copy_vault_arn}
        )

    def _vault(
        self,
        name: str,
        role: str,
        args: DatabaseBackupArgs,
        tags: dict[str, str],
        region: str,
        key_users: Sequence[KeyUser],
        provider: aws.Provider | None,
    ) -> aws.backup.Vault:
        """A vault with its own key in `region` (the provider's); in prod protected and locked in governance mode."""
        protect = args.protect
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        keep = pulumi.ResourceOptions(parent=self, provider=provider, protect=protect)
        key = aws.kms.Key(
            f"{name}-{role}-key",
            description=f"{name}: {role} recovery points",
            enable_key_rotation=True,
            deletion_window_in_days=30 if protect else 7,
            # The copy region's key: kms:ViaService names that region's services, not the stack's.
            policy=account_context(self, region=region, provider=provider).apply(
                lambda c: key_policy(*c, users=key_users)
            ),
            tags=tags,
            opts=keep,
        )
        aws.kms.Alias(f"{name}-{role}-key-alias", name=f"alias/{name}-{role}", target_key_id=key.key_id, opts=child)
        # Dev only: force_destroy deletes the recovery points with the vault; prod's vault refuses while it has any.
        vault = aws.backup.Vault(f"{name}-{role}", kms_key_arn=key.arn, force_destroy=not protect, tags=tags, opts=keep)
        if protect:
            # Governance, not compliance, mode: recovery points cannot be deleted or shortened before the plan's
            # retention by anyone lacking backup:DeleteBackupVaultLockConfiguration, yet the lock stays removable
            # by that role, so a mistaken retention can still be fixed. Compliance mode turns irreversible after its
            # grace period: not even the account root could then remove the lock or delete a point before it expires.
            aws.backup.VaultLockConfiguration(
                f"{name}-{role}-lock",
                backup_vault_name=vault.name,
                min_retention_days=args.retention_days,
                opts=pulumi.ResourceOptions(parent=vault, provider=provider),
            )
        return vault
