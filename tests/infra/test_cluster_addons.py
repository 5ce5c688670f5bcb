"""Cluster add-ons follow the cluster's Kubernetes version, each with one owner; EKS support windows."""

import datetime

import pulumi
import pytest

from components.cluster import ClusterArgs, validate_cluster_args
from limits.eks_support import EKS_SUPPORT, extended_support_problem, support_status
from tests.infra.pulumi_mocks import evaluate_program

EKS = "eks:index:Cluster"
ADDON = "aws:eks/addon:Addon"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
DEPLOY_ROLE = "arn:aws:iam::123456789012:role/clinic-dev-deploy"


def addon(graph, name):
    found = [a for a in graph.of_type(ADDON) if a.inputs["addonName"] == name]
    assert len(found) == 1, f"expected one {name} add-on, found {[a.name for a in found]}"
    return found[0]


def test_vpc_cni_and_kube_proxy_are_pulumi_eks_add_ons_at_versions_for_the_cluster(stack):
    cluster = stack.one(EKS)
    version = cluster.inputs["version"]
    assert cluster.inputs["kubeProxyAddonOptions"]["version"] == f"v{version}.0-eksbuild.1", (
        "kube-proxy must be resolved for the cluster's own version"
    )
    cni = cluster.inputs["vpcCniOptions"]
    assert cni["addonVersion"] == "v1.20.4-eksbuild.2" and cni["enableNetworkPolicy"] is True
    assert "useDefaultVpcCni" not in cluster.inputs, "pulumi-eks stays the VPC CNI add-on's only owner"


def test_coredns_is_one_add_on_owned_here_and_created_after_the_node_groups(stack):
    assert stack.one(EKS).inputs["corednsAddonOptions"] == {"enabled": False}, "pulumi-eks must not own CoreDNS"
    coredns = addon(stack, "coredns")
    assert coredns.inputs["addonVersion"] == "v1.12.4-eksbuild.1"
    assert coredns.inputs["resolveConflictsOnCreate"] == "OVERWRITE" and coredns.inputs["preserve"] is True
    groups = stack.of_type(NODE_GROUP)
    assert groups and all(stack.depends_on(coredns, g) for g in groups)


def test_the_add_ons_follow_another_cluster_version():
    graph = evaluate_program(
        "dev",
        {
            "clinic-platform:cluster": {
                "kubernetesVersion": "1.34",
                "publicAccessCidrs": ["203.0.113.0/24"],
                "deployRoleArn": DEPLOY_ROLE,
            }
        },
    )
    assert graph.one(EKS).inputs["version"] == "1.34"
    assert graph.one(EKS).inputs["kubeProxyAddonOptions"]["version"] == "v1.34.0-eksbuild.1"
    assert all(g.inputs["version"] == "1.34" for g in graph.of_type(NODE_GROUP))
    assert autoscaler(graph).inputs["values"]["image"]["tag"] == "v1.34.5"


def test_support_windows_follow_the_eks_calendar():
    assert support_status("1.34", datetime.date(2026, 12, 1)) == "standard"
    assert support_status("1.34", datetime.date(2026, 12, 2)) == "extended", "billing starts on the end day"
    assert support_status("1.33", datetime.date(2026, 11, 29)) == "extended"
    assert support_status("1.33", datetime.date(2027, 7, 29)) == "ended"
    assert all(w.standard_end < w.extended_end for w in EKS_SUPPORT.values())


def test_an_extended_version_is_named_with_its_dates_and_the_version_to_move_to():
    today = datetime.date(2026, 11, 29)
    assert extended_support_problem("1.35", today) is None
    problem = extended_support_problem("1.33", today)
    assert "1.33 is in EKS extended support since 2026-07-29" in problem and "until 2027-07-29" in problem
    assert problem.endswith("upgrade one minor at a time to 1.35")


