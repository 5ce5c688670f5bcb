"""Who reaches the cluster: the endpoint stays private and admits the in-VPC runner; every role that must use the
cluster has exactly one access entry with its policy; the pull-request preview role can only read; whoever created
the cluster gets nothing by accident."""

import re

import pulumi
import pytest

import components.cluster as cluster_module
from components.cluster import (
    ACCESS_POLICY_VERBS,
    ADMIN_VIEW_POLICY,
    CLUSTER_ADMIN_POLICY,
    READ_ONLY_VERBS,
    VIEW_POLICY,
    Cluster,
    ClusterArgs,
    NodeGroupArgs,
    access_entries,
    no_creator_admin,
    validate_cluster_args,
)
from stacks.settings import StackSettingsError
from tests.infra.pulumi_mocks import evaluate, evaluate_program, stack_settings

EKS = "eks:index:Cluster"
ROLE = "arn:aws:iam::123456789012:role/{}"
GROUP = NodeGroupArgs(
    name="general",
    instance_types=("t3.large",),
    capacity_type="SPOT",
    min_size=1,
    desired_size=1,
    max_size=2,
    disk_size_gb=20,
)


def args(**overrides) -> ClusterArgs:
    values = dict(
        cluster_name="c",
        kubernetes_version="1.34",
        vpc_id="v",
        private_subnet_ids=["a", "b"],
        service_ipv4_cidr="172.20.0.0/16",
        node_groups=[GROUP],
        deploy_role_arn=ROLE.format("deploy"),
        api_client_security_group_ids=["sg-runner"],
    )
    return ClusterArgs(**{**values, **overrides})


def policies(entry: dict) -> list[str]:
    return [p["policyArn"] for p in entry["accessPolicies"].values()]


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_each_committed_stack_gives_ci_exactly_its_two_entries(name, dev, prod):
    graph = {"dev": dev, "prod": prod}[name]
    entries = graph.one(EKS).inputs["accessEntries"]
    settings = stack_settings(name)
    assert settings.cluster.deploy_role_arn == ROLE.format(f"clinic-{name}-deploy")
    assert entries == {
        "deploy": {
            "principalArn": ROLE.format(f"clinic-{name}-deploy"),
            "accessPolicies": {
                "cluster-admin": {"policyArn": CLUSTER_ADMIN_POLICY, "accessScope": {"type": "cluster"}}
            },
        },
        "preview": {
            "principalArn": ROLE.format(f"clinic-{name}-preview"),
            "accessPolicies": {"admin-view": {"policyArn": ADMIN_VIEW_POLICY, "accessScope": {"type": "cluster"}}},
        },
    }


def test_operators_get_admin_or_view_entries_keyed_by_role_name(stack):
    name = "dev" if "dev" in stack.one(EKS).inputs["name"] else "prod"
    graph = evaluate_program(
        name,
        {
            "clinic-platform:cluster": {
                **_committed_cluster(name),
                "adminRoleArns": [ROLE.format("platform/oncall-admin")],
                "viewerRoleArns": [ROLE.format("support")],
            }
        },
    )
    entries = graph.one(EKS).inputs["accessEntries"]
    assert set(entries) == {"deploy", "preview", "admin-platform-oncall-admin", "viewer-support"}
    assert policies(entries["admin-platform-oncall-admin"]) == [CLUSTER_ADMIN_POLICY]
    assert entries["admin-platform-oncall-admin"]["principalArn"] == ROLE.format("platform/oncall-admin")
    assert policies(entries["viewer-support"]) == [VIEW_POLICY]
    for entry in entries.values():
        assert [p["accessScope"] for p in entry["accessPolicies"].values()] == [{"type": "cluster"}]


def _committed_cluster(name: str) -> dict:
    import yaml

    from tests.infra.pulumi_mocks import ROOT

    return yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]["clinic-platform:cluster"]


