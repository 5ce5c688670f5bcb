"""The janitor against a moto server: it deletes exactly this cluster's leftovers in this VPC, waits for the load
balancers' network interfaces, retries what AWS reports as still in use, and fails naming what remains."""

import base64
import io
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import boto3
import pulumi
import pulumi.runtime.settings
import pytest
from botocore.exceptions import ClientError
from pulumi.dynamic.dynamic import serialize_provider

from components.lb_janitor import LoadBalancerJanitor, LoadBalancerJanitorArgs, LoadBalancerJanitorProvider
from ops.lb_sweep import LoadBalancerSweeper, SweepTimeout, main
from tests.infra.conftest import MOTO_REGION as REGION

CLUSTER = "clinic-dev"
OTHER = "clinic-prod"


class Aws:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        self.elbv2 = boto3.client("elbv2", region_name=REGION, endpoint_url=endpoint)
        self.elb = boto3.client("elb", region_name=REGION, endpoint_url=endpoint)

    def sweeper(self, vpc_id, **kwargs):
        return LoadBalancerSweeper(
            region=REGION,
            vpc_id=vpc_id,
            cluster_name=kwargs.pop("cluster", CLUSTER),
            endpoint_url=self.endpoint,
            **{"timeout_seconds": 10, "poll_seconds": 0.1, **kwargs},
        )


@pytest.fixture
def aws(endpoint):
    return Aws(endpoint)


def tags(**pairs):
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def build_vpc(aws: Aws, suffix: str):
    vpc = aws.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        aws.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    node_sg = aws.ec2.create_security_group(GroupName=f"nodes-{suffix}", Description="nodes", VpcId=vpc)["GroupId"]
    return vpc, subnets, node_sg


def alb(aws: Aws, name, subnets, sg, kind="application", **tag_pairs):
    extra = {"Tags": tags(**tag_pairs)} if tag_pairs else {}
    return aws.elbv2.create_load_balancer(Name=name, Subnets=subnets, SecurityGroups=[sg], Type=kind, **extra)[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]


def target_group(aws: Aws, name, vpc, **tag_pairs):
    return aws.elbv2.create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip", Tags=tags(**tag_pairs)
    )["TargetGroups"][0]["TargetGroupArn"]


def eni(aws: Aws, subnet, description):
    return aws.ec2.create_network_interface(SubnetId=subnet, Description=description)["NetworkInterface"][
        "NetworkInterfaceId"
    ]


def release_later(aws: Aws, eni_ids, vpc, delay=0.3):
    """AWS releases an ELB's network interfaces some minutes after the load balancer is gone (moto never creates
    them): delete them `delay` after the VPC has no ALB/NLB left, and note when."""

    def run():
        while [
            lb
            for lb in aws.elbv2.describe_load_balancers()["LoadBalancers"]
            if lb["VpcId"] == vpc and lb["LoadBalancerName"].startswith("k8s-clinic")
        ]:
            time.sleep(0.05)
        time.sleep(delay)
        for eni_id in eni_ids:
            aws.ec2.delete_network_interface(NetworkInterfaceId=eni_id)
        thread.released_at = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def load_balancer_names(aws: Aws, vpc):
    v2 = [lb["LoadBalancerName"] for lb in aws.elbv2.describe_load_balancers()["LoadBalancers"] if lb["VpcId"] == vpc]
    classic = [
        lb["LoadBalancerName"]
        for lb in aws.elb.describe_load_balancers()["LoadBalancerDescriptions"]
        if lb["VPCId"] == vpc
    ]
    return sorted(v2 + classic)


