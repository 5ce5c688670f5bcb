"""Key policies for the platform's KMS keys (a helper module, not a component).

Every key gets the same shape, so a reader (or an auditor) finds the same three kinds of statement in each:

- `AccountAdministers`: the account (IAM-delegated: a principal also needs an IAM policy allowing it) may manage the
  key — describe, tag, rotate, disable, change its policy, schedule its deletion — and never use it. Keeping
  kms:PutKeyPolicy with the account is what keeps a key manageable: KMS refuses a policy that would lock out the
  principal setting it (the lockout safety check, which this program never bypasses), and the account root can
  always come back to a key whose roles were deleted. kms:CreateGrant is left out on purpose: a grant is use.
- `KeyUser` statements: named roles of this account (exact names, or the pattern of an auto-named role) may
  encrypt/decrypt, only through the AWS services named (kms:ViaService) and only with an IAM policy of their own
  allowing it too.
- `ServiceUser` statements: an AWS service principal that calls KMS itself (CloudWatch Logs, CloudWatch alarms
  publishing to an encrypted topic), narrowed by encryption context or source where the service supports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from limits import REGION_PATTERN

# What administrators may do. Explicit names rather than the console's `kms:Create*`: that wildcard includes
# kms:CreateGrant, which hands out use of the key.
ADMIN_ACTIONS: tuple[str, ...] = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
ENCRYPT_DECRYPT: tuple[str, ...] = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
)
DECRYPT: tuple[str, ...] = ("kms:Decrypt", "kms:DescribeKey")
# Services that attach a key to a resource (RDS storage, an EKS cluster, a backup copy) do it with a grant they
# create as the caller; the condition keeps such grants for AWS resources only.
GRANT_ACTIONS: tuple[str, ...] = ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")

_REGION = re.compile(REGION_PATTERN)
_SID = re.compile(r"[A-Za-z0-9]{1,64}")
# IAM role names: up to 64 of these characters, after an optional path; a trailing * matches Pulumi's suffix.
_ROLE = re.compile(r"([\w+=,.@-]+/)*[\w+=,.@-]{1,64}\*?")
_SERVICE = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class KeyUser:
    """Principals of this account that may use the key through some AWS services."""

    sid: str
    """Statement id naming who and why (`ApiSendsEvents`); letters and digits."""
    roles: Sequence[str]
    """IAM roles of this account by name (`clinic-dev-deploy`), or name pattern (`clinic-dev-apps-api-role-*`)."""
    services: Sequence[str]
    """Service prefixes the use must go through (`sqs`, `rds`, `secretsmanager`): kms:ViaService in the key's region."""
    actions: Sequence[str] = ENCRYPT_DECRYPT
    """KMS actions allowed."""
    grants: bool = False
    """Also create/list/revoke grants for AWS resources (RDS, EKS and AWS Backup attach keys through grants)."""


@dataclass(frozen=True)
class ServiceUser:
    """An AWS service principal that calls KMS itself."""

    sid: str
    """Statement id; letters and digits."""
    service: str
    """Service principal (`logs.eu-west-1.amazonaws.com`, `cloudwatch.amazonaws.com`)."""
    actions: Sequence[str]
    """KMS actions allowed."""
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """IAM condition block narrowing the use (encryption context, source account)."""


def role_name(arn: str) -> str:
    """The name (with its path) of the role `arn`, as KeyUser.roles takes it."""
    if ":role/" not in arn:
        raise ValueError(f"role ARN {arn!r} is invalid; allowed: arn:<partition>:iam::<account>:role/<name>")
    return arn.split(":role/", 1)[1]


def autonamed_role(logical_name: str) -> str:
    """The name pattern of a role Pulumi auto-names from `logical_name` (the name plus a random suffix): a key policy
    written before the role exists (no cycle between the data services and the cluster) can still name it."""
    return f"{logical_name}-*"


