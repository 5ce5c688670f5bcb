"""VolumeReaper: on `pulumi destroy`, after a PersistentVolumeClaim is deleted and before the EBS CSI driver and the
nodes go, make sure the claim's EBS volume is gone too. It does nothing on create or update.

Deleting a claim whose StorageClass says `reclaimPolicy: Delete` only starts the volume's deletion: the CSI driver
detaches and deletes it later, and nothing in Pulumi waits for that (a StatefulSet's claims are not even deleted by
helm uninstall: their retention policy has the garbage collector do it). If the driver or the nodes are deleted
first, the volume stays, unattached and paid for. The reaper stands between what deletes the claim (the claim, or the
release whose StatefulSet owns it, depends on the reaper) and the driver and nodes (which it depends on): it waits for
the volumes the driver created for that claim, found by the tags the driver puts on them and the StorageClass's own
tags, and deletes one left detached (only the destroy runs it, once the claim's workload is gone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pulumi
import pulumi.dynamic
from botocore.exceptions import ClientError

log = logging.getLogger("clinic.volume_reaper")

# The EBS CSI driver tags every volume it provisions for a claim (external-provisioner's --extra-create-metadata,
# on in the EKS add-on).
PVC_NAME_TAG = "kubernetes.io/created-for/pvc/name"
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
INPUT_KEYS = ("region", "namespace", "claim", "tags", "timeout_seconds")


class VolumesRemain(TimeoutError):
    """The claim's volumes were still there at the deadline."""


def volume_filters(namespace: str, claim: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The claim's volumes, and only this stack's: the StorageClass puts the stack's tags on every volume."""
    wanted = {PVC_NAMESPACE_TAG: namespace, PVC_NAME_TAG: claim, **tags}
    return [{"Name": f"tag:{key}", "Values": [value]} for key, value in sorted(wanted.items())]


def reap(
    ec2: Any, namespace: str, claim: str, tags: Mapping[str, str], *, timeout_seconds: float, poll_seconds: float = 5.0
) -> list[str]:
    """Wait until no volume of the claim exists, deleting any left detached; returns the volume ids seen."""
    filters = volume_filters(namespace, claim, tags)
    deadline = time.monotonic() + timeout_seconds
    seen: list[str] = []
    while True:
        volumes = [
            v
            for page in ec2.get_paginator("describe_volumes").paginate(Filters=filters)
            for v in page["Volumes"]
            if v["State"] != "deleted"
        ]
        seen += [v["VolumeId"] for v in volumes if v["VolumeId"] not in seen]
        if not volumes:
            return seen
        for volume in volumes:
            if volume["State"] == "available":
                try:
                    ec2.delete_volume(VolumeId=volume["VolumeId"])
                    log.info("deleted volume %s left by %s/%s", volume["VolumeId"], namespace, claim)
                except ClientError as error:
                    # The driver may be deleting it at the same moment.
                    if error.response["Error"]["Code"] not in (
                        "InvalidVolume.NotFound",
                        "IncorrectState",
                        "VolumeInUse",
                    ):
                        raise
        if time.monotonic() >= deadline:
            states = ", ".join(f"{v['VolumeId']} ({v['State']})" for v in volumes)
            raise VolumesRemain(
                f"timed out after {timeout_seconds:g} s waiting for the volumes of "
                f"{namespace}/{claim} to be deleted: {states}; detach and delete them "
                "(aws ec2 delete-volume --volume-id ...) before destroying the nodes"
            )
        time.sleep(poll_seconds)


class VolumeReaperProvider(pulumi.dynamic.ResourceProvider):
    """Stateless and module-level (Pulumi pickles it by reference), with no client kept on it."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=f"{props['namespace']}/{props['claim']}", outs=dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        # Never a replacement: replacing would run delete, i.e. delete the volume of a claim in use.
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=dict(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        ec2 = boto3.client("ec2", region_name=props["region"], endpoint_url=props.get("endpoint_url") or None)
        reap(
            ec2,
            props["namespace"],
            props["claim"],
            props.get("tags") or {},
            timeout_seconds=float(props["timeout_seconds"]),
        )


@dataclass(frozen=True)
class VolumeReaperArgs:
    region: pulumi.Input[str]
    """AWS region of the volumes."""
    namespace: pulumi.Input[str]
    """Namespace of the claim."""
    claim: pulumi.Input[str]
    """Name of the claim."""
    tags: pulumi.Input[Mapping[str, str]] = field(default_factory=dict)
    """Tags the StorageClass puts on its volumes (the stack's): nothing without them is touched."""
    timeout_seconds: pulumi.Input[int] = 600
    """How long destroy waits for the volumes to go before failing."""


class VolumeReaper(pulumi.dynamic.Resource):
    """Does nothing on create and update; on delete waits until the claim's EBS volumes are gone."""

    def __init__(self, name: str, args: VolumeReaperArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            VolumeReaperProvider(),
            name,
            {
                "region": args.region,
                "namespace": args.namespace,
                "claim": args.claim,
                "tags": args.tags,
                "timeout_seconds": args.timeout_seconds,
            },
            opts,
        )
