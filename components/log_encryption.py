"""The KMS key that encrypts CloudWatch log groups, shared by Cluster (control-plane logs) and ContainerLogs."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def logs_key_policy(account_id: str, partition: str, region: str, log_group_pattern: str) -> str:
    """The account administers the key through IAM; CloudWatch Logs of this region may use it only for the log
    groups matching the pattern (the encryption context names the log group)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersThroughIam",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchLogsForTheseGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": [
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": (
                                f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_pattern}"
                            )
                        }
                    },
                },
            ],
        }
    )


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
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    policy = pulumi.Output.all(
        aws.get_caller_identity_output(opts=invoke).account_id,
        aws.get_partition_output(opts=invoke).partition,
        aws.get_region_output(opts=invoke).region,
        log_group_pattern,
    ).apply(lambda a: logs_key_policy(*a))
    return aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        policy=policy,
        deletion_window_in_days=30 if retain else 7,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
