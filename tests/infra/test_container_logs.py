"""ContainerLogs (and the control-plane log group of Cluster) for both committed stacks: every group the shippers
write to exists first, encrypted, with the stack's retention; prod keeps them on destroy."""

import json

import pytest

from components.cluster import Cluster, ClusterArgs
from components.container_logs import ContainerLogs, ContainerLogsArgs, validate_container_logs_args
from stacks.component_args import node_group_args
from tests.infra.pulumi_mocks import ACCOUNT_ID, evaluate, stack_settings

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ADDON = "aws:eks/addon:Addon"
EXPECTED_RETENTION = {"dev": 7, "prod": 365}


def _build(stack: str):
    s = stack_settings(stack)

    def build():
        cluster = Cluster(
            f"clinic-{stack}-cluster",
            ClusterArgs(
                cluster_name=s.cluster_name,
                kubernetes_version=s.cluster.kubernetes_version,
                vpc_id="vpc-1",
                private_subnet_ids=["subnet-1", "subnet-2"],
                service_ipv4_cidr=s.network.kubernetes_service_cidr,
                node_groups=node_group_args(s.cluster),
                deploy_role_arn=s.cluster.deploy_role_arn,
                api_client_security_group_ids=["sg-ci-runner"],
                protect=s.is_prod,
                log_retention_days=s.observability.log_retention_days,
                tags={"stack": stack},
            ),
        )
        ContainerLogs(
            f"clinic-{stack}-logs",
            ContainerLogsArgs(
                cluster=cluster,
                retention_days=s.observability.log_retention_days,
                retain=s.protect_data,
                tags={"stack": stack},
            ),
        )

    return evaluate(build, stack=stack, region=s.region)


@pytest.fixture(scope="module", params=["dev", "prod"])
def built(request):
    return request.param, _build(request.param)


def container_groups(graph):
    return {
        g.inputs["name"].rsplit("/", 1)[1]: g
        for g in graph.of_type(LOG_GROUP)
        if g.inputs["name"].startswith("/aws/containerinsights/")
    }


def test_the_four_groups_the_addon_writes_to_exist_with_the_stacks_retention(built):
    stack, graph = built
    groups = container_groups(graph)
    assert sorted(groups) == ["application", "dataplane", "host", "performance"]
    for kind, group in groups.items():
        assert group.inputs["name"] == f"/aws/containerinsights/clinic-{stack}/{kind}", group.name
        assert group.inputs["retentionInDays"] == EXPECTED_RETENTION[stack], f"{group.name} retention"


