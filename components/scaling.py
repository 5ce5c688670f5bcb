"""ClusterScaling: pods and nodes that actually scale — metrics-server (the HPA's CPU metrics) as an EKS add-on, and
the Cluster Autoscaler growing and shrinking the managed node groups it finds by their tags.

Cluster Autoscaler rather than Karpenter: the platform's capacity is its managed node groups (bounded by their
`maxSize` in stack settings, which the settings check the HPA ceiling against); the autoscaler scales exactly those,
with a role that can touch nothing but their Auto Scaling groups, and needs no interruption queue, CRDs or
node classes of its own. EKS tags every managed node group's Auto Scaling group with
`k8s.io/cluster-autoscaler/enabled=true` and `k8s.io/cluster-autoscaler/<cluster>=owned`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import Cluster, addon_version

METRICS_SERVER_ADDON = "metrics-server"
# renovate: datasource=helm depName=cluster-autoscaler registryUrl=https://kubernetes.github.io/autoscaler
AUTOSCALER_CHART_VERSION = "9.59.0"
AUTOSCALER_CHART_REPOSITORY = "https://kubernetes.github.io/autoscaler"
AUTOSCALER_NAMESPACE = "kube-system"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
# The autoscaler's minor must match the cluster's (it simulates the scheduler of that version): the newest patch of
# each minor, from the kubernetes/autoscaler release tags. A new Kubernetes version needs its row first.
AUTOSCALER_IMAGES: dict[str, str] = {"1.33": "v1.33.6", "1.34": "v1.34.5", "1.35": "v1.35.2"}
RELEASE_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class ClusterScalingArgs:
    cluster: Cluster
    """The cluster (its name, OIDC provider, Kubernetes provider and node groups)."""
    kubernetes_version: str
    """The cluster's Kubernetes version: the add-on's version and the autoscaler's image follow it."""
    region: str
    """AWS region of the node groups' Auto Scaling groups."""
    wait_for: Sequence[pulumi.Resource] = ()
    """Created after these: the load balancer controller, whose webhooks would intercept the Services made here."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for the add-on and the IAM role."""


def validate_cluster_scaling_args(args: ClusterScalingArgs) -> None:
    if args.kubernetes_version not in AUTOSCALER_IMAGES:
        raise ValueError(
            f"kubernetes_version = {args.kubernetes_version!r} is invalid for the cluster autoscaler; "
            f"allowed: {', '.join(AUTOSCALER_IMAGES)} (add the autoscaler release for a new version)"
        )


def autoscaler_policy(cluster_name: str, region: str, account_id: str, partition: str) -> str:
    """Read the Auto Scaling groups and instance types; resize or shrink only the groups tagged as this cluster's
    (EKS tags the managed node groups' groups), and describe only this cluster's node groups."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Discover",
                    "Effect": "Allow",
                    "Resource": "*",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                    ],
                },
                {
                    "Sid": "NodeGroups",
                    "Effect": "Allow",
                    "Action": "eks:DescribeNodegroup",
                    "Resource": f"arn:{partition}:eks:{region}:{account_id}:nodegroup/{cluster_name}/*/*",
                },
                {
                    "Sid": "ScaleOwnGroups",
                    "Effect": "Allow",
                    "Resource": "*",
                    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    "Condition": {
                        "StringEquals": {
                            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned",
                            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
                        }
                    },
                },
            ],
        }
    )


def autoscaler_values(cluster_name: str, region: str, kubernetes_version: str, role_arn: str) -> dict:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        # Finds the groups by the two tags EKS puts on managed node groups (the chart's default tag list).
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"tag": AUTOSCALER_IMAGES[kubernetes_version]},
        "rbac": {
            "serviceAccount": {
                "create": True,
                "name": AUTOSCALER_SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            }
        },
        "extraArgs": {
            # One group spans every AZ; keep zones balanced when several similar groups exist.
            "balance-similar-node-groups": True,
            "expander": "least-waste",
        },
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "100m", "memory": "600Mi"}, "limits": {"memory": "600Mi"}},
    }


class ClusterScaling(pulumi.ComponentResource):
    metrics_server_addon: pulumi.Output[str]
    """The metrics-server EKS add-on (the HPA's resource metrics)."""
    autoscaler_role_arn: pulumi.Output[str]
    """IRSA role of the Cluster Autoscaler."""

    def __init__(self, name: str, args: ClusterScalingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:ClusterScaling", name, None, opts)
        validate_cluster_scaling_args(args)
        cluster, tags = args.cluster, dict(args.tags)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        # Its pods need nodes before the add-on is ACTIVE; its Service and APIService come after the controller.
        metrics_server = aws.eks.Addon(
            f"{name}-metrics-server",
            cluster_name=cluster.cluster_name,
            addon_name=METRICS_SERVER_ADDON,
            addon_version=addon_version(METRICS_SERVER_ADDON, args.kubernetes_version, self),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*cluster.node_groups, *args.wait_for]),
        )

        role = cluster.irsa_role(
            f"{name}-autoscaler-role",
            AUTOSCALER_NAMESPACE,
            AUTOSCALER_SERVICE_ACCOUNT,
            parent=self,
            tags=tags,
            policy=pulumi.Output.all(
                cluster.cluster_name,
                aws.get_caller_identity_output(opts=invoke).account_id,
                aws.get_partition_output(opts=invoke).partition,
            ).apply(lambda a: autoscaler_policy(a[0], args.region, a[1], a[2])),
        )
        k8s.helm.v3.Release(
            f"{name}-autoscaler",
            name=AUTOSCALER_SERVICE_ACCOUNT,
            chart="cluster-autoscaler",
            version=AUTOSCALER_CHART_VERSION,
            repository_opts={"repo": AUTOSCALER_CHART_REPOSITORY},
            namespace=AUTOSCALER_NAMESPACE,
            values=pulumi.Output.all(cluster.cluster_name, role.arn).apply(
                lambda a: autoscaler_values(a[0], args.region, args.kubernetes_version, a[1])
            ),
            timeout=RELEASE_TIMEOUT_SECONDS,
            atomic=True,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.provider,
                # Nodes to run on before it starts, and until it is gone on destroy (its permissions: role.arn in the
                # values resolves only once the policy is attached).
                depends_on=[*cluster.node_groups, *args.wait_for],
            ),
        )

        self.metrics_server_addon = metrics_server.addon_name
        self.autoscaler_role_arn = role.arn
        self.register_outputs(
            {"metrics_server_addon": self.metrics_server_addon, "autoscaler_role_arn": self.autoscaler_role_arn}
        )
