"""LoadBalancerController: the AWS Load Balancer Controller, which turns Ingresses and LoadBalancer Services into
ALBs/NLBs, and which must outlive every one of them on destroy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import Cluster

# The chart and the IAM policy move together: the policy file is the controller's docs/install/iam_policy.json at
# the same tag as the chart's appVersion. Upgrade both in one change.
# renovate: datasource=helm depName=aws-load-balancer-controller registryUrl=https://aws.github.io/eks-charts
CHART_VERSION = "3.5.0"
APP_VERSION = "v3.5.0"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
IAM_POLICY_FILE = Path(__file__).with_name("lb_controller_iam_policy.json")
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
# helm uninstall waits this long for the controller's pods to go (its finalizers are already cleared by then).
RELEASE_TIMEOUT_SECONDS = 600
# What every LoadBalancer Service must name in spec.loadBalancerClass: the Service mutating webhook that would set it
# is off (see chart_values), and a Service without it would get a classic ELB from the in-tree cloud provider.
NLB_LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    cluster: Cluster
    """The cluster (its OIDC provider, Kubernetes provider and node groups)."""
    vpc_id: pulumi.Input[str]
    """VPC of the cluster, passed so the controller never needs the node's instance metadata."""
    region: str
    """AWS region, for the same reason."""
    replicas: int = 2
    """Controller replicas (its webhooks fail closed, so one is never enough)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for the IAM role and, through the controller, for every load balancer it creates."""


def validate_lb_controller_args(args: LoadBalancerControllerArgs) -> None:
    if args.replicas < 2:
        raise ValueError(
            f"replicas = {args.replicas} is invalid; allowed: 2 or more (the controller's admission "
            "webhooks reject Ingress/Service changes while no replica is up)"
        )


def iam_policy() -> str:
    """The controller's pinned IAM policy, validated as JSON when the program runs rather than when AWS rejects it."""
    document = json.loads(IAM_POLICY_FILE.read_text())
    if document.get("Version") != "2012-10-17" or not document.get("Statement"):
        raise ValueError(f"{IAM_POLICY_FILE.name} is not an IAM policy document")
    return json.dumps(document)


def chart_values(cluster_name: str, region: str, vpc_id: str, replicas: int, tags: Mapping[str, str]) -> dict:
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "replicaCount": replicas,
        "serviceAccount": {"create": False, "name": SERVICE_ACCOUNT},
        "defaultTags": dict(tags),
        "podDisruptionBudget": {"maxUnavailable": 1},
        # Scheduled before (and never evicted for) ordinary pods; the chart's default, pinned here.
        "priorityClassName": "system-cluster-critical",
        # One replica per node (a spot reclaim takes one node) and, where the zones allow, per zone.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT}},
            },
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_ACCOUNT}},
            },
        ],
        # The chart's Service webhook (mservice) intercepts the creation of every Service in every namespace with
        # failurePolicy Fail, only to set loadBalancerClass on type LoadBalancer: while no controller pod is ready
        # (first install, both replicas reclaimed) it refused ClusterIP Services of kube-prometheus-stack, the
        # CloudWatch add-on and the clinic. Off; LoadBalancer Services name NLB_LOAD_BALANCER_CLASS themselves.
        "enableServiceMutatorWebhook": False,
        # Readiness-gate injection (mpod) only in namespaces labelled elbv2.k8s.aws/pod-readiness-gate-inject. Ignore:
        # with both replicas down a pod is still created (a node reclaim or an HPA scale-up must not wait for the
        # controller), only without the gate; nothing registers targets then anyway, and the controller registers
        # the ready pods when it is back. A rollout meanwhile is held by the Deployment's maxUnavailable 0.
        # webhookNamespaceSelectors stays unset: the chart reuses it for its QUIC webhook, whose policy is Fail.
        "podMutatorWebhookConfig": {"failurePolicy": "Ignore"},
    }


class LoadBalancerController(pulumi.ComponentResource):
    release_name: pulumi.Output[str | None]
    """Helm release name."""
    role_arn: pulumi.Output[str]
    """IRSA role of the controller."""

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:LoadBalancerController", name, None, opts)
        validate_lb_controller_args(args)
        cluster = args.cluster
        in_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider)

        role = cluster.irsa_role(f"{name}-role", NAMESPACE, SERVICE_ACCOUNT, iam_policy(), parent=self, tags=args.tags)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": SERVICE_ACCOUNT,
                "namespace": NAMESPACE,
                "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                "labels": {"app.kubernetes.io/name": SERVICE_ACCOUNT},
            },
            opts=in_cluster,
        )
        values = pulumi.Output.all(cluster.cluster_name, args.vpc_id).apply(
            lambda a: chart_values(a[0], args.region, a[1], args.replicas, args.tags)
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=SERVICE_ACCOUNT,
            chart="aws-load-balancer-controller",
            version=CHART_VERSION,
            repository_opts={"repo": CHART_REPOSITORY},
            namespace=NAMESPACE,
            values=values,
            timeout=RELEASE_TIMEOUT_SECONDS,
            atomic=True,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.provider,
                # Pods need nodes to run on and credentials to call AWS (the account's role ARN resolves once the
                # policy is attached) before the release can be ready; and on destroy the release must still be
                # running while Ingresses/Services ask it to delete their LBs.
                depends_on=[*cluster.node_groups, account],
            ),
        )

        self._provider = cluster.provider
        self.ready: list[pulumi.Resource] = [self.release]
        """Depend on these to be created after the controller's pods (and webhooks) are ready, and deleted before."""
        self.release_name = self.release.name
        self.role_arn = role.arn
        self.register_outputs({"release_name": self.release_name, "role_arn": self.role_arn})

    def load_balancer_opts(self, parent: pulumi.Resource | None = None) -> pulumi.ResourceOptions:
        """Options for every Ingress and LoadBalancer Service: created after the controller (its webhooks reject
        them before) and deleted before it, while it can still delete their ALB/NLB and clear the finalizer.
        A LoadBalancer Service also sets spec.loadBalancerClass to NLB_LOAD_BALANCER_CLASS."""
        return pulumi.ResourceOptions(parent=parent, provider=self._provider, depends_on=[self.release])
