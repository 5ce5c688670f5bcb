"""LoadBalancerJanitor: on `pulumi destroy`, after the cluster is gone and before any subnet is deleted, remove what
Kubernetes left in the VPC (see ops/lb_sweep.py). It does nothing on create or update.

A dynamic resource rather than a command run around `pulumi destroy`: it must sit in the graph between the cluster
(which depends on it) and the network (which it depends on), so the engine itself runs it at the right moment.

The same sweep is an emergency command for an interrupted destroy: `python -m ops.lb_sweep` (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from ops.lb_sweep import LoadBalancerSweeper

INPUT_KEYS = ("vpc_id", "cluster_name", "region", "timeout_seconds")


def _sweeper(props: dict[str, Any]) -> LoadBalancerSweeper:
    return LoadBalancerSweeper(
        region=props["region"],
        vpc_id=props["vpc_id"],
        cluster_name=props["cluster_name"],
        timeout_seconds=float(props["timeout_seconds"]),
        endpoint_url=props.get("endpoint_url") or None,
    )


# A dynamic resource, not a command run before `pulumi destroy`: only a node in the graph between the cluster (which
# depends on it) and the subnets/routes/NAT (which it depends on) is deleted by the engine at exactly the right moment,
# after the cluster and before the network, on every destroy and on any replacement of the network.
class LoadBalancerJanitorProvider(pulumi.dynamic.ResourceProvider):
    """Stateless and module-level (Pulumi pickles it by reference; the provider host imports this module from the
    project directory), with no client kept on it."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=f"{props['cluster_name']}@{props['vpc_id']}", outs=dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        # Never a replacement: replacing would run delete, i.e. a sweep, in the middle of an update.
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=dict(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _sweeper(props).sweep()


@dataclass(frozen=True)
class LoadBalancerJanitorArgs:
    vpc_id: pulumi.Input[str]
    """VPC to sweep (nothing outside it is touched)."""
    cluster_name: pulumi.Input[str]
    """Cluster whose load balancers, target groups and security groups are swept (nothing of another cluster)."""
    region: pulumi.Input[str]
    """AWS region."""
    timeout_seconds: pulumi.Input[int] = 900
    """How long to wait for load balancers and their network interfaces to go before failing the destroy."""


class LoadBalancerJanitor(pulumi.dynamic.Resource):
    """Does nothing on create and update; on delete sweeps what the cluster's Kubernetes left in the VPC."""

    vpc_id: pulumi.Output[str]
    """The VPC it sweeps."""
    cluster_name: pulumi.Output[str]
    """The cluster whose leftovers it sweeps."""

    def __init__(self, name: str, args: LoadBalancerJanitorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            LoadBalancerJanitorProvider(),
            name,
            {
                "vpc_id": args.vpc_id,
                "cluster_name": args.cluster_name,
                "region": args.region,
                "timeout_seconds": args.timeout_seconds,
            },
            opts,
        )
