"""How long `pulumi up` takes to create each kind of resource, and the create critical path of a recorded graph.

The durations are typical wall-clock times of a create observed on AWS (eu-west-1) and in the providers' docs,
not guarantees; they only have to rank resources well enough to show which chain bounds `pulumi up`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from preview.graph import Graph, Registration

MINUTE = 60
DEFAULT_SECONDS = 5
"""Any custom resource not in the table: one API call and a short wait (IAM, SG, subnet, route, queue, ...)."""


def _rds_instance(inputs: Mapping[str, Any]) -> int:
    # Multi-AZ provisions and syncs a standby in a second AZ before the instance is available.
    return 15 * MINUTE if inputs.get("multiAz") else 8 * MINUTE


def _vpc_endpoint(inputs: Mapping[str, Any]) -> int:
    # Gateway endpoints only touch route tables; interface endpoints create an ENI per subnet.
    return 2 * MINUTE if inputs.get("vpcEndpointType") == "Interface" else 30


def _service(inputs: Mapping[str, Any]) -> int:
    # A LoadBalancer Service waits for its NLB to get an address; other Services are immediate.
    spec = inputs.get("spec") or {}
    return 3 * MINUTE if isinstance(spec, Mapping) and spec.get("type") == "LoadBalancer" else DEFAULT_SECONDS


# Type token -> seconds, or a function of the resource's inputs.
CREATE_SECONDS: dict[str, int | Callable[[Mapping[str, Any]], int]] = {
    "eks:index:Cluster": 10 * MINUTE,  # control plane, OIDC provider, access entries
    "aws:eks/cluster:Cluster": 10 * MINUTE,
    "aws:eks/nodeGroup:NodeGroup": 4 * MINUTE,  # instances launched and joined
    "eks:index:ManagedNodeGroup": 4 * MINUTE,
    "aws:eks/addon:Addon": 1 * MINUTE,
    "aws:ec2/natGateway:NatGateway": 2 * MINUTE,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:rds/cluster:Cluster": 5 * MINUTE,
    "aws:rds/clusterInstance:ClusterInstance": 8 * MINUTE,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _vpc_endpoint,
    "aws:kms/key:Key": 10,
    "aws:ec2/flowLog:FlowLog": 10,
    "aws:acm/certificateValidation:CertificateValidation": 5 * MINUTE,  # DNS validation
    "kubernetes:helm.sh/v3:Release": 2 * MINUTE,  # pods scheduled and ready (atomic release)
    "kubernetes:apps/v1:Deployment": 1 * MINUTE,  # rollout until the pods are ready
    "kubernetes:apps/v1:StatefulSet": 2 * MINUTE,
    "kubernetes:apps/v1:DaemonSet": 1 * MINUTE,
    "kubernetes:batch/v1:Job": 1 * MINUTE,  # e.g. migrations, awaited to completion
    "kubernetes:networking.k8s.io/v1:Ingress": 3 * MINUTE,  # the controller provisions the ALB
    "kubernetes:core/v1:Service": _service,
}


def create_seconds(record: Registration) -> int:
    """Components and providers take no time of their own; custom and remote resources per the table."""
    if record.type.startswith("pulumi:providers:") or not (record.custom or record.remote):
        return 0
    entry = CREATE_SECONDS.get(record.type, DEFAULT_SECONDS)
    return entry(record.inputs) if callable(entry) else entry


def create_dependencies(graph: Graph, record: Registration) -> set[str]:
    """What must exist before `record` is created: its parent, provider, dependsOn and property dependencies
    (deletedWith only orders deletes)."""
    edges = set(record.dependencies)
    for urns in record.property_dependencies.values():
        edges |= urns
    edges |= {u for u in (record.parent, record.provider) if u}
    return {u for u in edges if u in graph.by_urn and u != record.urn}


@dataclass(frozen=True)
class Step:
    record: Registration
    seconds: int
    """Own create time."""
    finish: int
    """Seconds from the start of `pulumi up` until this resource is created, with unlimited parallelism."""


def critical_path(graph: Graph) -> list[Step]:
    """The longest chain over the create dependency DAG, first resource first. Each step depends directly on the
    one before it; the last step's `finish` is the shortest possible duration of `pulumi up` from scratch."""
    finish: dict[str, int] = {}
    before: dict[str, str | None] = {}

    def earliest_finish(urn: str, visiting: frozenset[str] = frozenset()) -> int:
        if urn not in finish:
            assert urn not in visiting, f"the create graph has a cycle through {graph.by_urn[urn].name}"
            deps = create_dependencies(graph, graph.by_urn[urn])
            ends = {u: earliest_finish(u, visiting | {urn}) for u in deps}
            latest = max(ends, key=lambda u: (ends[u], u), default=None)
            before[urn] = latest
            finish[urn] = create_seconds(graph.by_urn[urn]) + (ends[latest] if latest else 0)
        return finish[urn]

    for record in graph.records:
        earliest_finish(record.urn)
    if not finish:
        return []
    urn: str | None = max(finish, key=lambda u: (finish[u], u))
    chain: list[Step] = []
    while urn is not None:
        record = graph.by_urn[urn]
        chain.append(Step(record, create_seconds(record), finish[urn]))
        urn = before[urn]
    return chain[::-1]
