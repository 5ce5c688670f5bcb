"""Network: subnets carved without overlap, NAT per stack, ELB discovery tags from the cluster name."""

import ipaddress
import json

import pytest

from components.network import Network, NetworkArgs, plan_subnets
from tests.infra.pulumi_mocks import evaluate

SUBNET = "aws:ec2/subnet:Subnet"


@pytest.mark.parametrize("vpc_cidr,azs", [("10.20.0.0/16", 2), ("10.30.0.0/16", 3), ("172.16.0.0/20", 4)])
def test_subnet_plan_tiers_never_overlap_and_stay_inside_the_vpc(vpc_cidr, azs):
    plan = plan_subnets(vpc_cidr, [f"eu-west-1{c}" for c in "abcd"[:azs]])
    vpc = ipaddress.ip_network(vpc_cidr)
    nets = [ipaddress.ip_network(c) for p in plan for c in (p.public, p.private, p.database)]
    assert len(nets) == 3 * azs
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    # The VPC CNI gives every pod a VPC address: the private tier must be the large one.
    assert all(
        ipaddress.ip_network(p.private).num_addresses >= 4 * ipaddress.ip_network(p.public).num_addresses for p in plan
    )


def test_subnet_plan_refuses_more_than_four_zones():
    with pytest.raises(ValueError, match="availability_zones has 5 entries; allowed: 1 to 4"):
        plan_subnets("10.0.0.0/16", list("abcde"))


def test_unknown_nat_mode_is_refused_before_any_resource():
    args = NetworkArgs(
        vpc_cidr="10.0.0.0/16",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        nat_mode="none",
        cluster_name="c",
        region="eu-west-1",
    )
    with pytest.raises(ValueError, match="nat_mode = 'none' is invalid; allowed: single, per-az"):
        evaluate(lambda: Network("n", args), stack="dev")


@pytest.mark.parametrize("stack_name,nat_count", [("dev", 1), ("prod", 3)])
def test_nat_gateways_per_stack(stack_name, nat_count, dev, prod):
    graph = {"dev": dev, "prod": prod}[stack_name]
    nats = graph.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == nat_count, f"{stack_name} should have {nat_count} NAT gateway(s)"
    public_ids = {f"{s.name}-id" for s in graph.of_type(SUBNET) if "-public-" in s.name}
    assert {n.inputs["subnetId"] for n in nats} <= public_ids, "NAT gateways live in public subnets"


def test_every_private_route_table_defaults_to_a_nat_gateway_and_database_subnets_have_no_internet_route(stack):
    routes = stack.of_type("aws:ec2/route:Route")
    private = [r for r in routes if "private-default" in r.name]
    assert private and all(r.inputs.get("natGatewayId") for r in private), "private egress goes through NAT"
    database_rt = next(r for r in stack.of_type("aws:ec2/routeTable:RouteTable") if r.name.endswith("database-rt"))
    assert not [r for r in routes if r.inputs.get("routeTableId") == f"{database_rt.name}-id"], (
        "database subnets must have no route out of the VPC"
    )


def test_subnets_carry_elb_discovery_tags_for_the_configured_cluster(stack):
    cluster = "clinic-dev" if "clinic-dev" in stack.records[0].urn else "clinic-prod"
    for subnet in stack.of_type(SUBNET):
        tags = subnet.inputs["tags"]
        if "-public-" in subnet.name:
            assert tags["kubernetes.io/role/elb"] == "1", subnet.name
            assert tags[f"kubernetes.io/cluster/{cluster}"] == "shared", subnet.name
            assert subnet.inputs.get("mapPublicIpOnLaunch") is False, subnet.name
        elif "-private-" in subnet.name:
            assert tags["kubernetes.io/role/internal-elb"] == "1", subnet.name
            assert tags[f"kubernetes.io/cluster/{cluster}"] == "shared", subnet.name
        else:
            assert not any(k.startswith("kubernetes.io/") for k in tags), f"{subnet.name} must not host load balancers"


def test_elb_tags_follow_a_renamed_cluster():
    args = NetworkArgs(
        vpc_cidr="10.0.0.0/16",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        nat_mode="single",
        cluster_name="other-name",
        region="eu-west-1",
    )
    graph = evaluate(lambda: Network("n", args), stack="dev")
    tagged = [s for s in graph.of_type(SUBNET) if "kubernetes.io/cluster/other-name" in s.inputs["tags"]]
    assert len(tagged) == 4


def test_flow_logs_only_in_prod_and_scoped_to_their_log_group(dev, prod):
    assert not dev.of_type("aws:ec2/flowLog:FlowLog")
    flow_log = prod.one("aws:ec2/flowLog:FlowLog")
    assert flow_log.inputs["trafficType"] == "ALL"
    group = next(g for g in prod.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("network-flow-logs"))
    assert group.inputs["retentionInDays"] == 365
    statement = prod.one("aws:iam/rolePolicy:RolePolicy", "clinic-prod-network-flow-logs-policy").input(
        "policy", "Statement"
    )[0]
    assert "*" not in statement["Resource"] and statement["Resource"][0] == group.state["arn"]
    key = prod.one("aws:kms/key:Key", "clinic-prod-network-flow-logs-key")
    assert group.inputs["kmsKeyId"] == key.state["arn"], "flow logs (who talked to the database) are encrypted"
    logs = next(st for st in json.loads(key.inputs["policy"])["Statement"] if st["Sid"].startswith("CloudWatchLogs"))
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(
        ":log-group:clinic-prod-network-flow-logs-*"
    ), "the key serves this auto-named group only"


def test_s3_gateway_endpoint_serves_every_private_route_table(stack):
    endpoint = stack.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == "com.amazonaws.eu-west-1.s3"
    private_rts = [r for r in stack.of_type("aws:ec2/routeTable:RouteTable") if "private-rt" in r.name]
    assert sorted(endpoint.inputs["routeTableIds"]) == sorted(f"{r.name}-id" for r in private_rts)


def test_default_security_group_is_emptied(stack):
    default = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress", []) == [] and default.inputs.get("egress", []) == []
