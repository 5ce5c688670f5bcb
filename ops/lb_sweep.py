"""Find and delete what Kubernetes created for one EKS cluster in one VPC: ALBs/NLBs, classic ELBs, their target
groups and security groups; then wait until the load balancers' network interfaces are gone.

None of these are in Pulumi's state, and any one left behind makes deleting the subnets and the VPC fail with
DependencyViolation. Pure boto3 so it runs in the janitor's delete (components/lb_janitor.py), from the command line,
and against moto. The emergency command, for a destroy that was interrupted:

    python -m ops.lb_sweep --region eu-west-1 --vpc-id vpc-0123 --cluster-name clinic-dev [--dry-run]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

log = logging.getLogger("clinic.lb_sweep")

CONTROLLER_TAG = "elbv2.k8s.aws/cluster"
LEGACY_CONTROLLER_TAG = "ingress.k8s.aws/cluster"
IN_TREE_SG_PREFIX = "k8s-elb-"
# Classic ELB ENIs are described "ELB <name>", ALB/NLB ones "ELB app/<name>/<id>" and "ELB net/<name>/<id>".
ENI_DESCRIPTION_PREFIX = "ELB "
MAX_BACKOFF_SECONDS = 30


def cluster_tag(cluster_name: str) -> str:
    return f"kubernetes.io/cluster/{cluster_name}"


_GONE = ("LoadBalancerNotFound", "TargetGroupNotFound")


class SweepTimeout(TimeoutError):
    """Raised when leftovers are still there at the deadline; `remaining` lists exactly what."""

    def __init__(self, seconds: float, remaining: list[str], reason: str = ""):
        self.remaining, self.reason = remaining, reason
        lines = "\n".join(f"  - {item}" for item in remaining)
        super().__init__(
            f"timed out after {seconds:g} s {reason}; these are still in the VPC and would block deleting it:\n{lines}"
        )


@dataclass
class SweepPlan:
    """What belongs to this cluster in this VPC."""

    load_balancers: dict[str, str] = field(default_factory=dict)
    """ALB/NLB ARN -> name."""
    classic_load_balancers: list[str] = field(default_factory=list)
    """Classic ELB names."""
    target_groups: list[str] = field(default_factory=list)
    """Target group ARNs."""
    security_groups: dict[str, str] = field(default_factory=dict)
    """Security group id -> name."""

    def is_empty(self) -> bool:
        return not (self.load_balancers or self.classic_load_balancers or self.target_groups or self.security_groups)

    def describe(self) -> list[str]:
        return (
            [f"load balancer {arn}" for arn in self.load_balancers]
            + [f"classic load balancer {name}" for name in self.classic_load_balancers]
            + [f"target group {arn}" for arn in self.target_groups]
            + [f"security group {sg} ({name})" for sg, name in self.security_groups.items()]
        )


@dataclass
class SweepReport:
    """What was deleted."""

    plan: SweepPlan
    """Everything in it is deleted."""
    revoked_rules: int = 0
    """Rules in other security groups that referenced a deleted group."""
    waited_for_interfaces: list[str] = field(default_factory=list)
    """ELB network interface ids seen in the VPC for this sweep, all gone when it returns."""
    freed_addresses: list[str] = field(default_factory=list)
    """Elastic IP allocations those interfaces held (an NLB's static addresses): free once they are gone, so the
    stack can release them after the janitor."""


def _is_ours(tags: dict[str, str], cluster_name: str) -> bool:
    # "owned" (not "shared", which the VPC and subnets carry): the in-tree provider created it for this cluster.
    return (
        tags.get(CONTROLLER_TAG) == cluster_name
        or tags.get(LEGACY_CONTROLLER_TAG) == cluster_name
        or tags.get(cluster_tag(cluster_name)) == "owned"
    )


def _tags(items: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items}


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class LoadBalancerSweeper:
    def __init__(
        self,
        *,
        region: str,
        vpc_id: str,
        cluster_name: str,
        timeout_seconds: float = 900,
        poll_seconds: float = 5,
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
        clients: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not vpc_id.startswith("vpc-"):
            raise ValueError(f"vpc_id = {vpc_id!r} is invalid; allowed: a VPC id such as vpc-0123456789abcdef0")
        if not cluster_name:
            raise ValueError("cluster_name is empty; allowed: the EKS cluster's name")
        self.vpc_id, self.cluster_name = vpc_id, cluster_name
        if timeout_seconds <= 0 or poll_seconds <= 0:
            raise ValueError(f"timeout_seconds = {timeout_seconds!r}, poll_seconds = {poll_seconds!r}; allowed: > 0")
        self.timeout_seconds, self.poll_seconds, self.sleep = timeout_seconds, poll_seconds, sleep
        session = session or boto3.session.Session(region_name=region)
        clients = clients or {}
        self.elbv2 = clients.get("elbv2") or session.client("elbv2", endpoint_url=endpoint_url)
        self.elb = clients.get("elb") or session.client("elb", endpoint_url=endpoint_url)
        self.ec2 = clients.get("ec2") or session.client("ec2", endpoint_url=endpoint_url)

    # -- discovery -------------------------------------------------------------------------------------------

    def plan(self) -> SweepPlan:
        plan = SweepPlan(
            load_balancers=self._load_balancers(),
            classic_load_balancers=self._classic_load_balancers(),
            target_groups=self._target_groups(),
        )
        plan.security_groups = self._security_groups(plan.classic_load_balancers)
        return plan

    def _load_balancers(self) -> dict[str, str]:
        found = {}
        for page in self.elbv2.get_paginator("describe_load_balancers").paginate():
            found.update(
                {
                    lb["LoadBalancerArn"]: lb["LoadBalancerName"]
                    for lb in page["LoadBalancers"]
                    if lb.get("VpcId") == self.vpc_id
                }
            )
        return {arn: name for arn, name in found.items() if arn in self._elbv2_ours(list(found))}

    def _target_groups(self) -> list[str]:
        arns = []
        for page in self.elbv2.get_paginator("describe_target_groups").paginate():
            arns += [tg["TargetGroupArn"] for tg in page["TargetGroups"] if tg.get("VpcId") == self.vpc_id]
        ours = self._elbv2_ours(arns)
        return [arn for arn in arns if arn in ours]

    def _elbv2_ours(self, arns: list[str]) -> set[str]:
        ours = set()
        for chunk in _chunks(arns, 20):  # describe_tags takes at most 20 ARNs
            for description in self._elbv2_tag_descriptions(chunk):
                if _is_ours(_tags(description.get("Tags", [])), self.cluster_name):
                    ours.add(description["ResourceArn"])
        return ours

    def _elbv2_tag_descriptions(self, arns: list[str]) -> list[dict[str, Any]]:
        # One ARN deleted between describe and describe_tags (likely while waiting) fails the whole batch: then ask
        # one by one and skip the ones that are gone.
        try:
            return self.elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
        except ClientError as error:
            if error.response["Error"]["Code"] not in _GONE:
                raise
            if len(arns) == 1:
                return []
        return [d for arn in arns for d in self._elbv2_tag_descriptions([arn])]

    def _classic_load_balancers(self) -> list[str]:
        names = []
        for page in self.elb.get_paginator("describe_load_balancers").paginate():
            names += [
                lb["LoadBalancerName"] for lb in page["LoadBalancerDescriptions"] if lb.get("VPCId") == self.vpc_id
            ]
        ours = []
        for chunk in _chunks(names, 20):
            for description in self.elb.describe_tags(LoadBalancerNames=chunk)["TagDescriptions"]:
                if _tags(description.get("Tags", [])).get(cluster_tag(self.cluster_name)) == "owned":
                    ours.append(description["LoadBalancerName"])
        return ours

    def _vpc_security_groups(self) -> list[dict[str, Any]]:
        groups = []
        for page in self.ec2.get_paginator("describe_security_groups").paginate(
            Filters=[{"Name": "vpc-id", "Values": [self.vpc_id]}]
        ):
            groups += page["SecurityGroups"]
        return groups

    def _security_groups(self, classic_names: list[str]) -> dict[str, str]:
        """The controller's SGs (tagged with this cluster) and the in-tree provider's `k8s-elb-<lb>` SGs. Never
        the EKS cluster or node SGs, which carry `kubernetes.io/cluster/<name>` too but are not named k8s-elb-*."""
        found = {}
        for group in self._vpc_security_groups():
            tags, name = _tags(group.get("Tags", [])), group["GroupName"]
            controller = tags.get(CONTROLLER_TAG) == self.cluster_name
            # "owned", as the in-tree provider tags the groups it creates and as it checks before deleting one
            # (cloud-provider-aws isOwnedSecurityGroup): a "shared" group may still be held by a load balancer
            # that is not this cluster's, and deleting it would fail until the sweep times out.
            in_tree = name.startswith(IN_TREE_SG_PREFIX) and (
                tags.get(cluster_tag(self.cluster_name)) == "owned" or name[len(IN_TREE_SG_PREFIX) :] in classic_names
            )
            if controller or in_tree:
                found[group["GroupId"]] = name
        return found

    def elb_interfaces(self, plan: SweepPlan) -> list[dict[str, Any]]:
        """ELB network interfaces in the VPC that hold up the subnets and belong to this sweep: those of the load
        balancers it deleted, those attached to one of this cluster's security groups (an ALB the controller deleted
        just before the cluster went), and those of a load balancer that no longer exists at all (AWS is releasing
        them; they block the subnets whoever made them, and waiting deletes nothing). ENIs of a load balancer that
        still exists and is not this cluster's are left out."""
        ours = set(plan.load_balancers.values()) | set(plan.classic_load_balancers)
        existing = self._all_vpc_load_balancer_names()
        interfaces = []
        for page in self.ec2.get_paginator("describe_network_interfaces").paginate(
            Filters=[
                {"Name": "vpc-id", "Values": [self.vpc_id]},
                {"Name": "description", "Values": [f"{ENI_DESCRIPTION_PREFIX}*"]},
            ]
        ):
            for eni in page["NetworkInterfaces"]:
                lb_name = _lb_name_from_description(eni.get("Description", ""))
                groups = {g["GroupId"] for g in eni.get("Groups", [])}
                if lb_name in ours or groups & set(plan.security_groups) or lb_name not in existing:
                    interfaces.append(eni)
        return interfaces

    def _all_vpc_load_balancer_names(self) -> set[str]:
        names = set()
        for page in self.elbv2.get_paginator("describe_load_balancers").paginate():
            names |= {lb["LoadBalancerName"] for lb in page["LoadBalancers"] if lb.get("VpcId") == self.vpc_id}
        for page in self.elb.get_paginator("describe_load_balancers").paginate():
            names |= {
                lb["LoadBalancerName"] for lb in page["LoadBalancerDescriptions"] if lb.get("VPCId") == self.vpc_id
            }
        return names

    # -- what is still there ----------------------------------------------------------------------------------

    def remaining(self, plan: SweepPlan) -> list[str]:
        """Everything of the plan that still exists, plus the ELB network interfaces still in the VPC."""
        left = [f"load balancer {arn}" for arn in self._load_balancers() if arn in plan.load_balancers]
        left += [
            f"classic load balancer {n}" for n in self._classic_load_balancers() if n in plan.classic_load_balancers
        ]
        left += [f"target group {arn}" for arn in self._target_groups() if arn in plan.target_groups]
        existing_groups = {g["GroupId"] for g in self._vpc_security_groups()}
        left += [f"security group {sg} ({name})" for sg, name in plan.security_groups.items() if sg in existing_groups]
        left += [
            f"network interface {e['NetworkInterfaceId']} ({e.get('Description', '')}{_held_address(e)})"
            for e in self.elb_interfaces(plan)
        ]
        return left

    def _timeout(self, plan: SweepPlan, reason: str) -> SweepTimeout:
        log.error("timed out %s", reason)
        return SweepTimeout(self.timeout_seconds, self.remaining(plan), reason)

    # -- deletion --------------------------------------------------------------------------------------------

    def sweep(self) -> SweepReport:
        deadline = time.monotonic() + self.timeout_seconds
        plan = self.plan()
        report = SweepReport(plan=plan)
        interfaces = self.elb_interfaces(plan)
        seen = {eni["NetworkInterfaceId"] for eni in interfaces}
        # An NLB's Elastic IPs stay associated with its interfaces until AWS releases them; the stack releases the
        # addresses only after the janitor, so they must be free when it returns (the wait below sees to that).
        report.freed_addresses = sorted(
            {
                eni["Association"]["AllocationId"]
                for eni in interfaces
                if (eni.get("Association") or {}).get("AllocationId")
            }
        )
        if plan.is_empty() and not seen:
            log.info("nothing of cluster %s left in %s", self.cluster_name, self.vpc_id)
            return report
        log.info(
            "sweeping cluster %s in %s: %s",
            self.cluster_name,
            self.vpc_id,
            "; ".join(plan.describe()) or "only network interfaces to wait for",
        )

        for arn in plan.load_balancers:
            log.info("deleting load balancer %s (its listeners go with it)", arn)
            self._ignore_missing(lambda: self.elbv2.delete_load_balancer(LoadBalancerArn=arn))
        for name in plan.classic_load_balancers:
            log.info("deleting classic load balancer %s", name)
            self._ignore_missing(lambda: self.elb.delete_load_balancer(LoadBalancerName=name))
        for arn in plan.load_balancers:
            self._wait_load_balancer_deleted(deadline, plan, arn)
        for name in plan.classic_load_balancers:
            # Classic ELB has no "deleted" waiter: poll until it answers LoadBalancerNotFound.
            self._wait(
                deadline, plan, f"for classic load balancer {name} to go", lambda: not self._classic_exists(name)
            )

        for arn in plan.target_groups:
            log.info("deleting target group %s", arn)
            self._retry(
                deadline,
                plan,
                f"target group {arn}",
                ("ResourceInUse",),
                lambda: self.elbv2.delete_target_group(TargetGroupArn=arn),
            )

        # ELB keeps its ENIs for minutes after the load balancer is gone; they hold the SGs (DependencyViolation) and
        # the subnets, so wait for them before the SGs instead of burning retries.
        still = self.elb_interfaces(plan)
        held = [eni["NetworkInterfaceId"] for eni in still]
        report.freed_addresses = sorted(
            set(report.freed_addresses)
            | {
                eni["Association"]["AllocationId"]
                for eni in still
                if (eni.get("Association") or {}).get("AllocationId")
            }
        )
        if held:
            log.info("waiting for ELB network interfaces to be released: %s", ", ".join(held))
        report.waited_for_interfaces = sorted(seen | set(held))
        self._wait(
            deadline, plan, "for the ELB network interfaces to be released", lambda: not self.elb_interfaces(plan)
        )

        report.revoked_rules = self._revoke_references(set(plan.security_groups))
        for group_id, name in plan.security_groups.items():
            log.info("deleting security group %s (%s)", group_id, name)
            self._retry(
                deadline,
                plan,
                f"security group {group_id} ({name})",
                ("DependencyViolation",),
                lambda: self.ec2.delete_security_group(GroupId=group_id),
            )
        log.info("swept cluster %s in %s: %s", self.cluster_name, self.vpc_id, "; ".join(plan.describe()) or "-")
        return report

    def _wait_load_balancer_deleted(self, deadline: float, plan: SweepPlan, arn: str) -> None:
        # One ARN per call: with several, the first LoadBalancerNotFound would end the waiter for all of them.
        attempts = max(1, int((deadline - time.monotonic()) / self.poll_seconds))
        try:
            self.elbv2.get_waiter("load_balancers_deleted").wait(
                LoadBalancerArns=[arn], WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": attempts}
            )
        except WaiterError as error:
            if "Max attempts exceeded" not in str(error):
                raise  # an AWS error (AccessDenied, throttling), not the deadline: say so rather than "timed out"
            raise self._timeout(plan, f"waiting for load balancer {arn} to go") from error

    def _classic_exists(self, name: str) -> bool:
        try:
            self.elb.describe_load_balancers(LoadBalancerNames=[name])
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] in ("LoadBalancerNotFound", "AccessPointNotFound"):
                return False
            raise

    def _revoke_references(self, doomed: set[str]) -> int:
        """The controller opens the node SG to its backend SG; such a rule in another group blocks deleting it."""
        revoked = 0
        for group in self._vpc_security_groups():
            if group["GroupId"] in doomed:
                continue
            for key, revoke in (
                ("IpPermissions", self.ec2.revoke_security_group_ingress),
                ("IpPermissionsEgress", self.ec2.revoke_security_group_egress),
            ):
                for permission in group.get(key, []):
                    pairs = [p for p in permission.get("UserIdGroupPairs", []) if p.get("GroupId") in doomed]
                    if not pairs:
                        continue
                    rule = {k: v for k, v in permission.items() if k in ("IpProtocol", "FromPort", "ToPort")}
                    log.info(
                        "revoking %s rule in %s that references %s",
                        key,
                        group["GroupId"],
                        ", ".join(p["GroupId"] for p in pairs),
                    )
                    revoke(
                        GroupId=group["GroupId"],
                        IpPermissions=[{**rule, "UserIdGroupPairs": [{"GroupId": p["GroupId"]} for p in pairs]}],
                    )
                    revoked += len(pairs)
        return revoked

    @staticmethod
    def _ignore_missing(call: Callable[[], Any]) -> None:
        try:
            call()
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("LoadBalancerNotFound", "AccessPointNotFound"):
                raise

    def _retry(
        self, deadline: float, plan: SweepPlan, what: str, codes: tuple[str, ...], call: Callable[[], Any]
    ) -> None:
        delay = self.poll_seconds
        while True:
            try:
                call()
                return
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code.startswith("InvalidGroup.NotFound") or code == "TargetGroupNotFound":
                    return
                if code not in codes:
                    raise
                if time.monotonic() + delay > deadline:
                    raise self._timeout(plan, f"deleting {what}: {code}") from error
                log.info("%s: %s, retrying in %.1f s", what, code, delay)
                self.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _wait(self, deadline: float, plan: SweepPlan, what: str, done: Callable[[], bool]) -> None:
        while not done():
            if time.monotonic() + self.poll_seconds > deadline:
                raise self._timeout(plan, f"waiting {what}")
            self.sleep(self.poll_seconds)


