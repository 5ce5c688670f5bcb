"""CiRunner: a CodeBuild GitHub Actions runner in the private subnets, with its own narrow role, egress-only
security group and encrypted logs, that the cluster admits on its API port and nothing else."""

import json
import re

import pytest

from components.ci_runner import CiRunner, CiRunnerArgs, runner_policy, runs_on_label, validate_ci_runner_args
from tests.infra.pulumi_mocks import ACCOUNT_ID

PROJECT = "aws:codebuild/project:Project"
WEBHOOK = "aws:codebuild/webhook:Webhook"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def args(**overrides) -> CiRunnerArgs:
    values = dict(
        project_name="clinic-dev-ci-runner",
        repository="clinic-org/clinic-platform",
        connection_arn=CONNECTION,
        vpc_id="vpc-1",
        vpc_cidr="10.20.0.0/16",
        subnet_ids=["subnet-a", "subnet-b"],
        build_timeout_minutes=150,
    )
    return CiRunnerArgs(**{**values, **overrides})


def test_the_project_runs_github_jobs_in_the_private_subnets_with_docker_for_the_image_push(stack):
    project = stack.one(PROJECT)
    name = f"clinic-{stack.exports['clusterName'][0].removeprefix('clinic-')}-ci-runner"
    assert project.inputs["name"] == name
    private = sorted(f"{s.name}-id" for s in stack.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name)
    assert sorted(project.inputs["vpcConfig"]["subnets"]) == private
    sg = stack.one("aws:ec2/securityGroup:SecurityGroup", f"{name}-sg")
    assert project.inputs["vpcConfig"]["securityGroupIds"] == [f"{sg.name}-id"]
    environment = project.inputs["environment"]
    assert environment["privilegedMode"] is True and environment["type"] == "LINUX_CONTAINER"
    assert project.inputs["source"]["auth"]["type"] == "CODECONNECTIONS"
    assert project.inputs["source"]["location"].startswith("https://github.com/")
    assert project.inputs["artifacts"] == {"type": "NO_ARTIFACTS"}


def test_the_webhook_starts_a_build_for_queued_workflow_jobs_only(stack):
    webhook = stack.one(WEBHOOK)
    assert webhook.inputs["buildType"] == "BUILD"
    assert webhook.inputs["filterGroups"] == [{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}]
    assert webhook.inputs["projectName"] == stack.one(PROJECT).inputs["name"]


