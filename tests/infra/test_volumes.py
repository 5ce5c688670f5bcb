"""Destroy leaves no EBS volume behind: every claim (a PersistentVolumeClaim, or one a release's StatefulSet makes)
is deleted, and its volume waited for (the VolumeReaper), before the EBS CSI driver and the nodes; the reaper's wait
and clean-up against a moto server."""

import boto3
import pytest

from components.monitoring import PROMETHEUS_CLAIM, PROMETHEUS_VOLUME
from components.volume_reaper import PVC_NAME_TAG, PVC_NAMESPACE_TAG, VolumesRemain, reap
from tests.infra.conftest import MOTO_REGION as REGION

CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
REAPER = "pulumi-python:dynamic:Resource"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def ebs_csi_addon(graph):
    return next(a for a in graph.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "aws-ebs-csi-driver")


def reaper_of(graph, namespace, claim):
    found = [
        r for r in graph.of_type(REAPER) if r.inputs.get("claim") == claim and r.inputs.get("namespace") == namespace
    ]
    assert len(found) == 1, f"{namespace}/{claim} needs exactly one VolumeReaper, found {[r.name for r in found]}"
    return found[0]


def claims_and_their_deleters(graph):
    """Every claim the stack makes, with what deletes it: a claim resource itself, or a release whose StatefulSet
    (Prometheus') owns it."""
    found = [((c.inputs["metadata"]["namespace"], c.inputs["metadata"]["name"]), c) for c in graph.of_type(CLAIM)]
    for release in graph.of_type("kubernetes:helm.sh/v3:Release"):
        storage = release.inputs["values"].get("prometheus", {}).get("prometheusSpec", {}).get("storageSpec")
        if storage:
            found.append(((release.inputs["namespace"], PROMETHEUS_CLAIM), release))
    return found


def test_every_claim_and_its_volume_go_before_the_csi_driver_and_the_nodes(prod):
    found = claims_and_their_deleters(prod)
    assert found, "prod's Prometheus keeps its data on a claim"
    order = [r.urn for r in prod.delete_order()]
    for (namespace, claim), deleter in found:
        reaper = reaper_of(prod, namespace, claim)
        chain = [deleter, reaper, ebs_csi_addon(prod)]
        assert prod.deleted_before(deleter, reaper) and prod.deleted_before(reaper, ebs_csi_addon(prod))
        assert [order.index(r.urn) for r in chain] == sorted(order.index(r.urn) for r in chain)
        for group in prod.of_type(NODE_GROUP):
            assert prod.deleted_before(reaper, group), f"{reaper.name} must finish before {group.name} goes"
        assert reaper.inputs["tags"]["stack"] == "prod" and reaper.inputs["region"] == "eu-west-1"


def test_prometheus_claim_is_deleted_with_its_statefulset_on_a_storage_class_that_deletes_volumes(prod):
    release = next(r for r in prod.of_type("kubernetes:helm.sh/v3:Release") if r.name.endswith("monitoring-release"))
    spec = release.inputs["values"]["prometheus"]["prometheusSpec"]
    template = spec["storageSpec"]["volumeClaimTemplate"]
    # The StatefulSet names its claim <template>-<statefulset>-<ordinal>: what the reaper looks for.
    assert PROMETHEUS_CLAIM == f"{template['metadata']['name']}-prometheus-kube-prometheus-stack-prometheus-0"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete", "helm uninstall alone keeps it"
    storage_class = prod.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert template["spec"]["storageClassName"] == storage_class.inputs["metadata"]["name"]
    assert storage_class.inputs["reclaimPolicy"] == "Delete"
    assert prod.depends_on(release, storage_class)
    # The reaper finds the volume by the StorageClass's tags, so the two must carry the same ones.
    reaper = reaper_of(prod, "monitoring", PROMETHEUS_CLAIM)
    tagged = {
        v.split("=", 1)[0]: v.split("=", 1)[1]
        for k, v in storage_class.inputs["parameters"].items()
        if k.startswith("tagSpecification_")
    }
    assert tagged == reaper.inputs["tags"]


def test_the_volume_template_name_is_the_operators_default():
    """Pinned to what the operator names it unset (prometheus-<Prometheus>-db), so existing claims keep theirs."""
    assert PROMETHEUS_VOLUME == "prometheus-kube-prometheus-stack-prometheus-db"


@pytest.fixture(scope="module")
def ec2(endpoint):
    return boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)


def volume(ec2, claim, stack="prod", namespace="monitoring"):
    tags = [
        {"Key": PVC_NAME_TAG, "Value": claim},
        {"Key": PVC_NAMESPACE_TAG, "Value": namespace},
        {"Key": "stack", "Value": stack},
        {"Key": "project", "Value": "clinic-platform"},
    ]
    return ec2.create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=10,
        VolumeType="gp3",
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )["VolumeId"]


def exists(ec2, volume_id):
    return any(v["VolumeId"] == volume_id for v in ec2.describe_volumes()["Volumes"])


STACK_TAGS = {"stack": "prod", "project": "clinic-platform"}


def test_a_detached_volume_of_the_claim_is_deleted_and_no_other(ec2):
    mine = volume(ec2, "data-a")
    other_stack = volume(ec2, "data-a", stack="dev")
    other_claim = volume(ec2, "data-b")
    assert reap(ec2, "monitoring", "data-a", STACK_TAGS, timeout_seconds=5, poll_seconds=0.1) == [mine]
    assert not exists(ec2, mine)
    assert exists(ec2, other_stack) and exists(ec2, other_claim)


def test_nothing_to_wait_for_returns_at_once(ec2):
    assert reap(ec2, "monitoring", "never-provisioned", STACK_TAGS, timeout_seconds=1, poll_seconds=0.1) == []


def test_a_volume_still_attached_at_the_deadline_fails_the_destroy_naming_it(ec2):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.large", Placement={"AvailabilityZone": f"{REGION}a"}
    )["Instances"][0]["InstanceId"]
    stuck = volume(ec2, "data-c")
    ec2.attach_volume(VolumeId=stuck, InstanceId=instance, Device="/dev/xvdf")
    with pytest.raises(VolumesRemain, match=rf"monitoring/data-c to be deleted: {stuck} \(in-use\)"):
        reap(ec2, "monitoring", "data-c", STACK_TAGS, timeout_seconds=0.3, poll_seconds=0.1)
    assert exists(ec2, stuck), "an attached volume is never deleted by the reaper"