def test_destroy_rehearsal_sweeps_only_this_clusters_leftovers_then_the_vpc_deletes(aws):
    vpc, subnets, node_sg = build_vpc(aws, "rehearsal")
    backend_sg = aws.ec2.create_security_group(
        GroupName="k8s-traffic-clinicdev",
        Description="backend",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": tags(**{"elbv2.k8s.aws/cluster": CLUSTER, "elbv2.k8s.aws/resource": "backend-sg"}),
            }
        ],
    )["GroupId"]
    # The controller opens the nodes to its backend SG: this rule would block deleting that SG.
    aws.ec2.authorize_security_group_ingress(
        GroupId=node_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "UserIdGroupPairs": [{"GroupId": backend_sg}]}
        ],
    )
    ours = {"elbv2.k8s.aws/cluster": CLUSTER, "ingress.k8s.aws/stack": "clinic/api"}
    web = alb(aws, "k8s-clinic-api", subnets, backend_sg, **ours)
    tg = target_group(aws, "k8s-clinic-api", vpc, **ours)
    aws.elbv2.create_listener(
        LoadBalancerArn=web, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}]
    )
    alb(aws, "k8s-clinic-tcp", subnets, backend_sg, kind="network", **{"elbv2.k8s.aws/cluster": CLUSTER})
    classic_sg = aws.ec2.create_security_group(
        GroupName="k8s-elb-a1b2c3",
        Description="Security group for Kubernetes ELB a1b2c3 (clinic/legacy)",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": tags(**{f"kubernetes.io/cluster/{CLUSTER}": "owned"})}
        ],
    )["GroupId"]
    aws.elb.create_load_balancer(
        LoadBalancerName="a1b2c3",
        Subnets=subnets,
        SecurityGroups=[classic_sg],
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30080}],
        Tags=tags(**{f"kubernetes.io/cluster/{CLUSTER}": "owned", "kubernetes.io/service-name": "clinic/legacy"}),
    )
    # Not ours: an untagged ALB, another cluster's ALB, target group and security group.
    untagged = alb(aws, "hand-made", subnets, node_sg)
    theirs = alb(aws, "k8s-prod-api", subnets, node_sg, **{"elbv2.k8s.aws/cluster": OTHER})
    their_tg = target_group(aws, "k8s-prod-api", vpc, **{"elbv2.k8s.aws/cluster": OTHER})
    their_sg = aws.ec2.create_security_group(
        GroupName="k8s-traffic-clinicprod",
        Description="backend",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(**{"elbv2.k8s.aws/cluster": OTHER})}],
    )["GroupId"]
    interfaces = [
        eni(aws, subnets[0], "ELB app/k8s-clinic-api/50dc6c495c0c9188"),
        eni(aws, subnets[1], "ELB net/k8s-clinic-tcp/73e2d6bc24d8a067"),
        eni(aws, subnets[0], "ELB a1b2c3"),
        # An ALB the controller deleted when its Ingress went: the LB is gone, AWS still holds its ENI.
        eni(aws, subnets[1], "ELB app/k8s-clinic-old/0a0a0a0a0a0a0a0a"),
    ]
    their_eni = eni(aws, subnets[1], "ELB app/k8s-prod-api/1b1b1b1b1b1b1b1b")
    # Not ours either: merely shared with this cluster ("shared", as the VPC and subnets are tagged), an ALB, a
    # target group, and a classic ELB with its k8s-elb-* group, which differ from ours only in the tag's value.
    shared = {f"kubernetes.io/cluster/{CLUSTER}": "shared"}
    shared_alb = alb(aws, "k8s-shared-web", subnets, node_sg, **shared)
    shared_tg = target_group(aws, "k8s-shared-web", vpc, **shared)
    shared_classic_sg = aws.ec2.create_security_group(
        GroupName="k8s-elb-d4e5f6",
        Description="Security group for Kubernetes ELB d4e5f6 (shared/web)",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(**shared)}],
    )["GroupId"]
    aws.elb.create_load_balancer(
        LoadBalancerName="d4e5f6",
        Subnets=subnets,
        SecurityGroups=[shared_classic_sg],
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30081}],
        Tags=tags(**shared),
    )
    released = release_later(aws, interfaces, vpc)

    report = aws.sweeper(vpc).sweep()
    returned_at = time.monotonic()
    released.join()
    assert returned_at >= released.released_at, "the sweep returned before the ELB network interfaces were gone"

    assert sorted(report.plan.load_balancers.values()) == ["k8s-clinic-api", "k8s-clinic-tcp"]
    assert report.plan.classic_load_balancers == ["a1b2c3"]
    assert report.plan.target_groups == [tg]
    assert sorted(report.plan.security_groups) == sorted([backend_sg, classic_sg])
    assert sorted(report.waited_for_interfaces) == sorted(interfaces)
    assert report.revoked_rules == 1
    assert load_balancer_names(aws, vpc) == ["d4e5f6", "hand-made", "k8s-prod-api", "k8s-shared-web"], (
        "only this cluster's LBs are gone; the shared ones remain"
    )
    remaining_tgs = [t["TargetGroupArn"] for t in aws.elbv2.describe_target_groups()["TargetGroups"]]
    assert tg not in remaining_tgs and their_tg in remaining_tgs and shared_tg in remaining_tgs
    remaining_sgs = {
        g["GroupId"]
        for g in aws.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    }
    assert backend_sg not in remaining_sgs and classic_sg not in remaining_sgs
    assert {their_sg, node_sg} <= remaining_sgs, "another cluster's and the node SG are untouched"
    assert shared_classic_sg in remaining_sgs, "the shared classic ELB's group is not this cluster's to delete"
    assert their_eni not in report.waited_for_interfaces, "the ENI of another cluster's live ALB is not ours"
    assert aws.ec2.describe_network_interfaces(NetworkInterfaceIds=[their_eni])["NetworkInterfaces"]
    node_rules = aws.ec2.describe_security_groups(GroupIds=[node_sg])["SecurityGroups"][0]["IpPermissions"]
    assert not node_rules, f"the node SG rule referencing {backend_sg} is revoked: {node_rules}"

    # The hand-made and other-cluster resources belong to someone else's state; on AWS they would make the subnets
    # fail with DependencyViolation (moto does not check that), so they are removed here as their owners would,
    # and only then is the rest of what Pulumi deletes after the janitor played out: subnets, then the VPC.
    aws.ec2.delete_network_interface(NetworkInterfaceId=their_eni)
    for arn in (untagged, theirs, shared_alb):
        aws.elbv2.delete_load_balancer(LoadBalancerArn=arn)
    aws.elb.delete_load_balancer(LoadBalancerName="d4e5f6")
    for arn in (their_tg, shared_tg):
        aws.elbv2.delete_target_group(TargetGroupArn=arn)
    for group in (their_sg, node_sg, shared_classic_sg):
        aws.ec2.delete_security_group(GroupId=group)
    with pytest.raises(ClientError, match="DependencyViolation"):
        aws.ec2.delete_vpc(VpcId=vpc)  # subnets first, as the graph orders it
    for subnet in subnets:
        aws.ec2.delete_subnet(SubnetId=subnet)
    aws.ec2.delete_vpc(VpcId=vpc)
    assert not aws.ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Vpcs"]