def _held_address(eni: dict[str, Any]) -> str:
    public_ip = (eni.get("Association") or {}).get("PublicIp")
    return f", holding Elastic IP {public_ip}" if public_ip else ""


def _lb_name_from_description(description: str) -> str:
    """`ELB app/<name>/<id>`, `ELB net/<name>/<id>` or `ELB <name>` -> <name>."""
    rest = description.removeprefix(ENI_DESCRIPTION_PREFIX)
    return rest.split("/")[1] if rest.startswith(("app/", "net/")) else rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.lb_sweep",
        description="Delete the load balancers, target groups and security groups a "
        "cluster's Kubernetes left in a VPC, and wait for their ENIs.",
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--vpc-id", required=True)
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--timeout", type=float, default=900, help="seconds (default 900)")
    parser.add_argument("--poll", type=float, default=5, help="seconds between checks (default 5)")
    parser.add_argument("--endpoint-url", help="AWS endpoint (an emulator)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        sweeper = LoadBalancerSweeper(
            region=args.region,
            vpc_id=args.vpc_id,
            cluster_name=args.cluster_name,
            timeout_seconds=args.timeout,
            poll_seconds=args.poll,
            endpoint_url=args.endpoint_url,
        )
        if args.dry_run:
            plan = sweeper.plan()
            lines = [f"would delete {item}" for item in plan.describe()]
            lines += [
                f"would wait for network interface {eni['NetworkInterfaceId']} ({eni.get('Description', '')})"
                for eni in sweeper.elb_interfaces(plan)
            ]
            print("\n".join(lines) or "nothing to delete")
            return 0
        report = sweeper.sweep()
    except (SweepTimeout, ValueError, ClientError, BotoCoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(f"deleted {item}" for item in report.plan.describe()) or "nothing to delete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