def test_dev_on_an_extended_version_is_warned(monkeypatch):
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, resource=None, *a, **k: warnings.append(message))
    monkeypatch.setattr(
        "components.cluster.datetime",
        type("D", (), {"date": type("d", (), {"today": staticmethod(lambda: datetime.date(2026, 11, 29))})}),
    )
    evaluate_program(
        "dev",
        {
            "clinic-platform:cluster": {
                "kubernetesVersion": "1.33",
                "publicAccessCidrs": ["203.0.113.0/24"],
                "deployRoleArn": DEPLOY_ROLE,
            }
        },
    )
    assert [w for w in warnings if "1.33 is in EKS extended support" in w], warnings


def test_an_unknown_version_is_refused_with_the_known_ones():
    args = ClusterArgs(
        cluster_name="c",
        kubernetes_version="1.29",
        vpc_id="v",
        private_subnet_ids=[],
        service_ipv4_cidr="172.20.0.0/16",
        node_groups=(),
        deploy_role_arn=DEPLOY_ROLE,
    )
    with pytest.raises(ValueError, match=r"kubernetes_version = '1.29' is invalid; allowed: 1.33, 1.34, 1.35"):
        validate_cluster_args(args)


def autoscaler(graph):
    return next(r for r in graph.of_type("kubernetes:helm.sh/v3:Release") if r.name.endswith("scaling-autoscaler"))


def test_metrics_server_is_an_add_on_for_the_cluster_version_after_the_nodes(stack):
    metrics = addon(stack, "metrics-server")
    assert metrics.inputs["addonVersion"] == "v0.8.0-eksbuild.1"
    assert metrics.inputs["clusterName"] == stack.one(EKS).inputs["name"]
    assert all(stack.depends_on(metrics, g) for g in stack.of_type(NODE_GROUP))


def test_the_autoscaler_matches_the_cluster_minor_and_finds_the_node_groups_by_tag(stack):
    release = autoscaler(stack)
    assert release.inputs["chart"] == "cluster-autoscaler" and release.inputs["version"] == "9.59.0"
    assert release.inputs["repositoryOpts"]["repo"] == "https://kubernetes.github.io/autoscaler"
    values = release.inputs["values"]
    version = stack.one(EKS).inputs["version"]
    assert values["image"]["tag"].startswith(f"v{version}."), "the autoscaler's minor must be the cluster's"
    assert values["autoDiscovery"] == {"clusterName": stack.one(EKS).inputs["name"]}
    assert values["cloudProvider"] == "aws" and values["awsRegion"] == "eu-west-1"
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.name.endswith("scaling-autoscaler-role"))
    assert values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == role.state["arn"]
    condition = role.input("assumeRolePolicy", "Statement")[0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == [
        "system:serviceaccount:kube-system:cluster-autoscaler"
    ]
    for group in stack.of_type(NODE_GROUP):
        assert stack.depends_on(release, group)


def test_the_autoscaler_may_resize_only_this_clusters_groups(stack):
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.name.endswith("scaling-autoscaler-role"))
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy").input("policy")
    cluster = stack.one(EKS).inputs["name"]
    writes = [s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert len(writes) == 1
    assert writes[0]["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned",
        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
    }
    unconditioned = [
        a
        for s in policy["Statement"]
        if "Condition" not in s
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert not [a for a in unconditioned if a.startswith("autoscaling:") and not a.startswith("autoscaling:Describe")]
    describe_groups = next(s for s in policy["Statement"] if s["Action"] == "eks:DescribeNodegroup")
    assert describe_groups["Resource"] == f"arn:aws:eks:eu-west-1:123456789012:nodegroup/{cluster}/*/*"


def test_an_autoscaler_for_an_unknown_version_is_refused():
    from components.scaling import ClusterScalingArgs, validate_cluster_scaling_args

    with pytest.raises(
        ValueError,
        match=r"kubernetes_version = '1.36' is invalid for the cluster autoscaler; "
        r"allowed: 1.33, 1.34, 1.35",
    ):
        validate_cluster_scaling_args(ClusterScalingArgs(cluster=None, kubernetes_version="1.36", region="r"))


def test_every_kubernetes_version_eks_supports_has_an_autoscaler():
    from components.scaling import AUTOSCALER_IMAGES

    assert set(AUTOSCALER_IMAGES) == set(EKS_SUPPORT)
    assert all(tag.startswith(f"v{minor}.") for minor, tag in AUTOSCALER_IMAGES.items())