def test_timeout_names_the_interface_that_never_goes(aws):
    vpc, subnets, sg = build_vpc(aws, "timeout")
    alb(aws, "k8s-stuck", subnets, sg, **{"elbv2.k8s.aws/cluster": CLUSTER})
    stuck = eni(aws, subnets[0], "ELB app/k8s-stuck/0123456789abcdef")
    sweeper = aws.sweeper(vpc, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(SweepTimeout) as error:
        sweeper.sweep()
    assert time.monotonic() - started < 5, "the sweep gives up about its 1 s timeout after it starts"
    assert error.value.remaining == [f"network interface {stuck} (ELB app/k8s-stuck/0123456789abcdef)"]
    assert "still in the VPC" in str(error.value)


class FlakyEc2:
    """Real moto client, but delete_security_group answers DependencyViolation the first `failures` times, as AWS
    does while an ENI still holds the group."""

    def __init__(self, client, failures: int):
        self._client, self.failures, self.calls = client, failures, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def delete_security_group(self, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError(
                {"Error": {"Code": "DependencyViolation", "Message": "resource has a dependent object"}},
                "DeleteSecurityGroup",
            )
        return self._client.delete_security_group(**kwargs)


class BusyElbv2:
    def __init__(self, client, failures: int):
        self._client, self.failures, self.calls = client, failures, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def delete_target_group(self, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError(
                {"Error": {"Code": "ResourceInUse", "Message": "in use by a listener"}}, "DeleteTargetGroup"
            )
        return self._client.delete_target_group(**kwargs)


def test_dependency_violation_and_resource_in_use_are_retried_until_they_clear(aws):
    vpc, subnets, _ = build_vpc(aws, "retry")
    sg = aws.ec2.create_security_group(
        GroupName="k8s-traffic-retry",
        Description="x",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(**{"elbv2.k8s.aws/cluster": CLUSTER})}],
    )["GroupId"]
    tg = target_group(aws, "k8s-retry", vpc, **{"elbv2.k8s.aws/cluster": CLUSTER})
    ec2, elbv2 = FlakyEc2(aws.ec2, failures=2), BusyElbv2(aws.elbv2, failures=2)
    delays = []
    sweeper = aws.sweeper(vpc, sleep=delays.append)
    sweeper.ec2, sweeper.elbv2 = ec2, elbv2
    report = sweeper.sweep()
    assert (ec2.calls, elbv2.calls) == (3, 3)
    assert delays == [0.1, 0.2, 0.1, 0.2], "target group then security group, each backing off"
    assert report.plan.target_groups == [tg] and list(report.plan.security_groups) == [sg]
    assert sg not in {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert tg not in [t["TargetGroupArn"] for t in aws.elbv2.describe_target_groups()["TargetGroups"]]


def test_dependency_violation_that_never_clears_fails_with_the_group_named(aws):
    vpc, _, _ = build_vpc(aws, "stuck-sg")
    sg = aws.ec2.create_security_group(
        GroupName="k8s-traffic-stuck",
        Description="x",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(**{"elbv2.k8s.aws/cluster": CLUSTER})}],
    )["GroupId"]
    sweeper = aws.sweeper(vpc, timeout_seconds=0.5)
    sweeper.ec2 = FlakyEc2(aws.ec2, failures=10_000)
    with pytest.raises(
        SweepTimeout, match=f"deleting security group {sg} \\(k8s-traffic-stuck\\): DependencyViolation"
    ) as error:
        sweeper.sweep()
    assert error.value.remaining == [f"security group {sg} (k8s-traffic-stuck)"]