def validate_key_users(users: Sequence[KeyUser], services: Sequence[ServiceUser] = ()) -> None:
    """Who a key policy names, checked before any resource is registered (components call it on their Args)."""
    sids = [u.sid for u in users] + [s.sid for s in services]
    for sid in sids:
        if not _SID.fullmatch(sid) or sid == "AccountAdministers" or sids.count(sid) > 1:
            raise ValueError(f"sid = {sid!r} is invalid; allowed: unique letters and digits, not AccountAdministers")
    for user in users:
        if not user.roles:
            raise ValueError(f"{user.sid}: roles = [] is invalid; allowed: at least one IAM role name")
        for role in user.roles:
            if not _ROLE.fullmatch(role):
                raise ValueError(
                    f"{user.sid}: role {role!r} is invalid; allowed: an IAM role name (or path/name) of this "
                    "account, optionally ending in * (an auto-named role)"
                )
        if not user.services or not all(_SERVICE.fullmatch(s) for s in user.services):
            raise ValueError(
                f"{user.sid}: services = {list(user.services)} is invalid; allowed: at least one service prefix "
                "(sqs, s3, rds, secretsmanager): use of a key goes through a service"
            )
        if not user.actions or not all(a.startswith("kms:") for a in user.actions):
            raise ValueError(f"{user.sid}: actions = {list(user.actions)} is invalid; allowed: kms: actions")
    for service in services:
        if not service.service.endswith(".amazonaws.com"):
            raise ValueError(
                f"{service.sid}: service = {service.service!r} is invalid; allowed: a service principal "
                "(<name>.amazonaws.com)"
            )


def validate_key_policy_inputs(
    account_id: str, partition: str, region: str, users: Sequence[KeyUser], services: Sequence[ServiceUser]
) -> None:
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"account_id = {account_id!r} is invalid; allowed: a 12-digit AWS account id")
    validate_key_users(users, services)
    if not _REGION.fullmatch(region):
        raise ValueError(f"region = {region!r} is invalid; allowed: an AWS region such as eu-west-1")


def admin_statement(partition: str, account_id: str) -> dict[str, Any]:
    """The account administers the key through IAM (whoever IAM lets manage keys), without being able to use it."""
    return {
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": list(ADMIN_ACTIONS),
        "Resource": "*",
    }


def key_policy(
    account_id: str,
    partition: str,
    region: str,
    users: Sequence[KeyUser] = (),
    services: Sequence[ServiceUser] = (),
) -> str:
    """The key policy (JSON) of a key in `region`: the account administers it, `users` and `services` use it."""
    validate_key_policy_inputs(account_id, partition, region, users, services)
    account = {"AWS": f"arn:{partition}:iam::{account_id}:root"}
    statements: list[dict[str, Any]] = [admin_statement(partition, account_id)]
    for user in users:
        condition: dict[str, Any] = {
            "ArnLike": {"aws:PrincipalArn": sorted(f"arn:{partition}:iam::{account_id}:role/{r}" for r in user.roles)},
            "StringEquals": {
                "kms:CallerAccount": account_id,
                "kms:ViaService": sorted(f"{s}.{region}.amazonaws.com" for s in user.services),
            },
        }
        statements.append(
            {
                "Sid": user.sid,
                "Effect": "Allow",
                "Principal": account,
                "Action": list(user.actions),
                "Resource": "*",
                "Condition": condition,
            }
        )
        if user.grants:
            statements.append(
                {
                    "Sid": f"{user.sid}Grants",
                    "Effect": "Allow",
                    "Principal": account,
                    "Action": list(GRANT_ACTIONS),
                    "Resource": "*",
                    "Condition": {**condition, "Bool": {"kms:GrantIsForAWSResource": "true"}},
                }
            )
    for service in services:
        statement: dict[str, Any] = {
            "Sid": service.sid,
            "Effect": "Allow",
            "Principal": {"Service": service.service},
            "Action": list(service.actions),
            "Resource": "*",
        }
        if service.condition:
            statement["Condition"] = {op: dict(values) for op, values in service.condition.items()}
        statements.append(statement)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def account_context(
    parent: pulumi.Resource, *, region: str | None = None, provider: pulumi.ProviderResource | None = None
) -> pulumi.Output[tuple[str, str, str]]:
    """(account id, partition, region) the stack deploys to, for `key_policy`; `region` names another region (a copy
    region's key)."""
    invoke = pulumi.InvokeOutputOptions(parent=parent, provider=provider)
    return pulumi.Output.all(
        aws.get_caller_identity_output(opts=invoke).account_id,
        aws.get_partition_output(opts=invoke).partition,
        region if region is not None else aws.get_region_output(opts=invoke).region,
    ).apply(lambda a: (a[0], a[1], a[2]))
