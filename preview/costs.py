"""Estimated monthly cost of a recorded graph, from a price table.

Prices: AWS public on-demand list prices for eu-west-1 (Ireland), USD, as published on the AWS pricing pages in
June 2025 (PRICES_AS_OF); they were not re-checked from this machine, which has no access to AWS. Update the table
and the date together. Only what a resource costs by merely existing is counted (hours, provisioned storage,
keys, secrets); traffic and request-driven charges are listed in EXCLUDED instead, because the graph says nothing
about usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from preview.graph import Graph, Registration

PRICES_REGION = "eu-west-1"
PRICES_AS_OF = "2025-06"
HOURS_PER_MONTH = 730

EKS_CONTROL_PLANE_HOUR = 0.10  # standard support; extended support is 0.60
NAT_GATEWAY_HOUR = 0.048
PUBLIC_IPV4_HOUR = 0.005  # every public IPv4 address, attached or not (since 2024-02)
ALB_HOUR = 0.0252
NLB_HOUR = 0.0252
INTERFACE_ENDPOINT_HOUR_PER_AZ = 0.011
KMS_KEY_MONTH = 1.00
SECRETS_MANAGER_SECRET_MONTH = 0.40
RDS_GP3_GB_MONTH = 0.127  # single-AZ; Multi-AZ stores twice
EBS_GP3_GB_MONTH = 0.088
CLOUDWATCH_ALARM_METRIC_MONTH = 0.10  # standard resolution, per metric an alarm evaluates
# Spot price as a fraction of on-demand: the 12-month average for t3/m6i in eu-west-1 hovered around 30-40 %.
SPOT_FACTOR = 0.35

EC2_HOUR: dict[str, float] = {
    "t3.medium": 0.0456,
    "t3.large": 0.0912,
    "t3.xlarge": 0.1824,
    "t3a.medium": 0.0408,
    "t3a.large": 0.0816,
    "t3a.xlarge": 0.1632,
    "m6i.large": 0.107,
    "m6i.xlarge": 0.214,
    "m6i.2xlarge": 0.428,
    "m7i.large": 0.1124,
    "m7i.xlarge": 0.2247,
    "m6g.large": 0.086,
    "m6g.xlarge": 0.172,
    "m7g.large": 0.0914,
    "m7g.xlarge": 0.1828,
    "c6i.large": 0.0912,
    "c7g.large": 0.0775,
    "r6i.large": 0.141,
}
# RDS for PostgreSQL, single-AZ instance hours; Multi-AZ (one standby) doubles them.
RDS_POSTGRES_HOUR: dict[str, float] = {
    "db.t4g.micro": 0.018,
    "db.t4g.small": 0.036,
    "db.t4g.medium": 0.073,
    "db.t4g.large": 0.145,
    "db.m7g.large": 0.182,
    "db.m7g.xlarge": 0.364,
    "db.m7g.2xlarge": 0.728,
    "db.r7g.large": 0.254,
    "db.r7g.xlarge": 0.508,
    "db.r7g.2xlarge": 1.016,
}
EXCLUDED = (
    "data processed by NAT gateways ($0.048/GB) and data transfer out",
    "ALB/NLB capacity units (LCU/NLCU, $0.008/h each)",
    "CloudWatch Logs ingestion and storage (flow logs, control-plane logs, RDS logs, container logs)",
    "Container Insights observations (amazon-cloudwatch-observability add-on)",
    "AWS Backup recovery-point storage and the cross-region copy's transfer",
    "S3 storage and requests, ECR image storage, SQS requests, SES messages, KMS requests",
    "CloudTrail data events ($0.10 per 100,000: every read and write of an exam PDF or its replica) and, when the "
    "account already has a trail, the second copy of management events ($2.00 per 100,000)",
    "S3 replication of exam PDFs: transfer to the copy region ($0.02/GB), Replication Time Control ($0.015/GB), "
    "replication metrics (CloudWatch), the replica's STANDARD_IA storage",
    "RDS backup storage beyond the database's size, Performance Insights beyond 7 days",
    "storage autoscaling above the allocated size",
)


@dataclass(frozen=True)
class CostLine:
    resource: str
    type: str
    item: str
    monthly_usd: float
    unpriced: str = ""
    """Set when the table has no price for what the resource uses: the line counts 0 and says what to add."""


def _n(value: float) -> str:
    """Config numbers reach the inputs as floats; print 2 rather than 2.0."""
    return f"{value:g}"


def _hourly(resource: Registration, item: str, per_hour: float, count: float = 1) -> CostLine:
    return CostLine(resource.name, resource.type, item, round(per_hour * count * HOURS_PER_MONTH, 2))


class Unpriced(KeyError):
    """The price table lacks an entry the graph needs."""


def _price(table: dict[str, float], key: str, what: str) -> float:
    if key not in table:
        raise Unpriced(f"no {PRICES_REGION} price for {what} {key!r}; add it to preview/costs.py")
    return table[key]


def _eks_cluster(graph: Graph, r: Registration) -> list[CostLine]:
    return [_hourly(r, "EKS control plane", EKS_CONTROL_PLANE_HOUR)]


def _node_group(graph: Graph, r: Registration) -> list[CostLine]:
    instance_type = (r.input("instanceTypes") or ["?"])[0]
    nodes = r.input("scalingConfig", "desiredSize") or 0
    spot = r.input("capacityType") == "SPOT"
    hourly = _price(EC2_HOUR, instance_type, "EC2 instance type") * (SPOT_FACTOR if spot else 1)
    lines = [
        _hourly(r, f"{_n(nodes)} x {instance_type} {'spot' if spot else 'on-demand'} (desired size)", hourly, nodes)
    ]
    # Root volumes come from the node group's launch template, when it has one.
    for urn in r.property_dependencies.get("launchTemplate", ()):
        template = graph.by_urn.get(urn)
        for mapping in (template.input("blockDeviceMappings") or []) if template else []:
            size = (mapping.get("ebs") or {}).get("volumeSize")
            if size:
                lines.append(
                    CostLine(
                        r.name,
                        r.type,
                        f"{_n(nodes)} x {_n(size)} GB gp3 root volume",
                        round(nodes * size * EBS_GP3_GB_MONTH, 2),
                    )
                )
    return lines


def _rds_instance(graph: Graph, r: Registration) -> list[CostLine]:
    multi_az = bool(r.input("multiAz"))
    copies = 2 if multi_az else 1
    cls = r.input("instanceClass")
    storage = r.input("allocatedStorage") or 0
    return [
        _hourly(
            r,
            f"{cls} {'Multi-AZ' if multi_az else 'single-AZ'}",
            _price(RDS_POSTGRES_HOUR, cls, "RDS instance class"),
            copies,
        ),
        CostLine(
            r.name,
            r.type,
            f"{_n(storage)} GB gp3{' x2 (Multi-AZ)' if multi_az else ''}",
            round(storage * copies * RDS_GP3_GB_MONTH, 2),
        ),
    ] + (
        [CostLine(r.name, r.type, "master password secret (Secrets Manager)", SECRETS_MANAGER_SECRET_MONTH)]
        if r.input("manageMasterUserPassword")
        else []
    )


def _nat_gateway(graph: Graph, r: Registration) -> list[CostLine]:
    return [_hourly(r, "NAT gateway hours", NAT_GATEWAY_HOUR)]


def _eip(graph: Graph, r: Registration) -> list[CostLine]:
    return [_hourly(r, "public IPv4 address", PUBLIC_IPV4_HOUR)]


def _kms_key(graph: Graph, r: Registration) -> list[CostLine]:
    return [CostLine(r.name, r.type, "KMS customer-managed key", KMS_KEY_MONTH)]


def _secret(graph: Graph, r: Registration) -> list[CostLine]:
    return [CostLine(r.name, r.type, "Secrets Manager secret", SECRETS_MANAGER_SECRET_MONTH)]


def _vpc_endpoint(graph: Graph, r: Registration) -> list[CostLine]:
    if r.input("vpcEndpointType") != "Interface":
        return []  # gateway endpoints (S3, DynamoDB) are free
    return [_hourly(r, "interface endpoint", INTERFACE_ENDPOINT_HOUR_PER_AZ, len(r.input("subnetIds") or [1]))]


def _ingress(graph: Graph, r: Registration) -> list[CostLine]:
    annotations = r.input("metadata", "annotations") or {}
    group = annotations.get("alb.ingress.kubernetes.io/group.name")
    if group:
        # Ingresses of one group share one ALB: charge it to the first of them only.
        first = next(
            i
            for i in graph.of_type(r.type)
            if (i.input("metadata", "annotations") or {}).get("alb.ingress.kubernetes.io/group.name") == group
        )
        if first.urn != r.urn:
            return []
    return [_hourly(r, f"ALB{f' (group {group})' if group else ''}", ALB_HOUR)]


def _service(graph: Graph, r: Registration) -> list[CostLine]:
    return [_hourly(r, "NLB", NLB_HOUR)] if r.input("spec", "type") == "LoadBalancer" else []


def _metric_alarm(graph: Graph, r: Registration) -> list[CostLine]:
    queries = r.inputs.get("metricQueries") or []
    metrics = sum(1 for q in queries if q.get("metric")) or 1
    return [
        CostLine(r.name, r.type, f"CloudWatch alarm ({metrics} metric(s))", CLOUDWATCH_ALARM_METRIC_MONTH * metrics)
    ]


def _helm_release(graph: Graph, r: Registration) -> list[CostLine]:
    """Persistent volumes a chart asks for (kube-prometheus-stack's Prometheus); charts without any cost nothing
    beyond the nodes they run on."""
    spec = (
        ((r.input("values", "prometheus", "prometheusSpec") or {}).get("storageSpec") or {}).get("volumeClaimTemplate")
        or {}
    ).get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if not size:
        return []
    gb = int(str(size).removesuffix("Gi"))
    return [CostLine(r.name, r.type, f"{gb} GB gp3 Prometheus volume", EBS_GP3_GB_MONTH * gb)]


PRICED: dict[str, Callable[[Graph, Registration], list[CostLine]]] = {
    "aws:cloudwatch/metricAlarm:MetricAlarm": _metric_alarm,
    "kubernetes:helm.sh/v3:Release": _helm_release,
    "eks:index:Cluster": _eks_cluster,
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "eks:index:ManagedNodeGroup": _node_group,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:ec2/natGateway:NatGateway": _nat_gateway,
    "aws:ec2/eip:Eip": _eip,
    "aws:kms/key:Key": _kms_key,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _vpc_endpoint,
    "kubernetes:networking.k8s.io/v1:Ingress": _ingress,
    "kubernetes:core/v1:Service": _service,
}


def cost_lines(graph: Graph) -> list[CostLine]:
    """One line per priced item; a resource whose price is missing from the tables gets a 0 line that says so,
    so the preview still runs (the tests demand that both committed stacks are fully priced)."""
    lines = []
    for r in graph.records:
        if r.type in PRICED:
            try:
                lines += PRICED[r.type](graph, r)
            except Unpriced as missing:
                lines.append(CostLine(r.name, r.type, "not priced", 0.0, unpriced=missing.args[0]))
    return lines


def monthly_total(lines: Iterable[CostLine]) -> float:
    return round(sum(line.monthly_usd for line in lines), 2)
