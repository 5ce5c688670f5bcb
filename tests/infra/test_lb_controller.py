"""LoadBalancerController: pinned chart and IAM policy, IRSA, two replicas, after the nodes."""

import json

import pytest

from components.lb_controller import (
    CHART_VERSION,
    IAM_POLICY_FILE,
    LoadBalancerControllerArgs,
    validate_lb_controller_args,
)

RELEASE = "kubernetes:helm.sh/v3:Release"


def controller_release(stack):
    return next(r for r in stack.of_type(RELEASE) if r.name.endswith("lb-controller-release"))


def controller_account(stack):
    return next(r for r in stack.of_type("kubernetes:core/v1:ServiceAccount") if r.name.endswith("lb-controller-sa"))


def test_release_is_the_pinned_official_chart_with_cluster_region_vpc_and_two_replicas(stack):
    release = controller_release(stack)
    assert release.inputs["chart"] == "aws-load-balancer-controller"
    assert release.inputs["version"] == CHART_VERSION == "3.5.0"
    assert release.inputs["repositoryOpts"]["repo"] == "https://aws.github.io/eks-charts"
    values = release.inputs["values"]
    assert values["clusterName"] == stack.one("eks:index:Cluster").inputs["name"]
    assert values["region"] == "eu-west-1"
    assert values["vpcId"] == stack.one("aws:ec2/vpc:Vpc").name + "-id"
    assert values["replicaCount"] == 2
    assert values["serviceAccount"] == {"create": False, "name": "aws-load-balancer-controller"}
    assert values["defaultTags"]["project"] == "clinic-platform", "the ALBs it creates carry the platform tags"


def test_release_waits_for_node_groups_and_its_iam(stack):
    release = controller_release(stack)
    for group in stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert stack.depends_on(release, group), f"the release must depend on {group.name}"
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.name.endswith("lb-controller-role"))
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy")
    assert stack.depends_on(release, policy) and stack.depends_on(release, controller_account(stack))


def test_service_account_is_annotated_with_a_role_only_it_can_assume(stack):
    account = controller_account(stack)
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.name.endswith("lb-controller-role"))
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role.state["arn"]
    condition = role.input("assumeRolePolicy", "Statement")[0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == [
        "system:serviceaccount:kube-system:aws-load-balancer-controller"
    ]


def test_controller_policy_is_the_pinned_file(stack):
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.name.endswith("lb-controller-role"))
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy")
    assert json.loads(policy.inputs["policy"]) == json.loads(IAM_POLICY_FILE.read_text())
    actions = {
        a
        for s in json.loads(IAM_POLICY_FILE.read_text())["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "elasticloadbalancing:DeleteLoadBalancer" in actions and "iam:*" not in actions


def test_a_single_replica_is_refused():
    with pytest.raises(ValueError, match="replicas = 1 is invalid; allowed: 2 or more"):
        validate_lb_controller_args(LoadBalancerControllerArgs(cluster=None, vpc_id="v", region="r", replicas=1))