def test_every_log_group_is_encrypted_with_a_rotating_key_cloudwatch_logs_may_use_for_it(built):
    stack, graph = built
    keys = {k.state["arn"]: k for k in graph.of_type("aws:kms/key:Key")}
    for group in graph.of_type(LOG_GROUP):
        key = keys.get(group.inputs.get("kmsKeyId"))
        assert key is not None, f"{group.name} is not encrypted with a key of the stack"
        assert key.inputs["enableKeyRotation"] is True, key.name
        grant = {s["Sid"]: s for s in key.input("policy", "Statement")}["CloudWatchLogsForTheseGroups"]
        assert grant["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}, key.name
        pattern = grant["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
        prefix = f"arn:aws:logs:eu-west-1:{ACCOUNT_ID}:log-group:"
        assert pattern.startswith(prefix), key.name
        glob = pattern.removeprefix(prefix)
        name = group.inputs["name"]
        assert name == glob or (glob.endswith("/*") and name.startswith(glob[:-1])), f"{key.name} vs {name}"


def test_the_addon_starts_only_after_every_group_exists_and_stops_before_any_is_deleted(built):
    stack, graph = built
    addon = next(a for a in graph.of_type(ADDON) if a.name.endswith("-logs-addon"))
    for group in container_groups(graph).values():
        assert graph.depends_on(addon, group), f"{addon.name} could start before {group.name} exists"
    role = graph.one("aws:iam/role:Role", f"clinic-{stack}-logs-agent-role")
    policy = graph.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy")
    assert graph.depends_on(addon, role) and graph.depends_on(addon, policy), "the pods would run without rights"
    for group in graph.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert graph.depends_on(addon, group), f"{addon.name} has no node to run on before {group.name}"


def test_addon_ships_container_logs_with_its_own_irsa_role(built):
    _, graph = built
    addon = next(a for a in graph.of_type(ADDON) if a.name.endswith("-logs-addon"))
    assert addon.inputs["addonName"] == "amazon-cloudwatch-observability"
    config = json.loads(addon.inputs["configurationValues"])
    assert config["containerLogs"] == {"enabled": True}, addon.name
    assert config["agent"]["config"]["logs"]["metrics_collected"]["kubernetes"]["enhanced_container_insights"]
    role_arn = addon.inputs["serviceAccountRoleArn"]
    role = next(r for r in graph.of_type("aws:iam/role:Role") if r.state["arn"] == role_arn)
    trust = role.input("assumeRolePolicy", "Statement")[0]["Condition"]["StringEquals"]
    assert "system:serviceaccount:amazon-cloudwatch:cloudwatch-agent" in trust.values(), role.name


def test_the_shippers_write_only_to_this_clusters_groups_and_cannot_change_retention(built):
    stack, graph = built
    policy = graph.one("aws:iam/rolePolicy:RolePolicy", f"clinic-{stack}-logs-agent-role-policy")
    statements = policy.input("policy", "Statement")
    assert "PutRetentionPolicy" not in json.dumps(statements), policy.name
    for statement in statements:
        if any(a.startswith("logs:") and a != "logs:DescribeLogGroups" for a in statement["Action"]):
            assert statement["Resource"] == (
                f"arn:aws:logs:eu-west-1:{ACCOUNT_ID}:log-group:/aws/containerinsights/clinic-{stack}/*"
            ), policy.name


def test_control_plane_logs_exist_encrypted_with_retention_before_the_cluster(built):
    stack, graph = built
    group = next(g for g in graph.of_type(LOG_GROUP) if g.inputs["name"] == f"/aws/eks/clinic-{stack}/cluster")
    assert group.inputs["retentionInDays"] == EXPECTED_RETENTION[stack], group.name
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:"), group.name
    assert graph.depends_on(graph.one("eks:index:Cluster"), group), "EKS would create the group first, unencrypted"


def test_prod_keeps_logs_and_their_keys_on_destroy_dev_deletes_them(built):
    stack, graph = built
    groups = graph.of_type(LOG_GROUP)
    assert len(groups) == 5
    keys = {k.state["arn"]: k for k in graph.of_type("aws:kms/key:Key")}
    for group in groups:
        key = keys[group.inputs["kmsKeyId"]]
        assert group.retain_on_delete is (stack == "prod"), group.name
        assert key.retain_on_delete is (stack == "prod"), f"{key.name}: a kept group is unreadable without its key"


@pytest.mark.parametrize("retention", [0, 10, 400000])
def test_a_retention_cloudwatch_does_not_accept_is_refused_naming_it(retention):
    args = ContainerLogsArgs(cluster=None, retention_days=retention)
    with pytest.raises(ValueError, match=f"retention_days = {retention} is invalid; allowed: 1, 3, 5, 7"):
        validate_container_logs_args(args)


def test_the_programs_log_groups_follow_the_stacks_retention_and_prod_keeps_them(stack):
    """As __main__.py wires ContainerLogs and the cluster's control-plane group (plus the VPC flow logs in prod)."""
    environment = "prod" if stack.records[0].name.startswith("clinic-prod-") else "dev"
    groups = [
        g
        for g in stack.of_type(LOG_GROUP)
        if g.inputs.get("name", "").startswith(("/aws/containerinsights/", "/aws/eks/"))
    ]
    assert len(groups) == 5, [g.inputs["name"] for g in groups]
    for group in groups:
        assert group.inputs["retentionInDays"] == EXPECTED_RETENTION[environment], group.name
        assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:"), group.name
        assert group.retain_on_delete is (environment == "prod"), group.name
