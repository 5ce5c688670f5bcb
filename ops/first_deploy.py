"""Deploy a stack in the order that works on an empty account: the image repositories alone first, then both app
images built (or loaded) and pushed to them, then the stack's images.* set to that tag, then the whole stack.

A plain `pulumi up` on a new stack cannot do this: the repositories and the workloads that pull from them are in
one program, and nothing can be pushed before the repositories exist. Every step is idempotent, so the command is
also how a later release is deployed; CI runs it with `--no-up` and then its own `pulumi up` step.

    python -m ops.first_deploy --stack dev                 # build from this checkout, push, pulumi up
    python -m ops.first_deploy --stack dev --dry-run       # print the commands only
    python -m ops.first_deploy --stack prod --tag "$GITHUB_SHA" --images-tar images.tar --no-up     # CI

Needs: the Pulumi CLI (logged in), the AWS CLI and Docker, with credentials for the stack's account.

Before any of it, the account's Elastic IP quota in the stack's region is checked against what the stack allocates
(a NAT gateway's address per NAT, a media address per public subnet with telemedicine): prod needs 6 and a new
account allows 5, which `pulumi up` would otherwise find out half-way through creating the network.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from components.cluster import ami_type
from components.image_registry import APPS, BOOTSTRAP_ENV, kebab, repository_name
from preview.graph import PROJECT, ROOT, stack_settings

REGISTRY_TYPE = "clinic:index:ImageRegistry"
REPOSITORY_TYPE = "aws:ecr/repository:Repository"
LIFECYCLE_TYPE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"


def local_image(app: str, tag: str) -> str:
    """The name an image is built under on the machine (and saved under by CI's images job)."""
    return f"clinic-{kebab(app)}:{tag}"


def registry_targets(stack: str) -> list[str]:
    """The URNs of the ImageRegistry component and everything in it (__main__.py names it `clinic-<stack>-images`).
    A targeted update must name a new resource's parents too, or it refuses to create it."""
    prefix = f"urn:pulumi:{stack}::{PROJECT}::"
    component = f"clinic-{stack}-images"
    urns = [f"{prefix}{REGISTRY_TYPE}::{component}"]
    for app in APPS:
        urns.append(f"{prefix}{REGISTRY_TYPE}${REPOSITORY_TYPE}::{component}-{kebab(app)}")
        urns.append(f"{prefix}{REGISTRY_TYPE}${REPOSITORY_TYPE}${LIFECYCLE_TYPE}::{component}-{kebab(app)}-lifecycle")
    return urns


@dataclass(frozen=True)
class Plan:
    stack: str
    """The stack as Pulumi names it (`dev` or `org/dev`)."""
    tag: str
    """The tag the images are pushed under and images.* are set to."""
    region: str
    """The stack's aws:region."""
    repositories: dict[str, str]
    """ECR repository name per app."""
    images_tar: Path | None
    """`docker save` output holding the local images (CI); None builds them from apps/."""
    platform: str
    """What the nodes run (`linux/amd64` or `linux/arm64`): a laptop may be of another architecture."""
    up: bool
    """Finish with `pulumi up` (CI leaves that to its own Pulumi step)."""
    addresses: AddressNeed
    """The Elastic IPs the stack allocates."""


@dataclass(frozen=True)
class AddressNeed:
    """The Elastic IPs a stack allocates, and the tags that mark them as its own (components/network.py)."""

    nat: int
    """One per NAT gateway: network.azCount with natMode per-az, else 1."""
    media: int
    """One per public subnet when telemedicine is on (the videobridge's NLB), else 0."""
    tags: dict[str, str]
    """Tags every one of the stack's addresses carries (`project`, `stack`)."""

    @property
    def total(self) -> int:
        return self.nat + self.media


# Service Quotas' code of "EC2-VPC Elastic IPs", named in the error so the request can be filed straight away.
EIP_QUOTA_CODE = "L-0263D0A3"


def check_elastic_ips(need: AddressNeed, ec2: Any, region: str) -> str:
    """What the check found, or SystemExit naming the shortfall. The stack's own addresses (a re-run) count as
    already there; every other address in the region counts against the same quota."""
    attributes = ec2.describe_account_attributes(AttributeNames=["vpc-max-elastic-ips"])["AccountAttributes"]
    limit = int(attributes[0]["AttributeValues"][0]["AttributeValue"])
    ours = others = 0
    for address in ec2.describe_addresses()["Addresses"]:
        tags = {t["Key"]: t["Value"] for t in address.get("Tags", [])}
        if all(tags.get(k) == v for k, v in need.tags.items()):
            ours += 1
        else:
            others += 1
    missing = max(0, need.total - ours)
    if missing and others + ours + missing > limit:
        raise SystemExit(
            f"the stack needs {need.total} Elastic IPs in {region} ({need.nat} for NAT gateways, {need.media} for "
            f"the video service), {ours} of them already allocated; the account allows {limit} there and "
            f"{others} are taken by other things. Ask for at least {others + ours + missing} (Service Quotas, "
            f"Amazon EC2, 'EC2-VPC Elastic IPs', quota code {EIP_QUOTA_CODE}), or release unused addresses, then "
            "run this again"
        )
    return f"{need.total} needed, {ours} allocated already, {others} used by others, quota {limit}"


Runner = Callable[..., subprocess.CompletedProcess]


def deploy(plan: Plan, run: Runner) -> None:
    short_stack = plan.stack.rsplit("/", 1)[-1]
    targets = [arg for urn in registry_targets(short_stack) for arg in ("--target", urn)]
    print(f"1/5 the image repositories of {plan.stack}: {', '.join(plan.repositories.values())}")
    run(["pulumi", "up", "--stack", plan.stack, "--yes", *targets], env={**os.environ, BOOTSTRAP_ENV: "1"})

    account = run(
        ["aws", "sts", "get-caller-identity", "--query", "Account", "--output", "text"], capture=True
    ).stdout.strip()
    host = f"{account}.dkr.ecr.{plan.region}.amazonaws.com"
    password = run(["aws", "ecr", "get-login-password", "--region", plan.region], capture=True).stdout
    run(["docker", "login", "--username", "AWS", "--password-stdin", host], input=password)

    print(f"2/5 the images, tag {plan.tag}")
    if plan.images_tar:
        run(["docker", "load", "--input", str(plan.images_tar)])
    else:
        for app, directory in APPS.items():
            run(
                [
                    "docker",
                    "build",
                    "--pull",
                    "--platform",
                    plan.platform,
                    "--file",
                    f"apps/{directory}/Dockerfile",
                    "--tag",
                    local_image(app, plan.tag),
                    "apps/",
                ],
                cwd=ROOT,
            )

    print(f"3/5 push to {host}")
    for app, repository in plan.repositories.items():
        # Tags are immutable: an image already pushed under this tag stays (a re-run, or prod after dev).
        found = run(
            [
                "aws",
                "ecr",
                "describe-images",
                "--region",
                plan.region,
                "--repository-name",
                repository,
                "--image-ids",
                f"imageTag={plan.tag}",
            ],
            check=False,
            capture=True,
        )
        if found.returncode == 0:
            print(f"    {repository}:{plan.tag} is already there")
            continue
        remote = f"{host}/{repository}:{plan.tag}"
        run(["docker", "tag", local_image(app, plan.tag), remote])
        run(["docker", "push", remote])

    print(f"4/5 images.* of {plan.stack} = {plan.tag}")
    for app in APPS:
        run(["pulumi", "config", "set", "--stack", plan.stack, "--path", f"{PROJECT}:images.{app}", plan.tag])

    if plan.up:
        print(f"5/5 pulumi up {plan.stack}, with the policy pack")
        if not (ROOT / "policy" / "venv").is_dir():
            run([sys.executable, "-m", "venv", "policy/venv"], cwd=ROOT)
            run(["policy/venv/bin/pip", "install", "-r", "policy/requirements.txt"], cwd=ROOT)
        run(["pulumi", "up", "--stack", plan.stack, "--yes", "--policy-pack", "policy"], cwd=ROOT)
    else:
        print("5/5 skipped (--no-up)")


def subprocess_runner(dry_run: bool) -> Runner:
    def run(
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        input: str | None = None,
        capture: bool = False,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        if dry_run:
            extra = f"{BOOTSTRAP_ENV}=1 " if env and env.get(BOOTSTRAP_ENV) else ""
            print(f"    $ {extra}{shlex.join(cmd)}")
            out = "<account>" if cmd[:3] == ["aws", "sts", "get-caller-identity"] else ""
            return subprocess.CompletedProcess(cmd, 1 if "describe-images" in cmd else 0, out, "")
        return subprocess.run(
            list(cmd),
            env=env,
            input=input,
            text=True,
            check=check,
            cwd=cwd,
            stdout=subprocess.PIPE if capture else None,
        )

    return run


def current_tag() -> str:
    """The checkout's commit; refused when apps/ has uncommitted changes (the tag would not say what was built)."""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "apps"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    if dirty:
        raise SystemExit(
            f"--tag is needed: apps/ has uncommitted changes, so the commit id would not name what is built:\n{dirty}"
        )
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.first_deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="dev, prod (or org/dev): Pulumi.<stack>.yaml is read")
    parser.add_argument("--tag", help="image tag (default: the current commit, 12 characters)")
    parser.add_argument(
        "--images-tar",
        type=Path,
        help="load clinic-api:<tag>, clinic-notifier:<tag> and clinic-file-processor:<tag> from this `docker save` "
        "file instead of building them",
    )
    parser.add_argument("--no-up", dest="up", action="store_false", help="stop after setting images.*")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    return parser


def node_platform(instance_types: Sequence[Sequence[str]]) -> str:
    """The one platform all node groups run; the images are built for it."""
    platforms = {
        "linux/arm64" if ami_type(types).startswith("AL2023_ARM") else "linux/amd64" for types in instance_types
    }
    if len(platforms) != 1:
        raise SystemExit(
            f"cluster.nodeGroups mix architectures ({', '.join(sorted(platforms))}): the images are "
            "built for one; allowed: node groups all Graviton or all x86"
        )
    return platforms.pop()


def plan_from_args(args: argparse.Namespace) -> Plan:
    settings = stack_settings(args.stack.rsplit("/", 1)[-1])
    azs = settings.network.az_count
    return Plan(
        stack=args.stack,
        tag=args.tag or current_tag(),
        region=settings.region,
        repositories={app: repository_name(settings.cluster_name, app) for app in APPS},
        images_tar=args.images_tar,
        platform=node_platform([g.instance_types for g in settings.cluster.node_groups]),
        up=args.up,
        addresses=AddressNeed(
            nat=azs if settings.network.nat_mode == "per-az" else 1,
            media=azs if settings.telemedicine.enabled else 0,
            tags={"project": "clinic-platform", "stack": settings.stack},
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    plan = plan_from_args(args)
    if args.dry_run:
        print(f"0/5 Elastic IP quota in {plan.region}: not checked (--dry-run); the stack needs {plan.addresses.total}")
    else:
        found = check_elastic_ips(plan.addresses, boto3.client("ec2", region_name=plan.region), plan.region)
        print(f"0/5 Elastic IP quota in {plan.region}: {found}")
    try:
        deploy(plan, subprocess_runner(args.dry_run))
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"failed ({error.returncode}): {shlex.join(error.cmd)}") from None


if __name__ == "__main__":
    main()