def test_the_preview_role_can_only_read_and_the_deploy_role_can_write(stack):
    entries = stack.one(EKS).inputs["accessEntries"]
    for policy in policies(entries["preview"]):
        assert policy in ACCESS_POLICY_VERBS, f"{policy}: verbs unknown, cannot show it is read-only"
        assert ACCESS_POLICY_VERBS[policy] <= READ_ONLY_VERBS, f"the preview role could write through {policy}"
    assert "*" in ACCESS_POLICY_VERBS[policies(entries["deploy"])[0]]


def test_whoever_creates_the_cluster_gets_no_hidden_admin_entry(monkeypatch):
    """pulumi-eks hard-codes bootstrapClusterCreatorAdminPermissions=true on its child aws.eks.Cluster; the Cluster
    component passes a transform (Pulumi runs transforms on packaged components' children) that turns it off."""
    seen = []

    class Recording(cluster_module.eks.Cluster):
        def __init__(self, resource_name, *rest, opts=None, **kwargs):
            seen.extend(opts.transforms or [])
            super().__init__(resource_name, *rest, opts=opts, **kwargs)

    monkeypatch.setattr(cluster_module.eks, "Cluster", Recording)
    evaluate(lambda: Cluster("c", args()), stack="dev")
    assert seen == [no_creator_admin]

    child = pulumi.ResourceTransformArgs(
        custom=True,
        type_="aws:eks/cluster:Cluster",
        name="c-eksCluster",
        props={
            "name": "c",
            "accessConfig": {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True},
        },
        opts=pulumi.ResourceOptions(),
    )
    result = no_creator_admin(child)
    assert result.props["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert result.props["name"] == "c"
    other = pulumi.ResourceTransformArgs(
        custom=True, type_="aws:iam/role:Role", name="r", props={"name": "r"}, opts=pulumi.ResourceOptions()
    )
    assert no_creator_admin(other) is None


def test_access_entry_keys_do_not_move_when_a_list_is_reordered():
    one = access_entries(args(admin_role_arns=[ROLE.format("a"), ROLE.format("b")]))
    two = access_entries(args(admin_role_arns=[ROLE.format("b"), ROLE.format("a")]))
    assert one == two


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"deploy_role_arn": "clinic-deploy"},
            "deploy_role_arn = 'clinic-deploy' is invalid; allowed: an IAM role ARN",
        ),
        (
            {"preview_role_arn": "arn:aws:iam::123456789012:user/bob"},
            "preview_role_arn = 'arn:aws:iam::123456789012:user/bob' is invalid",
        ),
        ({"admin_role_arns": [ROLE.format("deploy")]}, "appear(s) more than once"),
        (
            {"admin_role_arns": [ROLE.format("ops"), "arn:aws:iam::210987654321:role/ops"]},
            "name the same role name twice",
        ),
        ({"public_access_cidrs": ["0.0.0.0/0"]}, "public_access_cidrs = ['0.0.0.0/0'] is invalid"),
        ({"api_client_security_group_ids": []}, "public_access_cidrs is empty and no api_client_security_group_ids"),
    ],
)
def test_bad_access_arguments_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_cluster_args(args(**overrides))


def test_operators_cidrs_alone_still_open_the_public_endpoint_to_them_only():
    graph = evaluate(
        lambda: Cluster("c", args(api_client_security_group_ids=[], public_access_cidrs=["198.51.100.0/24"])),
        stack="dev",
    )
    cluster = graph.one(EKS)
    assert cluster.inputs["endpointPublicAccess"] is True
    assert cluster.inputs["publicAccessCidrs"] == ["198.51.100.0/24"]
    assert not graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def _load(name: str, cluster: dict | None = None, ci: dict | None = None):
    from preview.graph import stack_config
    from stacks.settings import _decode, load_settings

    config = stack_config(name)
    raw = {
        k.removeprefix("clinic-platform:"): _decode(v) for k, v in config.items() if k.startswith("clinic-platform:")
    }
    if cluster is not None:
        raw["cluster"] = {**raw["cluster"], **cluster}
    if ci is not None:
        raw["ci"] = ci
    return load_settings(raw, stack=name, region="eu-west-1")


