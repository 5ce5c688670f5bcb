"""Network: the VPC every other component lives in."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.iam import service_trust_policy
from components.log_encryption import log_group_key
from limits import NAT_MODES


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs for one AZ, carved from the VPC so that tiers never overlap whatever the AZ count."""

    availability_zone: str
    public: str
    private: str
    database: str


def plan_subnets(vpc_cidr: str, availability_zones: Sequence[str]) -> list[SubnetPlan]:
    """Private (node and pod) subnets take the first half of the VPC in eighths, since the VPC CNI gives every pod
    a VPC address; public (load balancers, NAT) and isolated database subnets take /+5 blocks of the second half."""
    vpc = ipaddress.IPv4Network(vpc_cidr, strict=True)
    if not 1 <= len(availability_zones) <= 4:
        raise ValueError(f"availability_zones has {len(availability_zones)} entries; allowed: 1 to 4")
    private = list(vpc.subnets(new_prefix=vpc.prefixlen + 3))
    small = list(vpc.subnets(new_prefix=vpc.prefixlen + 5))
    return [
        SubnetPlan(az, public=str(small[16 + i]), private=str(private[i]), database=str(small[24 + i]))
        for i, az in enumerate(availability_zones)
    ]


def elb_subnet_tags(cluster_name: str, *, public: bool) -> dict[str, str]:
    """Tags the AWS Load Balancer Controller and the in-tree provider use to find subnets for this cluster."""
    role = "kubernetes.io/role/elb" if public else "kubernetes.io/role/internal-elb"
    return {role: "1", f"kubernetes.io/cluster/{cluster_name}": "shared"}