def test_provider_create_and_update_touch_nothing_and_never_replace(aws):
    vpc, subnets, sg = build_vpc(aws, "provider")
    arn = alb(aws, "k8s-provider", subnets, sg, **{"elbv2.k8s.aws/cluster": CLUSTER})
    provider = LoadBalancerJanitorProvider()
    props = {
        "vpc_id": vpc,
        "cluster_name": CLUSTER,
        "region": REGION,
        "timeout_seconds": 10,
        "endpoint_url": aws.endpoint,
    }
    created = provider.create(props)
    assert created.outs == props and created.id == f"{CLUSTER}@{vpc}"
    diff = provider.diff(created.id, props, {**props, "timeout_seconds": 60})
    assert diff.changes and diff.replaces == [] and diff.delete_before_replace is False
    assert not provider.diff(created.id, props, dict(props)).changes
    provider.update(created.id, props, {**props, "timeout_seconds": 60})
    assert "k8s-provider" in load_balancer_names(aws, vpc), "create/update must not sweep"
    provider.delete(created.id, props)
    assert "k8s-provider" not in load_balancer_names(aws, vpc)
    assert arn


def test_cli_dry_run_lists_and_deletes_nothing_then_the_real_run_deletes(aws):
    vpc, subnets, sg = build_vpc(aws, "cli")
    alb(aws, "k8s-cli", subnets, sg, **{"elbv2.k8s.aws/cluster": CLUSTER})
    argv = [
        "--region",
        REGION,
        "--vpc-id",
        vpc,
        "--cluster-name",
        CLUSTER,
        "--endpoint-url",
        aws.endpoint,
        "--poll",
        "0.1",
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([*argv, "--dry-run"]) == 0
    assert "would delete load balancer" in out.getvalue() and "k8s-cli" in out.getvalue()
    assert load_balancer_names(aws, vpc) == ["k8s-cli"]
    with redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    assert load_balancer_names(aws, vpc) == []


def test_cli_refuses_a_malformed_vpc_id(capsys):
    assert main(["--region", REGION, "--vpc-id", "my-vpc", "--cluster-name", CLUSTER]) == 1
    assert "vpc_id = 'my-vpc' is invalid" in capsys.readouterr().err


def test_provider_pickles_by_reference_and_loads_where_the_provider_host_runs():
    """Pulumi stores the provider with dill; the delete runs it in another process from the project directory."""
    blob = base64.b64decode(serialize_provider(LoadBalancerJanitorProvider()))
    assert b"components.lb_janitor" in blob and len(blob) < 500, "pickled by reference, no state or client inside"
    root = Path(__file__).resolve().parents[2]
    code = (
        "import base64, dill, sys; p = dill.loads(base64.b64decode(sys.argv[1])); "
        "print(type(p).__module__, callable(p.delete))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, base64.b64encode(blob).decode()],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.split() == ["components.lb_janitor", "True"]


# The janitor's provider as the state of a stack created before the sweep moved to ops/ holds it (the program's
# `__provider` input on main at that time, also in tests/infra/snapshots/dev.json).
PROVIDER_IN_STATE_BEFORE_THE_MOVE = (
    "gASVPAAAAAAAAACMFWNvbXBvbmVudHMubGJfamFuaXRvcpSMG0xvYWRCYWxhbmNlckphbml0b3JQcm92aWRlcpSTlCmBlC4="
)


def test_a_provider_stored_before_the_move_still_loads_and_sweeps_with_the_ops_code():
    """`pulumi destroy` of an older stack unpickles the stored provider in a fresh provider host."""
    assert serialize_provider(LoadBalancerJanitorProvider()) == PROVIDER_IN_STATE_BEFORE_THE_MOVE, (
        "the stored provider changed: stacks created earlier would hold a different one"
    )
    root = Path(__file__).resolve().parents[2]
    code = (
        "import base64, dill, sys, ops.lb_sweep; p = dill.loads(base64.b64decode(sys.argv[1])); "
        "print(type(p).delete.__globals__['_sweeper'].__globals__['LoadBalancerSweeper'] "
        "is ops.lb_sweep.LoadBalancerSweeper)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, PROVIDER_IN_STATE_BEFORE_THE_MOVE],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.split() == ["True"]


def test_the_old_module_path_of_the_sweep_is_the_ops_module():
    """Anything serialized against components.lb_sweep (a provider pickled by value, with references into it) finds
    the same objects, private ones included."""
    import pickle

    import components.lb_sweep as old
    import ops.lb_sweep as new

    assert old is new
    assert pickle.loads(b"ccomponents.lb_sweep\nLoadBalancerSweeper\n.") is new.LoadBalancerSweeper
    assert pickle.loads(b"ccomponents.lb_sweep\n_lb_name_from_description\n.") is new._lb_name_from_description


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.registered = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.registered.append(args)
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def test_registers_as_a_dynamic_resource_with_its_inputs():
    mocks = RecordingMocks()
    pulumi.runtime.settings.ROOT.set(None)  # another test may have left a root Stack from its own mocks
    pulumi.runtime.set_mocks(mocks, project="clinic-platform", stack="dev", preview=False)

    @pulumi.runtime.test
    def program():
        janitor = LoadBalancerJanitor(
            "clinic-dev-lb-janitor",
            LoadBalancerJanitorArgs(vpc_id="vpc-0abc", cluster_name=CLUSTER, region=REGION, timeout_seconds=600),
        )
        return janitor.id

    program()
    [registered] = [r for r in mocks.registered if r.name == "clinic-dev-lb-janitor"]
    assert registered.typ == "pulumi-python:dynamic:Resource"
    assert {k: registered.inputs[k] for k in ("vpc_id", "cluster_name", "region", "timeout_seconds")} == {
        "vpc_id": "vpc-0abc",
        "cluster_name": CLUSTER,
        "region": REGION,
        "timeout_seconds": 600,
    }
    assert registered.inputs["__provider"], "the pickled provider travels with the inputs"


def test_cli_exits_non_zero_naming_what_remains(aws, capsys):
    vpc, subnets, sg = build_vpc(aws, "cli-stuck")
    alb(aws, "k8s-cli-stuck", subnets, sg, **{"elbv2.k8s.aws/cluster": CLUSTER})
    stuck = eni(aws, subnets[0], "ELB app/k8s-cli-stuck/0123456789abcdef")
    argv = [
        "--region",
        REGION,
        "--vpc-id",
        vpc,
        "--cluster-name",
        CLUSTER,
        "--endpoint-url",
        aws.endpoint,
        "--poll",
        "0.1",
        "--timeout",
        "0.5",
    ]
    assert main([*argv, "--dry-run"]) == 0
    assert f"would wait for network interface {stuck} (ELB app/k8s-cli-stuck/0123456789abcdef)" in (
        capsys.readouterr().out
    )
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"network interface {stuck} (ELB app/k8s-cli-stuck/0123456789abcdef)" in err and "timed out" in err


class VanishingTags:
    """describe_tags as AWS answers it when one ARN of the batch was deleted a moment ago."""

    def describe_tags(self, ResourceArns):
        if "arn:gone" in ResourceArns:
            raise ClientError({"Error": {"Code": "LoadBalancerNotFound", "Message": "arn:gone"}}, "DescribeTags")
        return {
            "TagDescriptions": [
                {"ResourceArn": arn, "Tags": tags(**{"elbv2.k8s.aws/cluster": CLUSTER})} for arn in ResourceArns
            ]
        }


def test_a_load_balancer_deleted_between_describe_and_describe_tags_is_skipped_not_fatal():
    sweeper = LoadBalancerSweeper(
        region=REGION,
        vpc_id="vpc-0abc",
        cluster_name=CLUSTER,
        clients={"elbv2": VanishingTags(), "elb": None, "ec2": None},
    )
    assert sweeper._elbv2_ours(["arn:a", "arn:gone", "arn:b"]) == {"arn:a", "arn:b"}


def test_the_video_nlb_its_target_groups_and_group_are_swept_and_its_elastic_ips_freed(aws):
    """The telemedicine NLB (components/telemedicine.py) as a destroy could leave it: UDP 10000 and TCP 443 target
    groups, the controller's frontend security group, and the stack's Elastic IPs associated with its interfaces.
    The sweep deletes the NLB and what it owned, and returns only once the interfaces are gone: then the addresses
    are free, and the Network can release them (the graph releases them after the janitor)."""
    vpc, subnets, node_sg = build_vpc(aws, "video")
    frontend_sg = aws.ec2.create_security_group(
        GroupName="k8s-telemedi-jvbmedia",
        Description="[k8s] frontend for telemedicine/jvb-media",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": tags(**{"elbv2.k8s.aws/cluster": CLUSTER, "service.k8s.aws/stack": "telemedicine/jvb-media"}),
            }
        ],
    )["GroupId"]
    ours = {"elbv2.k8s.aws/cluster": CLUSTER, "service.k8s.aws/stack": "telemedicine/jvb-media"}
    nlb = alb(aws, "k8s-clinic-jvbmedia", subnets, frontend_sg, kind="network", **ours)
    groups = [
        aws.elbv2.create_target_group(
            Name=f"k8s-telemedi-jvbmedia-{port}",
            Protocol=protocol,
            Port=port,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckProtocol="HTTP",
            HealthCheckPort="8080",
            HealthCheckPath="/about/health",
            Tags=tags(**ours),
        )["TargetGroups"][0]["TargetGroupArn"]
        for protocol, port in (("UDP", 10000), ("TCP", 3478))
    ]
    for (protocol, port), group in zip((("UDP", 10000), ("TCP", 443)), groups, strict=True):
        aws.elbv2.create_listener(
            LoadBalancerArn=nlb,
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )
    addresses = [aws.ec2.allocate_address(Domain="vpc") for _ in subnets]
    interfaces = [eni(aws, subnet, "ELB net/k8s-clinic-jvbmedia/73e2d6bc24d8a067") for subnet in subnets]
    for address, interface in zip(addresses, interfaces, strict=True):
        aws.ec2.associate_address(AllocationId=address["AllocationId"], NetworkInterfaceId=interface)

    # Before AWS has let go of the interfaces, a release fails (moto does not refuse, AWS does: the address is
    # associated): the timeout names each interface with the address it holds.
    with pytest.raises(SweepTimeout) as stuck:
        aws.sweeper(vpc, timeout_seconds=0.5).sweep()
    for address in addresses:
        assert f"holding Elastic IP {address['PublicIp']}" in str(stuck.value)

    def release_with_addresses():
        # What AWS does minutes after the NLB is gone: the association goes with the interface.
        time.sleep(1.0)
        for address in aws.ec2.describe_addresses(AllocationIds=[a["AllocationId"] for a in addresses])["Addresses"]:
            if address.get("AssociationId"):
                aws.ec2.disassociate_address(AssociationId=address["AssociationId"])
        for interface in interfaces:
            aws.ec2.delete_network_interface(NetworkInterfaceId=interface)

    sweeper = aws.sweeper(vpc)
    releaser = threading.Thread(target=release_with_addresses, daemon=True)
    releaser.start()
    report = sweeper.sweep()
    releaser.join()

    assert report.waited_for_interfaces == sorted(interfaces)
    assert report.freed_addresses == sorted(a["AllocationId"] for a in addresses)
    assert load_balancer_names(aws, vpc) == []
    remaining_tgs = {t["TargetGroupArn"] for t in aws.elbv2.describe_target_groups()["TargetGroups"]}
    assert not remaining_tgs & set(groups), "both the UDP and the TCP target group are deleted"
    remaining_sgs = {
        g["GroupId"]
        for g in aws.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    }
    assert frontend_sg not in remaining_sgs and node_sg in remaining_sgs
    found = aws.ec2.describe_addresses(AllocationIds=[a["AllocationId"] for a in addresses])["Addresses"]
    assert not [a for a in found if a.get("AssociationId")], "the addresses are free for the stack to release"
    for address in addresses:
        aws.ec2.release_address(AllocationId=address["AllocationId"])
    for subnet in subnets:
        aws.ec2.delete_subnet(SubnetId=subnet)
    aws.ec2.delete_security_group(GroupId=node_sg)
    aws.ec2.delete_vpc(VpcId=vpc)
