"""The KMS key that encrypts CloudWatch log groups, shared by Cluster (control-plane logs) and ContainerLogs."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from components.key_policy import ServiceUser, account_context, key_policy


def logs_key_policy(account_id: str, partition: str, region: str, log_group_pattern: str) -> str:
    """The account administers the key; CloudWatch Logs of this region uses it, only for the log groups matching the
    pattern (the encryption context names the log group)."""
    logs = ServiceUser(
        "CloudWatchLogsForTheseGroups",
        f"logs.{region}.amazonaws.com",
        ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        {
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": (
                    f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_pattern}"
                )
            }
        },
    )
    return key_policy(account_id, partition, region, services=[logs])


def log_group_key(
    name: str,
    description: str,
    log_group_pattern: pulumi.Input[str],
    *,
    parent: pulumi.Resource,
    retain: bool,
    tags: Mapping[str, str],
) -> aws.kms.Key:
    """A rotating key for the log groups matching `log_group_pattern`. Retained log groups keep their key: without
    it their events could never be read again."""
    policy = pulumi.Output.all(account_context(parent), log_group_pattern).apply(
        lambda a: logs_key_policy(a[0][0], a[0][1], a[0][2], a[1])
    )
    return aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        policy=policy,
        deletion_window_in_days=30 if retain else 7,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
