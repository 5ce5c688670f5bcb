"""ImageRegistry: per-stack ECR repositories, and workloads that run a digest the repository really holds."""

import pytest

from components.image_registry import (
    APPS,
    BOOTSTRAP_ENV,
    ImageRegistryArgs,
    repository_name,
    resolve_image,
    validate_image_registry_args,
)
from tests.infra.pulumi_mocks import ACCOUNT_ID, evaluate_program, pushed_digest

REPOSITORY = "aws:ecr/repository:Repository"
DIGEST = "sha256:" + "a" * 64
URL = f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/clinic-dev/api"


def workload_images(graph) -> list[tuple[str, str, str]]:
    """(resource name, app, container image) per Job/Deployment in the clinic namespace."""
    images = []
    for typ in ("kubernetes:batch/v1:Job", "kubernetes:apps/v1:Deployment"):
        for resource in graph.of_type(typ):
            metadata = resource.inputs["metadata"]
            if metadata.get("namespace") == "clinic":
                app = metadata["labels"]["app"].removeprefix("clinic-")
                container = resource.input("spec", "template", "spec")["containers"][0]
                images.append((resource.name, app, container["image"]))
    assert sorted(app for _, app, _ in images) == ["api", "api", "file-processor", "notifier", "notifier"], images
    return images


def test_repositories_are_named_after_the_cluster_so_two_stacks_share_an_account(dev, prod):
    names = {graph: sorted(r.inputs["name"] for r in graph.of_type(REPOSITORY)) for graph in (dev, prod)}
    assert names[dev] == ["clinic-dev/api", "clinic-dev/file-processor", "clinic-dev/notifier"]
    assert names[prod] == ["clinic-prod/api", "clinic-prod/file-processor", "clinic-prod/notifier"]
    assert not set(names[dev]) & set(names[prod])


def test_repositories_are_immutable_scanned_encrypted_pruned_and_kept_in_prod(stack):
    repositories = stack.of_type(REPOSITORY)
    prod = stack.exports["clusterName"][0] == "clinic-prod"
    for repo in repositories:
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE", repo.name
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}, repo.name
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}], repo.name
        assert repo.inputs["forceDelete"] is (not prod), repo.name
        assert stack.named(repo.parent.rsplit("::", 1)[1]).type == "clinic:index:ImageRegistry", repo.name
    assert len(stack.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")) == 3


def test_the_registry_depends_on_nothing_so_the_bootstrap_can_create_it_alone(stack):
    """`pulumi up --target '...ImageRegistry**'` refuses a target that depends on an untargeted new resource."""
    registry = stack.one("clinic:index:ImageRegistry")
    members = [registry, *stack.descendants(registry)]
    urns = {r.urn for r in members}
    for resource in members:
        outside = stack.dependencies_of(resource) - urns
        assert not outside, f"{resource.name} depends on {outside}"
        assert resource.provider == "", f"{resource.name} uses an explicit provider the target would not create"


def test_every_workload_runs_the_digest_the_repository_holds_for_the_configured_tag(stack):
    stack_name = stack.exports["clusterName"][0]
    for name, app, image in workload_images(stack):
        repository = f"{stack_name}/{app}"
        assert image == (
            f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/{repository}@{pushed_digest(repository, '0.1.0')}"
        ), name


def test_the_exports_name_each_repository_to_push_to(stack):
    stack_name = stack.exports["clusterName"][0]
    for key, app in (
        ("apiRepositoryUrl", "api"),
        ("notifierRepositoryUrl", "notifier"),
        ("fileProcessorRepositoryUrl", "file-processor"),
    ):
        assert stack.exports[key][0] == f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/{stack_name}/{app}"


def test_a_tag_not_pushed_fails_the_program_naming_the_setting_the_repository_and_the_push_command():
    with pytest.raises(Exception) as error:
        evaluate_program("dev", pushed={"clinic-dev/api": ["0.0.9"]})
    message = str(error.value)
    assert "images.api = '0.1.0'" in message and "clinic-dev/api" in message, message
    assert f"docker push {URL}:0.1.0" in message and "ops.first_deploy" in message, message


def test_a_digest_setting_runs_that_digest_and_a_full_reference_runs_as_given():
    held = {"clinic-dev/api": [DIGEST]}
    prebuilt = "ghcr.io/clinic/notifier@sha256:" + "b" * 64
    images = {"api": DIGEST, "notifier": prebuilt, "fileProcessor": prebuilt}
    graph = evaluate_program("dev", {"clinic-platform:images": images}, pushed=held)
    for name, app, image in workload_images(graph):
        assert image == (f"{URL}@{DIGEST}" if app == "api" else prebuilt), name


def test_while_bootstrapping_the_registry_nothing_is_looked_up(monkeypatch):
    monkeypatch.setenv(BOOTSTRAP_ENV, "1")
    graph = evaluate_program(
        "dev", pushed={"clinic-dev/api": [], "clinic-dev/notifier": [], "clinic-dev/file-processor": []}
    )
    assert sorted(r.inputs["name"] for r in graph.of_type(REPOSITORY)) == [
        "clinic-dev/api",
        "clinic-dev/file-processor",
        "clinic-dev/notifier",
    ]


def test_resolve_image_finds_tags_and_digests_among_the_listing():
    listing = [{"image_digest": DIGEST, "image_tag": "0.1.0"}, {"image_digest": "sha256:" + "c" * 64}]
    assert resolve_image("api", "0.1.0", "clinic-dev/api", URL, listing) == f"{URL}@{DIGEST}"
    assert resolve_image("api", "sha256:" + "c" * 64, "clinic-dev/api", URL, listing) == f"{URL}@sha256:{'c' * 64}"
    with pytest.raises(ValueError, match=r"images.notifier = 'sha256:d+': no such image in the ECR repository"):
        resolve_image("notifier", "sha256:" + "d" * 64, "clinic-dev/api", URL, listing)


@pytest.mark.parametrize("prefix", ["clinic--dev", "Clinic", "clinic-", "-clinic", "x" * 250])
def test_a_prefix_ecr_would_refuse_is_refused_before_any_resource(prefix):
    with pytest.raises(ValueError, match=r"repository_prefix = .* which ECR refuses; allowed: lowercase"):
        validate_image_registry_args(ImageRegistryArgs(repository_prefix=prefix, images={app: "0.1.0" for app in APPS}))
    assert repository_name("clinic-dev", "api") == "clinic-dev/api"


def test_images_must_name_exactly_the_bundled_apps():
    allowed = r"allowed: exactly \['api', 'fileProcessor', 'notifier'\]"
    with pytest.raises(ValueError, match=r"images = \['api'\] is invalid; " + allowed):
        validate_image_registry_args(ImageRegistryArgs(repository_prefix="clinic-dev", images={"api": "0.1.0"}))
