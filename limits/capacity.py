"""Do the pods fit on the nodes the autoscaler may add? Pure arithmetic, no Pulumi.

The pods' requests come from here (ClinicApps sizes its containers with the same values); the nodes' allocatable
capacity is what the kubelet of an EKS AL2023 node leaves to pods: its capacity (about 95 % of the nominal memory
once the kernel has taken its share) less kube-reserved (CPU: 6 % of the first core, 1 % of the second, 0.5 % of
the next two, 0.25 % beyond; memory: 255 MiB + 11 MiB per pod the instance type can hold) and the 100 MiB eviction
threshold. The check adds every pod's requests and compares them with the node groups at `maxSize`, keeping 10 %
back for what does not pack (a pod fits on one node or none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from limits import FILE_PROCESSOR_REPLICAS


@dataclass(frozen=True)
class PodSize:
    cpu_millicores: int
    """CPU request (millicores)."""
    memory_mib: int
    """Memory request (MiB)."""

    @property
    def cpu(self) -> str:
        return f"{self.cpu_millicores}m"

    @property
    def memory(self) -> str:
        return f"{self.memory_mib}Mi"

    def __add__(self, other: PodSize) -> PodSize:
        return PodSize(self.cpu_millicores + other.cpu_millicores, self.memory_mib + other.memory_mib)

    def __mul__(self, count: int) -> PodSize:
        return PodSize(self.cpu_millicores * count, self.memory_mib * count)


# The clinic's pods (ClinicApps requests exactly these).
API_POD = PodSize(250, 512)
NOTIFIER_POD = PodSize(100, 256)
# The PDF check is CPU-bound and runs in a child process limited to 256 MiB of address space, beside the worker.
FILE_PROCESSOR_POD = PodSize(250, 512)
MIGRATION_POD = PodSize(100, 256)
# The TURN relay beside the telemedicine videobridge, in the bridge's pod (components/telemedicine.py).
TURN_SIDECAR = PodSize(250, 256)
# DaemonSets on every node, their requests rounded up: aws-node and its network-policy agent (25m + 25m), kube-proxy
# (100m), ebs-csi-node (3 x 10m / 40Mi), the CloudWatch agent (250m / 128Mi) and Fluent Bit (50m / 25Mi).
DAEMONSETS_PER_NODE = PodSize(500, 400)
# Once per cluster: CoreDNS (2 x 100m / 70Mi), the load balancer controller (2 replicas), metrics-server (100m /
# 200Mi), the Cluster Autoscaler (100m / 600Mi), the EBS CSI controller (2 replicas) and the CloudWatch operator.
SYSTEM_PODS = PodSize(1000, 2048)
# kube-prometheus-stack when observability.monitoring is on (components/monitoring.py's requests, rounded up), and
# its node-exporter on every node.
MONITORING_PODS = PodSize(700, 1800)
MONITORING_PER_NODE = PodSize(50, 64)
PACKING_SHARE = 0.9


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_gib: int
    max_pods: int
    """Pods the VPC CNI can address on it (ENIs x (IPs per ENI - 1) + 2)."""

    @property
    def allocatable(self) -> PodSize:
        reserved_cpu = (
            60 + 10 * min(max(self.vcpus - 1, 0), 1) + 5 * min(max(self.vcpus - 2, 0), 2) + 2.5 * max(self.vcpus - 4, 0)
        )
        capacity_mib = int(self.memory_gib * 1024 * 0.95)
        reserved_mib = 255 + 11 * self.max_pods + 100
        return PodSize(int(self.vcpus * 1000 - reserved_cpu), capacity_mib - reserved_mib)


# The instance types the stacks may use for their node groups.
INSTANCE_TYPES: dict[str, InstanceType] = {
    "t3.large": InstanceType(2, 8, 35),
    "t3a.large": InstanceType(2, 8, 35),
    "t3.xlarge": InstanceType(4, 16, 58),
    "t3a.xlarge": InstanceType(4, 16, 58),
    "m6i.large": InstanceType(2, 8, 29),
    "m6i.xlarge": InstanceType(4, 16, 58),
    "m7i.large": InstanceType(2, 8, 29),
    "m7i.xlarge": InstanceType(4, 16, 58),
    "m7g.large": InstanceType(2, 8, 29),
    "m7g.xlarge": InstanceType(4, 16, 58),
}


@dataclass(frozen=True)
class NodeGroupCapacity:
    instance_types: tuple[str, ...]
    """The group's instance types (the smallest one is counted: the group may get any)."""
    max_size: int
    """Nodes the autoscaler may grow the group to."""


def usable_capacity(groups: Iterable[NodeGroupCapacity], *, monitoring: bool) -> PodSize:
    """What pods may request on every group at maxSize, after each node's DaemonSets, less the packing share."""
    per_node_overhead = DAEMONSETS_PER_NODE + (MONITORING_PER_NODE if monitoring else PodSize(0, 0))
    total = PodSize(0, 0)
    for group in groups:
        smallest = min(
            (INSTANCE_TYPES[t].allocatable for t in group.instance_types),
            key=lambda a: (a.cpu_millicores, a.memory_mib),
        )
        per_node = PodSize(
            smallest.cpu_millicores - per_node_overhead.cpu_millicores,
            smallest.memory_mib - per_node_overhead.memory_mib,
        )
        total = total + per_node * group.max_size
    return PodSize(int(total.cpu_millicores * PACKING_SHARE), int(total.memory_mib * PACKING_SHARE))


def requested(api_max_replicas: int, notifier_replicas: int, *, monitoring: bool) -> PodSize:
    """Every pod at the HPA ceiling, during a rollout (one surge pod per Deployment) with both migrations Jobs."""
    return (
        API_POD * (api_max_replicas + 1)
        + NOTIFIER_POD * (notifier_replicas + 1)
        + FILE_PROCESSOR_POD * (FILE_PROCESSOR_REPLICAS + 1)
        + MIGRATION_POD * 2
        + SYSTEM_PODS
        + (MONITORING_PODS if monitoring else PodSize(0, 0))
    )


def capacity_problem(
    api_max_replicas: int, notifier_replicas: int, groups: list[NodeGroupCapacity], *, monitoring: bool
) -> str | None:
    """Why the API's HPA ceiling cannot be met by the node groups at their maxSize, or None when it can."""
    usable = usable_capacity(groups, monitoring=monitoring)
    need = requested(api_max_replicas, notifier_replicas, monitoring=monitoring)
    if _fits(need, usable):
        return None
    fits = 0
    while fits < api_max_replicas and _fits(requested(fits + 1, notifier_replicas, monitoring=monitoring), usable):
        fits += 1
    return (
        f"{api_max_replicas} API pods at the HPA ceiling ({API_POD.cpu} CPU / {API_POD.memory} each), with the "
        f"other pods, request {need.cpu_millicores}m CPU and {need.memory_mib}Mi, but the node groups at maxSize "
        f"(cluster.nodeGroups[].maxSize = {[g.max_size for g in groups]}) leave {usable.cpu_millicores}m and "
        f"{usable.memory_mib}Mi to pods; allowed: apps.apiMaxReplicas of at most {fits}, or larger node groups"
    )


def _fits(need: PodSize, usable: PodSize) -> bool:
    return need.cpu_millicores <= usable.cpu_millicores and need.memory_mib <= usable.memory_mib
