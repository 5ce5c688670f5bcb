"""CiRunner: a CodeBuild project in the private subnets that GitHub Actions uses as a self-hosted runner, so the jobs
that preview, update or destroy the stack reach the cluster's private API endpoint.

How it works (AWS CodeBuild, "Self-hosted GitHub Actions runners in AWS CodeBuild"): the project's webhook receives
every WORKFLOW_JOB_QUEUED event of the repository; for a job whose `runs-on` label is
`codebuild-<project>-${{ github.run_id }}-${{ github.run_attempt }}`, CodeBuild starts a build in the VPC that
registers itself as an ephemeral runner for that one job. The build reaches GitHub and the project's source through
an AWS CodeConnections GitHub connection (created and approved by a person before the first run, see README).

The runner's own role may only write its logs, attach to the VPC and use the connection. A job gets its AWS
credentials the way it does on a GitHub-hosted runner: GitHub issues the job's OIDC token whatever the runner, and
aws-actions/configure-aws-credentials exchanges it for the deploy or preview role (AssumeRoleWithWebIdentity, no
role chaining, so the session may last as long as the role allows). Those credentials are what Pulumi uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.iam import service_trust_policy
from components.log_encryption import log_group_key
from limits import CI_COMPUTE_TYPES, CONNECTION_ARN_PATTERN, GITHUB_REPOSITORY_PATTERN

# Ubuntu, with the AWS CLI (the kubeconfig runs `aws eks get-token`), Docker, and what actions/setup-python expects.
RUNNER_IMAGE = "aws/codebuild/standard:7.0"
# CodeBuild's own bounds for a build's timeout, in minutes.
MIN_BUILD_TIMEOUT_MINUTES, MAX_BUILD_TIMEOUT_MINUTES = 5, 2160
# CodeBuild project names: 2-150 characters; the runs-on label repeats it.
PROJECT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{1,149}"
HTTPS, DNS = 443, 53


def runs_on_label(project_name: str) -> str:
    """The `runs-on` label a workflow job uses to run on this project (one ephemeral runner per job)."""
    return f"codebuild-{project_name}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"


@dataclass(frozen=True)
class CiRunnerArgs:
    project_name: str
    """CodeBuild project name; workflows address it in `runs-on` (see runs_on_label)."""
    repository: str
    """GitHub repository `owner/name` whose workflow jobs the runner takes."""
    connection_arn: str
    """AWS CodeConnections (or CodeStar Connections) GitHub connection, approved in the console."""
    vpc_id: pulumi.Input[str]
    """VPC the builds run in."""
    vpc_cidr: str
    """The VPC's CIDR: DNS queries go to its resolver."""
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Private subnets with a NAT route (builds reach GitHub, PyPI, Pulumi Cloud and AWS APIs through it)."""
    build_timeout_minutes: int
    """A build (one job) is stopped after this long; at least the longest job's timeout-minutes."""
    compute_type: str = "BUILD_GENERAL1_MEDIUM"
    """CodeBuild compute type of each build."""
    log_retention_days: int = 30
    """Retention of the builds' log group (encrypted with its own key)."""
    retain_logs: bool = False
    """Prod: the log group and its key are kept on destroy (they record every deployment)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_ci_runner_args(args: CiRunnerArgs) -> None:
    if not re.fullmatch(PROJECT_NAME_PATTERN, args.project_name):
        raise ValueError(f"project_name = {args.project_name!r} is invalid; allowed: 2-150 letters, digits, - or _")
    if not re.fullmatch(GITHUB_REPOSITORY_PATTERN, args.repository):
        raise ValueError(f"repository = {args.repository!r} is invalid; allowed: a GitHub repository as owner/name")
    if not re.fullmatch(CONNECTION_ARN_PATTERN, args.connection_arn):
        raise ValueError(
            f"connection_arn = {args.connection_arn!r} is invalid; allowed: a CodeConnections connection "
            "ARN such as arn:aws:codeconnections:eu-west-1:123456789012:connection/<uuid>"
        )
    if args.compute_type not in CI_COMPUTE_TYPES:
        raise ValueError(f"compute_type = {args.compute_type!r} is invalid; allowed: " + ", ".join(CI_COMPUTE_TYPES))
    if not MIN_BUILD_TIMEOUT_MINUTES <= args.build_timeout_minutes <= MAX_BUILD_TIMEOUT_MINUTES:
        raise ValueError(
            f"build_timeout_minutes = {args.build_timeout_minutes} is invalid; allowed: "
            f"{MIN_BUILD_TIMEOUT_MINUTES}-{MAX_BUILD_TIMEOUT_MINUTES}"
        )


def runner_policy(log_group_arn: str, connection_arn: str, subnet_arns: Sequence[str]) -> str:
    """What CodeBuild itself needs for these builds, and nothing a deployment needs: the jobs assume their own
    role through OIDC. The network-interface statements are CodeBuild's documented minimum for VPC builds."""
    # The action prefix must be the ARN's: codeconnections for new connections, codestar-connections for old ones.
    prefix = connection_arn.split(":")[2]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BuildLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
                },
                {
                    "Sid": "GitHubConnection",
                    "Effect": "Allow",
                    "Action": [f"{prefix}:GetConnectionToken", f"{prefix}:GetConnection"],
                    "Resource": connection_arn,
                },
                # Describe* and the ENI calls cannot be limited by resource; CodeBuild makes them for every VPC build.
                {
                    "Sid": "VpcBuildNetworkInterfaces",
                    "Effect": "Allow",
                    "Action": [
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeDhcpOptions",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DeleteNetworkInterface",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeVpcs",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "VpcBuildNetworkInterfacePermission",
                    "Effect": "Allow",
                    "Action": "ec2:CreateNetworkInterfacePermission",
                    "Resource": "arn:*:ec2:*:*:network-interface/*",
                    "Condition": {
                        "StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"},
                        "ArnEquals": {"ec2:Subnet": list(subnet_arns)},
                    },
                },
            ],
        }
    )


