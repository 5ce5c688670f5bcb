"""ImageRegistry: the stack's ECR repositories for the bundled apps, and each app's image resolved to a digest.

Workloads run `repository@sha256:...`: what runs is exactly what was pushed (a tag could be re-pointed elsewhere),
and an image that is not in the repository fails the preview or update at once, with the push command, instead
of a migrations Job waiting ten minutes for a pull that cannot succeed.

The repositories live in their own component so that a new stack can create them first, alone
(`pulumi up --target 'urn:...::clinic:index:ImageRegistry**'`, see `ops/first_deploy.py`), push the images, and
only then create the workloads that pull them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

# The bundled apps: the component's key for each (the `images.<key>` setting), and the directory of its Dockerfile
# under apps/. The repository and the resources are named after the key in kebab case (`file-processor`).
APPS = {"api": "clinic_api", "notifier": "notifier", "fileProcessor": "file_processor"}
# ECR's repository-name grammar (CreateRepository API reference), 2 to 256 characters.
REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# `ops/first_deploy.py` sets this while it creates the repositories alone: nothing has been pushed yet, so the
# images are not looked up (the workloads that would use them are not part of that targeted update).
BOOTSTRAP_ENV = "CLINIC_REGISTRY_BOOTSTRAP"


@dataclass(frozen=True)
class ImageRegistryArgs:
    repository_prefix: str
    """First segment of every repository name (`<prefix>/api`): the cluster's name, unique per stack in an
    account, so dev and prod can share one."""
    images: Mapping[str, str]
    """Per app (`api`, `notifier`, `fileProcessor`), the `images.<app>` setting: a tag or `sha256:` digest in its
    repository, or a full reference to an image elsewhere (used as given)."""
    verify_images: bool = True
    """Look each tag or digest up in its repository; False only while the bootstrap creates the repositories."""
    keep_images: bool = False
    """Prod: a repository that still holds images is not deleted with the stack."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def kebab(app: str) -> str:
    """`fileProcessor` -> `file-processor`: the app's name in repository, image and resource names."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", app).lower()


def repository_name(prefix: str, app: str) -> str:
    """`<prefix>/<app in kebab case>`, refused up front when ECR would refuse it."""
    name = f"{prefix}/{kebab(app)}"
    if not (2 <= len(name) <= 256 and REPOSITORY_NAME.fullmatch(name)):
        raise ValueError(
            f"repository_prefix = {prefix!r} gives the ECR repository name {name!r}, which ECR refuses; "
            "allowed: lowercase letters and digits, separated by single '.', '_', '-' or '/', "
            "at most 256 characters in all"
        )
    return name


def validate_image_registry_args(args: ImageRegistryArgs) -> None:
    if set(args.images) != set(APPS):
        raise ValueError(f"images = {sorted(args.images)} is invalid; allowed: exactly {sorted(APPS)}")
    for app in APPS:
        repository_name(args.repository_prefix, app)
        if not args.images[app]:
            raise ValueError(f"images.{app} is empty; allowed: a tag, a sha256: digest or a full image reference")


def is_full_reference(image: str) -> bool:
    """A reference naming its own registry/repository (it contains a '/'), used as given."""
    return "/" in image


def resolve_image(
    app: str, image: str, repository: str, repository_url: str, present: Sequence[Mapping[str, Any]]
) -> str:
    """`repository_url@sha256:...` for a tag or digest found among the repository's images (ECR ListImages
    entries: `image_digest`, and `image_tag` when tagged); an error naming the setting, the repository and the
    push command otherwise."""
    if DIGEST.fullmatch(image):
        found = image if any(entry.get("image_digest") == image for entry in present) else None
    else:
        found = next((entry.get("image_digest") for entry in present if entry.get("image_tag") == image), None)
    if found:
        return f"{repository_url}@{found}"
    push = (
        f"docker push {repository_url}:{image}"
        if not image.startswith("sha256:")
        else f"docker push {repository_url}:<tag of that image>"
    )
    raise ValueError(
        f"images.{app} = {image!r}: no such image in the ECR repository {repository} ({len(present)} images there). "
        f"Build and push it first ({push}; for a new stack, `python -m ops.first_deploy --stack <stack>` does it "
        f"all), or set images.{app} to a tag or sha256: digest present in {repository}, or to a full image reference"
    )


class ImageRegistry(pulumi.ComponentResource):
    repository_urls: pulumi.Output[dict[str, str]]
    """ECR repository URL per app (`docker push <url>:<tag>`)."""
    images: dict[str, pulumi.Output[str]]
    """Per app, what its workloads run: `<repository url>@sha256:...`, or the full reference given."""

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:ImageRegistry", name, None, opts)
        validate_image_registry_args(args)
        tags = dict(args.tags)

        repositories = {
            app: self._repository(
                f"{name}-{kebab(app)}", repository_name(args.repository_prefix, app), args.keep_images, tags
            )
            for app in APPS
        }
        self.images = {app: self._image(app, args.images[app], repositories[app], args.verify_images) for app in APPS}
        self.repository_urls = pulumi.Output.all(*[repositories[app].repository_url for app in APPS]).apply(
            lambda urls: dict(zip(APPS, urls))
        )
        self.register_outputs({"repository_urls": self.repository_urls, "images": self.images})

    def _repository(self, name: str, repository: str, keep: bool, tags: Mapping[str, str]) -> aws.ecr.Repository:
        repo = aws.ecr.Repository(
            name,
            name=repository,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            # Prod: a repository that still holds images refuses deletion, so a destroy cannot lose releases.
            force_delete=not keep,
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            opts=pulumi.ResourceOptions(parent=repo),
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "untagged images go after a week",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": "keep the last 50 releases",
                            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50},
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
        )
        return repo

    def _image(self, app: str, image: str, repo: aws.ecr.Repository, verify: bool) -> pulumi.Output[str]:
        if is_full_reference(image):
            return pulumi.Output.from_input(image)
        if not verify:
            return repo.repository_url.apply(
                lambda url: f"{url}@{image}" if image.startswith("sha256:") else f"{url}:{image}"
            )
        # depends_on the repository: the lookup waits for it on a new stack (and stays unknown in that preview).
        listing = aws.ecr.get_images_output(
            repository_name=repo.name, opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[repo])
        )
        return pulumi.Output.all(repo.name, repo.repository_url, listing.image_ids).apply(
            lambda a: resolve_image(app, image, a[0], a[1], [_listing_entry(i) for i in a[2]])
        )


def _listing_entry(image_id: Any) -> dict[str, Any]:
    """A ListImages entry as a dict (the SDK hands the output form's list items over as plain dicts)."""
    if isinstance(image_id, Mapping):
        return {"image_digest": image_id.get("image_digest"), "image_tag": image_id.get("image_tag")}
    return {"image_digest": image_id.image_digest, "image_tag": image_id.image_tag}