def test_the_security_group_admits_nothing_and_lets_out_https_and_dns_only(stack):
    name = stack.one(PROJECT).inputs["name"]
    sg = stack.one("aws:ec2/securityGroup:SecurityGroup", f"{name}-sg")
    assert sg.inputs["ingress"] == [] and sg.inputs["egress"] == []
    rules = {
        (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"], r.inputs["cidrIpv4"])
        for r in stack.of_type(EGRESS)
        if r.inputs["securityGroupId"] == f"{sg.name}-id"
    }
    vpc = stack.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"]
    assert rules == {("tcp", 443, 443, "0.0.0.0/0"), ("udp", 53, 53, vpc), ("tcp", 53, 53, vpc)}
    assert not [r for r in stack.of_type(INGRESS) if r.inputs["securityGroupId"] == f"{sg.name}-id"]


def test_the_cluster_admits_the_runner_on_its_api_port_only(stack):
    name = stack.one(PROJECT).inputs["name"]
    cluster = stack.one("eks:index:Cluster").inputs["name"]
    [rule] = [r for r in stack.of_type(INGRESS) if r.inputs["referencedSecurityGroupId"] == f"{name}-sg-id"]
    assert rule.inputs["securityGroupId"] == f"sg-{cluster}-cluster"
    assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("tcp", 443, 443)


def test_the_runner_role_may_write_its_logs_attach_to_its_subnets_and_use_the_connection_only(stack):
    project = stack.one(PROJECT)
    name = project.inputs["name"]
    role = stack.one("aws:iam/role:Role", f"{name}-role")
    assert role.input("assumeRolePolicy")["Statement"][0]["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert project.inputs["serviceRole"] == role.state["arn"]
    assert not [
        a
        for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.state["name"]
    ], "no managed policy on the runner role"
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", f"{name}-policy").input("policy")
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not [a for a in actions if a.startswith(("iam:", "eks:", "sts:", "s3:", "kms:", "ecr:"))], actions
    assert all("*" not in a for a in actions), actions
    [eni] = [s for s in policy["Statement"] if s["Action"] == "ec2:CreateNetworkInterfacePermission"]
    private = sorted(
        f"arn:aws:ec2:eu-west-1:{ACCOUNT_ID}:subnet/{s.name}-id"
        for s in stack.of_type("aws:ec2/subnet:Subnet")
        if "-private-" in s.name
    )
    assert sorted(eni["Condition"]["ArnEquals"]["ec2:Subnet"]) == private
    assert eni["Condition"]["StringEquals"] == {"ec2:AuthorizedService": "codebuild.amazonaws.com"}
    [logs] = [s for s in policy["Statement"] if s["Sid"] == "BuildLogs"]
    group = stack.one("aws:cloudwatch/logGroup:LogGroup", f"{name}-logs")
    assert logs["Resource"] == [group.state["arn"], f"{group.state['arn']}:log-stream:*"]


def test_the_project_waits_for_its_role_permissions_and_log_group(stack):
    project = stack.one(PROJECT)
    name = project.inputs["name"]
    assert stack.depends_on(project, stack.one("aws:iam/rolePolicy:RolePolicy", f"{name}-policy"))
    assert stack.depends_on(project, stack.one("aws:cloudwatch/logGroup:LogGroup", f"{name}-logs"))


def test_build_logs_are_encrypted_kept_for_the_stacks_retention_and_kept_in_prod(dev, prod):
    for graph, days, retained in ((dev, 7, False), (prod, 365, True)):
        name = graph.one(PROJECT).inputs["name"]
        group = graph.one("aws:cloudwatch/logGroup:LogGroup", f"{name}-logs")
        key = graph.one("aws:kms/key:Key", f"{name}-logs-key")
        assert group.inputs["name"] == f"/aws/codebuild/{name}"
        assert group.inputs["kmsKeyId"] == key.state["arn"] and key.inputs["enableKeyRotation"] is True
        assert group.inputs["retentionInDays"] == days
        assert group.retain_on_delete is retained and key.retain_on_delete is retained
        assert graph.one(PROJECT).inputs["logsConfig"]["cloudwatchLogs"]["groupName"] == group.inputs["name"]


def test_the_build_outlasts_the_longest_job_the_workflows_give_it(stack):
    """CodeBuild stops a build at build_timeout: a job still running then would be killed mid-update."""
    from tests.infra.test_workflows import runner_jobs

    timeout = stack.one(PROJECT).inputs["buildTimeout"]
    name = stack.one(PROJECT).inputs["name"]
    jobs = [
        (where, job)
        for where, job in runner_jobs()
        if f"codebuild-{name}-" in where[2] or "${{ matrix.stack }}" in where[2]
    ]
    assert jobs, f"no workflow job runs on {name}"
    for where, job in jobs:
        assert job["timeout-minutes"] <= timeout, f"{where[:2]}: {job['timeout-minutes']} min > build {timeout} min"


def test_the_stack_exports_the_runs_on_label_the_workflows_use(stack):
    name = stack.one(PROJECT).inputs["name"]
    assert stack.exports["ciRunnerProject"] == (name, False)
    assert stack.exports["ciRunsOn"] == (runs_on_label(name), False)
    assert runs_on_label(name) == f"codebuild-{name}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"


def test_the_connection_policy_uses_the_connections_own_action_prefix():
    for arn, prefix in (
        (CONNECTION, "codeconnections"),
        (CONNECTION.replace("codeconnections", "codestar-connections"), "codestar-connections"),
    ):
        policy = json.loads(runner_policy("arn:aws:logs:eu-west-1:1:log-group:g", arn, ["arn:subnet"]))
        [statement] = [s for s in policy["Statement"] if s["Sid"] == "GitHubConnection"]
        assert statement == {
            "Sid": "GitHubConnection",
            "Effect": "Allow",
            "Resource": arn,
            "Action": [f"{prefix}:GetConnectionToken", f"{prefix}:GetConnection"],
        }


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("repository", "clinic-platform", "repository = 'clinic-platform' is invalid; allowed: a GitHub repository"),
        ("connection_arn", "arn:aws:iam::123456789012:role/x", "connection_arn = 'arn:aws:iam::123456789012:role/x'"),
        ("compute_type", "BUILD_GENERAL1_2XLARGE", "compute_type = 'BUILD_GENERAL1_2XLARGE' is invalid"),
        ("build_timeout_minutes", 3000, "build_timeout_minutes = 3000 is invalid; allowed: 5-2160"),
        ("project_name", "x", "project_name = 'x' is invalid"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_ci_runner_args(args(**{field: value}))


def test_a_standalone_runner_registers_its_children_under_itself():
    from tests.infra.pulumi_mocks import evaluate

    graph = evaluate(lambda: CiRunner("r", args()), stack="dev")
    component = graph.one("clinic:index:CiRunner")
    names = {r.name for r in graph.descendants(component)}
    assert {"r-sg", "r-project", "r-webhook", "r-role", "r-policy", "r-logs", "r-logs-key"} <= names


def test_the_first_up_from_outside_the_vpc_creates_the_aws_side_and_no_kubernetes_object(stack):
    """README "First deployment", step 5: `pulumi up --exclude <Kubernetes provider> --exclude-dependents` from an
    operator's machine, which cannot reach the private endpoint, must still create the runner CI needs and
    everything AWS-only, and nothing that talks to the Kubernetes API."""
    provider = stack.one("pulumi:providers:kubernetes")
    created = [r for r in stack.records if r.urn != provider.urn and not stack.depends_on(r, provider)]
    assert not [r.name for r in created if r.type.startswith("kubernetes:")]
    types = {r.type for r in created}
    assert {
        "aws:codebuild/project:Project",
        "aws:codebuild/webhook:Webhook",
        "eks:index:Cluster",
        "aws:eks/nodeGroup:NodeGroup",
        "aws:rds/instance:Instance",
        "aws:ecr/repository:Repository",
    } <= types
    # The runner is admitted to the endpoint before CI's first job needs it.
    assert any(
        r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" and r.inputs.get("fromPort") == 443
        for r in created
    )