class CiRunner(pulumi.ComponentResource):
    project_name: pulumi.Output[str]
    """Name of the CodeBuild project."""
    runs_on: pulumi.Output[str]
    """The `runs-on` label of a job that must run inside the VPC."""
    security_group_id: pulumi.Output[str]
    """The builds' security group: the cluster admits its API port from it."""
    role_arn: pulumi.Output[str]
    """The project's service role (logs, VPC attachment, connection; no deployment rights)."""
    log_group_name: pulumi.Output[str]
    """Where every build's output goes."""

    def __init__(self, name: str, args: CiRunnerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:CiRunner", name, None, opts)
        validate_ci_runner_args(args)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        # Egress only, and only what a job needs: HTTPS (GitHub, Pulumi Cloud, PyPI, AWS APIs, the cluster's
        # private endpoint) and DNS to the VPC's resolver. Nothing may connect to a build.
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            ingress=[],
            egress=[],
            description=f"{name}: CI runner builds, HTTPS and DNS out only",
            tags={**tags, "Name": f"{name}-sg"},
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to GitHub, Pulumi Cloud, PyPI, AWS and the EKS API",
            opts=child,
        )
        for protocol in ("udp", "tcp"):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-dns-{protocol}-out",
                security_group_id=security_group.id,
                ip_protocol=protocol,
                from_port=DNS,
                to_port=DNS,
                cidr_ipv4=args.vpc_cidr,
                description="DNS to the VPC resolver",
                opts=child,
            )

        log_group_name = f"/aws/codebuild/{args.project_name}"
        logs_key = log_group_key(
            f"{name}-logs-key",
            f"{name}: CI runner build logs",
            log_group_name,
            parent=self,
            retain=args.retain_logs,
            tags=tags,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=logs_key.arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_logs),
        )

        role = aws.iam.Role(
            f"{name}-role",
            tags=tags,
            opts=child,
            assume_role_policy=service_trust_policy("codebuild.amazonaws.com"),
        )
        # The builds' network interfaces may be attached to these subnets only.
        invoke = pulumi.InvokeOutputOptions(parent=self)
        subnet_arns = pulumi.Output.all(
            aws.get_partition_output(opts=invoke).partition,
            aws.get_region_output(opts=invoke).region,
            aws.get_caller_identity_output(opts=invoke).account_id,
            args.subnet_ids,
        ).apply(lambda a: [f"arn:{a[0]}:ec2:{a[1]}:{a[2]}:subnet/{subnet}" for subnet in a[3]])
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(log_group.arn, subnet_arns).apply(
                lambda a: runner_policy(a[0], args.connection_arn, a[1])
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )

        project = aws.codebuild.Project(
            f"{name}-project",
            name=args.project_name,
            description=f"GitHub Actions runner in the VPC for {args.repository}",
            service_role=role.arn,
            source={
                "type": "GITHUB",
                "location": f"https://github.com/{args.repository}.git",
                "auth": {"type": "CODECONNECTIONS", "resource": args.connection_arn},
            },
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": RUNNER_IMAGE,
                "compute_type": args.compute_type,
                "image_pull_credentials_type": "CODEBUILD",
                # The deploy jobs load the images built on GitHub's runners and push them to ECR, which
                # needs a Docker daemon in the build. Each build is a fresh CodeBuild host of this account
                # running one job of this repository (fork pull requests never reach it).
                "privileged_mode": True,
            },
            build_timeout=args.build_timeout_minutes,
            vpc_config={"vpc_id": args.vpc_id, "subnets": args.subnet_ids, "security_group_ids": [security_group.id]},
            logs_config={
                "cloudwatch_logs": {"status": "ENABLED", "group_name": log_group.name},
                "s3_logs": {"status": "DISABLED"},
            },
            tags=tags,
            # CodeBuild checks the role's VPC permissions when the project is created, and writes logs from the
            # first build on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )
        # CodeBuild creates the repository's webhook through the connection; every queued job reaches the project,
        # which starts a build only for jobs whose label names it.
        aws.codebuild.Webhook(
            f"{name}-webhook",
            project_name=project.name,
            build_type="BUILD",
            filter_groups=[{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}],
            opts=child,
        )

        self.project_name = project.name
        self.runs_on = project.name.apply(runs_on_label)
        self.security_group_id = security_group.id
        self.role_arn = role.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "project_name": self.project_name,
                "runs_on": self.runs_on,
                "security_group_id": self.security_group_id,
                "role_arn": self.role_arn,
                "log_group_name": self.log_group_name,
            }
        )
