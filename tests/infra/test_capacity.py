"""The API's HPA ceiling, with every other pod, fits on the node groups the autoscaler may grow to."""

import pytest

from limits.capacity import (
    API_POD,
    FILE_PROCESSOR_POD,
    INSTANCE_TYPES,
    NOTIFIER_POD,
    NodeGroupCapacity,
    capacity_problem,
    requested,
    usable_capacity,
)

DEV = [NodeGroupCapacity(("t3.large", "t3a.large"), 3)]
PROD = [NodeGroupCapacity(("m6i.large",), 9)]


def test_allocatable_follows_the_eks_reservations():
    # 2 vCPU: 60m + 10m reserved; 8 GiB x 95 % less 255 + 11 x 35 pods + 100 MiB eviction.
    assert INSTANCE_TYPES["t3.large"].allocatable.cpu_millicores == 1930
    assert INSTANCE_TYPES["t3.large"].allocatable.memory_mib == int(8 * 1024 * 0.95) - 255 - 11 * 35 - 100
    # 4 vCPU: 60 + 10 + 5 + 5.
    assert INSTANCE_TYPES["m6i.xlarge"].allocatable.cpu_millicores == 3920


def test_the_committed_stacks_fit():
    assert capacity_problem(3, 1, DEV, monitoring=False) is None
    assert capacity_problem(12, 2, PROD, monitoring=True) is None


def test_a_ceiling_beyond_the_node_groups_is_refused_with_the_largest_that_fits():
    problem = capacity_problem(20, 1, DEV, monitoring=False)
    assert problem.startswith("20 API pods at the HPA ceiling (250m CPU / 512Mi each)")
    assert "cluster.nodeGroups[].maxSize = [3]" in problem
    assert problem.endswith("allowed: apps.apiMaxReplicas of at most 6, or larger node groups")
    assert capacity_problem(6, 1, DEV, monitoring=False) is None, "the ceiling the message names must fit"
    assert capacity_problem(7, 1, DEV, monitoring=False) is not None


def test_a_mixed_group_is_counted_at_its_smallest_type_and_monitoring_costs_room():
    mixed = [NodeGroupCapacity(("t3.xlarge", "t3.large"), 3)]
    assert usable_capacity(mixed, monitoring=False) == usable_capacity(DEV, monitoring=False)
    assert usable_capacity(DEV, monitoring=True).cpu_millicores < usable_capacity(DEV, monitoring=False).cpu_millicores
    assert requested(3, 1, monitoring=True).memory_mib > requested(3, 1, monitoring=False).memory_mib


def test_clinic_apps_request_what_the_check_counts(dev):
    deployments = {d.inputs["metadata"]["name"]: d for d in dev.of_type("kubernetes:apps/v1:Deployment")}
    for name, size in (
        ("clinic-api", API_POD),
        ("clinic-notifier", NOTIFIER_POD),
        ("clinic-file-processor", FILE_PROCESSOR_POD),
    ):
        requests = deployments[name].inputs["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests == {"cpu": size.cpu, "memory": size.memory}, name


@pytest.mark.parametrize("unknown", ["c5.large"])
def test_an_instance_type_outside_the_table_cannot_be_counted(unknown):
    with pytest.raises(KeyError):
        usable_capacity([NodeGroupCapacity((unknown,), 3)], monitoring=False)