@dataclass(frozen=True)
class NetworkArgs:
    vpc_cidr: str
    """IPv4 CIDR of the VPC."""
    availability_zones: Sequence[str]
    """AZs to spread the subnets over (from the region's available zones)."""
    nat_mode: str
    """`single` NAT gateway for all AZs, or `per-az`."""
    cluster_name: str
    """EKS cluster name; drives the ELB discovery tags so they cannot drift from the cluster."""
    region: str
    """AWS region (names the S3 gateway endpoint's service)."""
    flow_logs: bool = False
    """Capture all VPC traffic to CloudWatch Logs."""
    flow_log_retention_days: int = 7
    """Retention of the flow-log group."""
    media_addresses: bool = False
    """Allocate one Elastic IP per public subnet for the telemedicine videobridge's NLB."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_network_args(args: NetworkArgs) -> None:
    if args.nat_mode not in NAT_MODES:
        raise ValueError(f"nat_mode = {args.nat_mode!r} is invalid; allowed: {', '.join(NAT_MODES)}")
    if len(set(args.availability_zones)) != len(args.availability_zones):
        raise ValueError(f"availability_zones = {list(args.availability_zones)} repeats a zone")
    plan_subnets(args.vpc_cidr, args.availability_zones)


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    """The VPC's id."""
    public_subnet_ids: pulumi.Output[list[str]]
    """Subnets for internet-facing load balancers and the NAT gateways."""
    private_subnet_ids: pulumi.Output[list[str]]
    """Subnets for nodes and pods (egress through NAT)."""
    database_subnet_ids: pulumi.Output[list[str]]
    """Isolated subnets (no route to the internet) for RDS."""
    foundation: list[pulumi.Resource]
    """VPC, subnets, internet gateway, route tables, their associations and the public route: each created in
    seconds, and all the EKS control plane needs."""
    media_allocation_ids: pulumi.Output[list[str]]
    """Elastic IP allocations for the videobridge's NLB, one per public subnet in the same order (empty unless
    media_addresses)."""
    media_public_ips: pulumi.Output[list[str]]
    """Their public addresses, in the same order: what the videobridge advertises to browsers."""
    egress: list[pulumi.Resource]
    """NAT gateways and the private subnets' default routes through them (~2 min to create): what nodes need to join
    the cluster, pull images and reach AWS APIs."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Network", name, None, opts)
        validate_network_args(args)
        plan = plan_subnets(args.vpc_cidr, args.availability_zones)
        self.subnet_plan = plan  # plain CIDRs, known before deployment (network policies use them)
        tags = {**args.tags}
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        # The default security group allows all traffic between its members; empty it so nothing relies on it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={**tags, "Name": f"{name}-default-do-not-use"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-igw"}, opts=child)

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-public"}, opts=child
        )
        public_default = aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        database_rt = aws.ec2.RouteTable(
            f"{name}-database-rt", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-database"}, opts=child
        )

        public_subnets, private_subnets, database_subnets, nat_gateways = [], [], [], []
        media_eips: list[aws.ec2.Eip] = []
        private_route_tables, private_routes, fast = [], [], [vpc, igw, public_rt, public_default, database_rt]
        for i, az_plan in enumerate(plan):
            az = az_plan.availability_zone
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=az_plan.public,
                availability_zone=az,
                # Internet-facing ALBs get public addresses themselves; instances here never should.
                map_public_ip_on_launch=False,
                tags={**tags, **elb_subnet_tags(args.cluster_name, public=True), "Name": f"{name}-public-{az}"},
                opts=child,
            )
            fast.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-public-{i}-rta", subnet_id=public.id, route_table_id=public_rt.id, opts=child
                )
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=az_plan.private,
                availability_zone=az,
                tags={**tags, **elb_subnet_tags(args.cluster_name, public=False), "Name": f"{name}-private-{az}"},
                opts=child,
            )
            database = aws.ec2.Subnet(
                f"{name}-database-{i}",
                vpc_id=vpc.id,
                cidr_block=az_plan.database,
                availability_zone=az,
                tags={**tags, "Name": f"{name}-database-{az}"},
                opts=child,
            )
            fast.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-database-{i}-rta", subnet_id=database.id, route_table_id=database_rt.id, opts=child
                )
            )
            if args.nat_mode == "per-az" or i == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-eip-{i}",
                    domain="vpc",
                    tags={**tags, "Name": f"{name}-nat-{az}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                fast.append(eip)
                nat_gateways.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        allocation_id=eip.allocation_id,
                        subnet_id=public.id,
                        tags={**tags, "Name": f"{name}-nat-{az}"},
                        # NAT needs the internet gateway attached and the public route in place to pass traffic.
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw, public_default]),
                    )
                )
            nat = nat_gateways[-1]
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-private-{az}"}, opts=child
            )
            private_route_tables.append(private_rt)
            private_routes.append(
                aws.ec2.Route(
                    f"{name}-private-default-{i}",
                    route_table_id=private_rt.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat.id,
                    opts=child,
                )
            )
            fast += [
                private_rt,
                aws.ec2.RouteTableAssociation(
                    f"{name}-private-{i}-rta", subnet_id=private.id, route_table_id=private_rt.id, opts=child
                ),
            ]
            if args.media_addresses:
                # Kept out of the Telemedicine component on purpose: the janitor depends on `foundation`, so on
                # destroy these are released only after it has swept the NLB that holds them (an address still
                # associated with an NLB's network interface cannot be released).
                media = aws.ec2.Eip(
                    f"{name}-media-eip-{i}",
                    domain="vpc",
                    tags={**tags, "Name": f"{name}-media-{az}"},
                    opts=child,
                )
                fast.append(media)
                media_eips.append(media)
            public_subnets.append(public)
            private_subnets.append(private)
            database_subnets.append(database)

        # S3 traffic (exam PDFs, ECR layers) stays on the AWS network and skips NAT data charges.
        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_route_tables],
            tags={**tags, "Name": f"{name}-s3"},
            opts=child,
        )

        if args.flow_logs:
            self._flow_logs(name, vpc, args, tags)

        self.foundation = [*fast, *public_subnets, *private_subnets, *database_subnets]
        self.egress = [*nat_gateways, *private_routes]
        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.database_subnet_ids = pulumi.Output.all(*[s.id for s in database_subnets])
        self.media_allocation_ids = pulumi.Output.all(*[e.allocation_id for e in media_eips])
        self.media_public_ips = pulumi.Output.all(*[e.public_ip for e in media_eips])
        self.register_outputs(
            {
                "media_allocation_ids": self.media_allocation_ids,
                "media_public_ips": self.media_public_ips,
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "database_subnet_ids": self.database_subnet_ids,
            }
        )

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs, tags: Mapping[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # The group is auto-named `<name>-flow-logs-<suffix>`; its key serves only groups of that name.
        key = log_group_key(
            f"{name}-flow-logs-key",
            f"{name}: VPC flow logs",
            f"{name}-flow-logs-*",
            parent=self,
            retain=False,
            tags=tags,
        )
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=key.arn,
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            tags=tags,
            opts=child,
            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
        )
        # Only the one log group, not logs:* on *.
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            opts=child,
            policy=group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    }
                )
            ),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=tags,
            opts=child,
        )
