"""ContainerLogs: every container's stdout/stderr (and Container Insights' performance events) in CloudWatch Logs,
KMS-encrypted and kept for the stack's retention, shipped by the Amazon CloudWatch Observability EKS add-on.

The add-on runs Fluent Bit (application, dataplane and host logs) and the CloudWatch agent (Container Insights
performance events) in `amazon-cloudwatch`, both under the `cloudwatch-agent` service account. Both create a
missing log group themselves, without retention or key, so the groups are created here first and the add-on only
after them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.log_encryption import log_group_key
from limits import LOG_RETENTION_DAYS

ADDON = "amazon-cloudwatch-observability"
NAMESPACE = "amazon-cloudwatch"
SERVICE_ACCOUNT = "cloudwatch-agent"
# Fluent Bit writes application, dataplane and host; the agent writes performance (Container Insights' EMF events).
# On AL2023 nodes dataplane and host stay mostly empty (journald); they are created anyway so nothing escapes retention.
LOG_GROUPS = ("application", "dataplane", "host", "performance")
# Container Insights with enhanced observability and container logs, without Application Signals: nothing in the
# clinic is instrumented for it, and it would write to a log group of its own (/aws/application-signals/data) that
# this component does not control. A custom agent config replaces the add-on's default one entirely.
ADDON_CONFIGURATION = {
    "containerLogs": {"enabled": True},
    "agent": {
        "config": {
            "logs": {
                "metrics_collected": {
                    "kubernetes": {"enhanced_container_insights": True, "accelerated_compute_metrics": False}
                }
            }
        }
    },
}


@dataclass(frozen=True)
class ContainerLogsArgs:
    cluster: Cluster
    """The cluster whose containers are logged (its name, OIDC provider for IRSA, node groups)."""
    retention_days: int
    """Retention of every log group, a value CloudWatch Logs accepts (settings.observability.log_retention_days)."""
    retain: bool = False
    """Prod: the log groups (logs of a PHI system) and their key are kept, not deleted, when the stack is destroyed."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""
    wait_for: Sequence[pulumi.Resource] = ()
    """Created after these: the load balancer controller, whose webhooks would intercept the add-on's Services."""


def validate_container_logs_args(args: ContainerLogsArgs) -> None:
    if args.retention_days not in LOG_RETENTION_DAYS:
        raise ValueError(
            f"retention_days = {args.retention_days} is invalid; allowed: " + ", ".join(map(str, LOG_RETENTION_DAYS))
        )


def log_group_names(cluster_name: str) -> dict[str, str]:
    return {group: f"/aws/containerinsights/{cluster_name}/{group}" for group in LOG_GROUPS}


def agent_policy(cluster_name: str, region: str, account_id: str, partition: str) -> str:
    """What the agent and Fluent Bit need, on this cluster's log groups only: no PutRetentionPolicy (retention is
    this component's) and no log group elsewhere. CreateLogGroup stays: some Fluent Bit versions call it before
    their first write (auto_create_group is on in the add-on) and retry for as long as it is denied; on a group that
    exists it changes nothing."""
    groups = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/containerinsights/{cluster_name}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ClusterLogGroups",
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": groups,
                },
                {"Sid": "FindLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"},
                {
                    "Sid": "ContainerInsightsMetrics",
                    "Effect": "Allow",
                    "Action": "cloudwatch:PutMetricData",
                    "Resource": "*",
                },
                {
                    "Sid": "NodeVolumesAndTags",
                    "Effect": "Allow",
                    "Action": ["ec2:DescribeVolumes", "ec2:DescribeTags"],
                    "Resource": "*",
                },
            ],
        }
    )


class ContainerLogs(pulumi.ComponentResource):
    log_group_names: pulumi.Output[dict[str, str]]
    """Log group name per kind (application, dataplane, host, performance)."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting the log groups (reading them needs kms:Decrypt through CloudWatch Logs)."""
    addon_name: pulumi.Output[str]
    """The EKS add-on shipping the logs."""

    def __init__(self, name: str, args: ContainerLogsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:ContainerLogs", name, None, opts)
        validate_container_logs_args(args)
        cluster = args.cluster
        tags = dict(args.tags)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        names = cluster.cluster_name.apply(log_group_names)

        def group_name(group: str) -> pulumi.Output[str]:
            return names.apply(lambda n: n[group])

        key = log_group_key(
            f"{name}-key",
            f"{name}: container logs",
            cluster.cluster_name.apply(lambda c: f"/aws/containerinsights/{c}/*"),
            parent=self,
            retain=args.retain,
            tags=tags,
        )
        groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-{group}",
                name=group_name(group),
                retention_in_days=args.retention_days,
                kms_key_id=key.arn,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain),
            )
            for group in LOG_GROUPS
        ]

        role = cluster.irsa_role(
            f"{name}-agent-role",
            NAMESPACE,
            SERVICE_ACCOUNT,
            parent=self,
            tags=tags,
            policy=pulumi.Output.all(
                cluster.cluster_name,
                aws.get_region_output(opts=invoke).region,
                aws.get_caller_identity_output(opts=invoke).account_id,
                aws.get_partition_output(opts=invoke).partition,
            ).apply(lambda a: agent_policy(*a)),
        )
        addon = aws.eks.Addon(
            f"{name}-addon",
            cluster_name=cluster.cluster_name,
            addon_name=ADDON,
            service_account_role_arn=role.arn,
            configuration_values=json.dumps(ADDON_CONFIGURATION),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=tags,
            # The groups first (or the shippers create them unencrypted and never expiring); the role and its policy
            # (role.arn waits for it) before the pods start and until they are gone; nodes to run on, or the add-on
            # never becomes active.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*groups, *cluster.node_groups, *args.wait_for]),
        )

        self.log_group_names = names
        self.kms_key_arn = key.arn
        self.addon_name = addon.addon_name
        self.register_outputs(
            {"log_group_names": self.log_group_names, "kms_key_arn": self.kms_key_arn, "addon_name": self.addon_name}
        )
