"""ops.first_deploy against fake `pulumi`, `aws` and `docker` commands that record what they are asked: the order
that works on an empty account, targets that are exactly the registry's resources, idempotent pushes."""

import json
import os
import subprocess
import sys
import textwrap

import boto3
import pytest

from components.image_registry import BOOTSTRAP_ENV
from ops.first_deploy import AddressNeed, check_elastic_ips, node_platform, registry_targets
from preview.graph import ROOT
from tests.moto_server import moto_server

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    stdin = sys.stdin.read() if args[-1:] == ["--password-stdin"] or "--password-stdin" in args else ""
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps([name, *args, {{"bootstrap": os.environ.get("{env}"), "stdin": stdin}}]) + "\\n")
    if args[:2] == ["sts", "get-caller-identity"]:
        print("210987654321")
    elif args[:2] == ["ecr", "get-login-password"]:
        print("ecr-password")
    elif args[:2] == ["ecr", "describe-images"]:
        sys.exit(0 if args[args.index("--repository-name") + 1] in os.environ["FAKE_PUSHED"].split(",") else 254)
""")


@pytest.fixture(scope="module")
def aws():
    with moto_server("eu-west-1") as endpoint:
        yield endpoint


@pytest.fixture
def ec2(aws):
    client = boto3.client("ec2", region_name="eu-west-1", endpoint_url=aws)
    yield client
    for address in client.describe_addresses()["Addresses"]:
        client.release_address(AllocationId=address["AllocationId"])


def allocate(ec2, count, **tags):
    for _ in range(count):
        spec = (
            [{"ResourceType": "elastic-ip", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        )
        ec2.allocate_address(Domain="vpc", TagSpecifications=spec)


@pytest.fixture
def fake_clis(tmp_path, ec2):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pulumi", "aws", "docker"):
        path = bin_dir / name
        path.write_text(FAKE.format(python=sys.executable, env=BOOTSTRAP_ENV))
        path.chmod(0o755)
    (tmp_path / "log").touch()
    (tmp_path / "endpoint").write_text(ec2.meta.endpoint_url)
    return tmp_path


def run_deploy(fake_clis, *args, pushed=""):
    env = {
        **os.environ,
        "PATH": f"{fake_clis / 'bin'}:{os.environ['PATH']}",
        "FAKE_LOG": str(fake_clis / "log"),
        "FAKE_PUSHED": pushed,
        "PYTHONPATH": str(ROOT),
        "AWS_ENDPOINT_URL": (
            fake_clis / "endpoint"
        ).read_text(),  # boto3's own variable: the quota check asks the moto server
    }
    result = subprocess.run(
        [sys.executable, "-m", "ops.first_deploy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = [json.loads(line) for line in (fake_clis / "log").read_text().splitlines()]
    return result, calls


def test_repositories_first_then_images_pushed_then_config_then_the_whole_stack(fake_clis):
    result, calls = run_deploy(fake_clis, "--stack", "dev", "--tag", "1a2b3c", "--images-tar", "images.tar")
    assert result.returncode == 0, result.stderr
    commands = [c[:-1] for c in calls]
    registry = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
    first = commands[0]
    assert first[:5] == ["pulumi", "up", "--stack", "dev", "--yes"]
    assert first[5::2] == ["--target"] * 7 and first[6::2] == registry_targets("dev"), first
    assert calls[0][-1]["bootstrap"] == "1", "the targeted up must not look up images that are not pushed yet"
    login = next(c for c in calls if c[:2] == ["docker", "login"])
    assert login[-2] == registry and login[-1]["stdin"].strip() == "ecr-password", "the password only on stdin"
    assert ["docker", "load", "--input", "images.tar"] in commands
    for app, name in (("api", "api"), ("notifier", "notifier"), ("fileProcessor", "file-processor")):
        remote = f"{registry}/clinic-dev/{name}:1a2b3c"
        tag, push = ["docker", "tag", f"clinic-{name}:1a2b3c", remote], ["docker", "push", remote]
        assert commands.index(tag) < commands.index(push), app
        config = ["pulumi", "config", "set", "--stack", "dev", "--path", f"clinic-platform:images.{app}", "1a2b3c"]
        assert commands.index(push) < commands.index(config), f"{app}: config set before the image is there"
    last = commands[-1]
    assert last == ["pulumi", "up", "--stack", "dev", "--yes", "--policy-pack", "policy"], last
    assert calls[-1][-1]["bootstrap"] is None, "the full up looks every image up"
    assert not [c for c in commands if c[:2] == ["docker", "build"]], "CI's saved images are loaded, not rebuilt"


def test_an_image_already_pushed_is_left_alone_and_no_up_stops_after_the_config(fake_clis, ec2):
    allocate(ec2, 6, project="clinic-platform", stack="prod")  # a re-run: prod's addresses exist, nothing to ask for
    result, calls = run_deploy(fake_clis, "--stack", "prod", "--tag", "1a2b3c", "--no-up", pushed="clinic-prod/api")
    assert result.returncode == 0, result.stderr
    pushes = [c[2] for c in calls if c[:2] == ["docker", "push"]]
    assert pushes == [
        f"210987654321.dkr.ecr.eu-west-1.amazonaws.com/clinic-prod/{app}:1a2b3c"
        for app in ("notifier", "file-processor")
    ]
    builds = [c for c in calls if c[:2] == ["docker", "build"]]
    assert [b[b.index("--platform") + 1] for b in builds] == ["linux/amd64"] * 3, "prod's m6i nodes are x86"
    assert all(b[-2] == "apps/" for b in builds), "the build context is apps/ (clinic_common is shared)"
    ups = [c for c in calls if c[:2] == ["pulumi", "up"]]
    assert len(ups) == 1 and "--target" in ups[0], "--no-up runs only the targeted registry update"


def test_a_failing_step_stops_everything_after_it(fake_clis):
    (fake_clis / "bin" / "docker").write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    result, calls = run_deploy(fake_clis, "--stack", "dev", "--tag", "1a2b3c")
    assert result.returncode != 0 and "failed (3): docker login" in result.stderr, result.stderr
    assert not [c for c in calls if c[:3] == ["pulumi", "config", "set"]]


def test_the_targets_are_exactly_the_registry_and_its_children_on_the_recorded_graph(stack):
    registry = stack.one("clinic:index:ImageRegistry")
    members = [registry, *stack.descendants(registry)]
    stack_name = registry.urn.split("::")[0].removeprefix("urn:pulumi:")
    targets = registry_targets(stack_name)
    # URN = urn:pulumi:<stack>::<project>::<parent's type chain>$<type>::<name>, the root Stack left out. The mocks'
    # URNs differ (they keep only the parent's own type, and the Stack's): the chains are compared instead.
    by_name = {urn.rsplit("::", 1)[1]: urn.split("::")[2].split("$") for urn in targets}
    assert sorted(by_name) == sorted(m.name for m in members)
    for member in members:
        chain = by_name[member.name]
        assert chain[-1] == member.type, member.name
        parent = next((m for m in members if m.urn == member.parent), None)
        assert chain[:-1] == (by_name[parent.name] if parent else []), f"{member.name}: type chain {chain}"
    assert all(urn.startswith(f"urn:pulumi:{stack_name}::clinic-platform::") for urn in targets)


def test_images_are_built_for_the_nodes_architecture():
    assert node_platform([("m7g.large", "c7g.large")]) == "linux/arm64"
    assert node_platform([("t3.large",), ("m6i.large",)]) == "linux/amd64"
    with pytest.raises(SystemExit, match="cluster.nodeGroups mix architectures"):
        node_platform([("t3.large",), ("t4g.large",)])


PROD = AddressNeed(nat=3, media=3, tags={"project": "clinic-platform", "stack": "prod"})


def test_prod_on_a_new_accounts_five_elastic_ips_is_refused_before_anything_runs(fake_clis):
    result, calls = run_deploy(fake_clis, "--stack", "prod", "--tag", "1a2b3c")
    assert result.returncode != 0
    assert "the stack needs 6 Elastic IPs in eu-west-1 (3 for NAT gateways, 3 for the video service)" in result.stderr
    assert "the account allows 5 there" in result.stderr and "quota code L-0263D0A3" in result.stderr
    assert calls == [], "nothing may run before the quota is known to suffice"


def test_addresses_of_other_things_count_against_the_quota_the_stacks_own_do_not_need_it_twice(ec2):
    dev = AddressNeed(nat=1, media=0, tags={"project": "clinic-platform", "stack": "dev"})
    assert check_elastic_ips(dev, ec2, "eu-west-1") == "1 needed, 0 allocated already, 0 used by others, quota 5"
    allocate(ec2, 4, project="other-team")
    assert "4 used by others" in check_elastic_ips(dev, ec2, "eu-west-1"), "4 + 1 fits in 5"
    allocate(ec2, 1, project="clinic-platform", stack="prod")  # another stack's address is someone else's here
    with pytest.raises(SystemExit, match=r"5 are taken by other things. Ask for at least 6"):
        check_elastic_ips(dev, ec2, "eu-west-1")
    allocate(ec2, 1, project="clinic-platform", stack="dev")
    assert check_elastic_ips(dev, ec2, "eu-west-1").startswith("1 needed, 1 allocated already"), "a re-run asks none"


def test_prods_half_allocated_addresses_still_need_room_for_the_rest(ec2):
    allocate(ec2, 2, project="clinic-platform", stack="prod")
    with pytest.raises(SystemExit, match=r"2 of them already allocated; the account allows 5 there and 0 are taken"):
        check_elastic_ips(PROD, ec2, "eu-west-1")
    allocate(ec2, 4, project="clinic-platform", stack="prod")
    assert check_elastic_ips(PROD, ec2, "eu-west-1").startswith("6 needed, 6 allocated already")


def test_the_dry_run_asks_no_aws_api_and_says_what_the_stack_needs(fake_clis):
    result, calls = run_deploy(fake_clis, "--stack", "prod", "--tag", "1a2b3c", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "0/5 Elastic IP quota in eu-west-1: not checked (--dry-run); the stack needs 6" in result.stdout
    assert calls == []