@pytest.mark.parametrize("name", ["dev", "prod"])
@pytest.mark.parametrize(
    "cluster, ci, message",
    [
        ({"publicAccessCidrs": []}, {}, "cluster.publicAccessCidrs = [] is invalid with no in-VPC runner"),
        ({"publicAccessCidrs": ["0.0.0.0/0"]}, None, "cluster.publicAccessCidrs = '0.0.0.0/0' is invalid"),
        ({"deployRoleArn": None}, None, "cluster.deployRoleArn = None is invalid"),
        (
            {"deployRoleArn": "arn:aws:iam::123456789012:user/ci"},
            None,
            "cluster.deployRoleArn = 'arn:aws:iam::123456789012:user/ci' is invalid",
        ),
        ({"previewRoleArn": "preview"}, None, "cluster.previewRoleArn = 'preview' is invalid"),
        ({"viewerRoleArns": ["arn:aws:iam::1:role/x"]}, None, "cluster.viewerRoleArns = 'arn:aws:iam::1:role/x'"),
        (
            {"adminRoleArns": [ROLE.format("clinic-{stack}-preview")]},
            None,
            "each role in one place only among deployRoleArn, previewRoleArn",
        ),
        (
            {},
            {"githubConnectionArn": "arn:aws:codeconnections:eu-west-1:123456789012:connection/x"},
            "ci.githubConnectionArn = 'arn:aws:codeconnections:eu-west-1:123456789012:connection/x' is invalid",
        ),
        (
            {},
            {
                "githubConnectionArn": "arn:aws:codeconnections:eu-west-1:123456789012:connection/"
                "00000000-0000-4000-8000-000000000000"
            },
            "ci.repository = None is invalid; allowed: the GitHub repository owner/name",
        ),
        ({}, {"githubConnectionArn": None, "repository": "no-slash"}, "ci.repository = 'no-slash' is invalid"),
        ({}, {"buildTimeoutMinutes": 30}, "ci.buildTimeoutMinutes = 30 is invalid; allowed: an integer from 60 to 480"),
        ({}, {"computeType": "BUILD_GENERAL1_2XLARGE"}, "ci.computeType = 'BUILD_GENERAL1_2XLARGE' is invalid"),
    ],
)
def test_bad_access_and_runner_settings_are_refused_naming_the_key(name, cluster, ci, message):
    cluster = {
        k: (
            v.replace("{stack}", name)
            if isinstance(v, str)
            else [x.replace("{stack}", name) for x in v]
            if isinstance(v, list)
            else v
        )
        for k, v in cluster.items()
    }
    if ci is not None and ci and "githubConnectionArn" not in ci:
        ci = {**_committed_ci(name), **ci}
    with pytest.raises(StackSettingsError, match=re.escape(message)):
        _load(name, cluster, ci)


def _committed_ci(name: str) -> dict:
    import yaml

    from tests.infra.pulumi_mocks import ROOT

    return yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]["clinic-platform:ci"]


def test_operators_named_cidrs_are_enough_without_a_runner():
    settings = _load("dev", {"publicAccessCidrs": ["198.51.100.0/24"]}, {})
    assert settings.ci.github_connection_arn is None and settings.cluster.public_access_cidrs == ("198.51.100.0/24",)
    graph = evaluate_program(
        "dev",
        {
            "clinic-platform:cluster": {**_committed_cluster("dev"), "publicAccessCidrs": ["198.51.100.0/24"]},
            "clinic-platform:ci": {},
        },
    )
    assert not graph.of_type("clinic:index:CiRunner") and "ciRunsOn" not in graph.exports
    assert graph.one(EKS).inputs["publicAccessCidrs"] == ["198.51.100.0/24"]
