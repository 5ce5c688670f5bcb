"""Run a component or the whole program under Pulumi mocks and record
the resource graph the engine would see.

Every registration is kept with its type, name, inputs, parent, provider, dependencies, protect/retain flags and
custom timeouts. `Graph` answers the questions the tests ask: what depends on what (transitively, over the same
edges the engine uses) and therefore which resource `pulumi destroy` must delete before which.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import Stack

if TYPE_CHECKING:
    from stacks.settings import PlatformSettings

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "clinic-platform"
ACCOUNT_ID = "123456789012"
# Add-on versions the mocks answer (an add-on missing here is a typo in the program, or new: add it).
ADDON_VERSIONS = {
    "coredns": "v1.12.4-eksbuild.1",
    "vpc-cni": "v1.20.4-eksbuild.2",
    "metrics-server": "v0.8.0-eksbuild.1",
    "aws-ebs-csi-driver": "v1.51.1-eksbuild.1",
    "amazon-cloudwatch-observability": "v4.6.0-eksbuild.1",
}
# What the mocks answer for every generated password: tests look for it where no secret may appear.
GENERATED_SECRET = "mock-generated-Secret-9f8e7d6c5b4a"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    remote: bool
    parent: str
    provider: str
    dependencies: set[str]
    property_dependencies: dict[str, set[str]]
    deleted_with: str
    protect: bool
    retain_on_delete: bool
    delete_timeout: str
    inputs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    aliases: list[dict[str, Any]] = field(default_factory=list)
    """As sent to the engine: `{"urn": ...}` or a spec `{"name", "type", "stack", "project", "parentUrn",
    "noParent"}` (empty fields mean "the resource's own"); `preview.urns` resolves them as the engine does."""
    ignore_changes: list[str] = field(default_factory=list)

    def input(self, *path: str, default: Any = None) -> Any:
        """Nested input by camelCase path; JSON strings (policies) are decoded on the way."""
        value: Any = self.inputs
        for key in path:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        if isinstance(value, str) and value and value[0] in "{[":
            value = json.loads(value)
        return value


class GraphRecorder(pulumi_mocks.MockMonitor):
    """A MockMonitor that also keeps what the engine would receive for each resource."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object)
        urn = response.urn
        self.records.append(
            Registration(
                urn=urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                remote=bool(request.remote),
                parent=request.parent,
                provider=request.provider.rsplit("::", 1)[0] if request.provider else "",  # "<urn>::<id>"
                dependencies=set(request.dependencies),
                property_dependencies={k: set(v.urns) for k, v in request.propertyDependencies.items()},
                deleted_with=request.deletedWith,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_timeout=request.customTimeouts.delete,
                inputs=inputs,
                state=dict(self.resources[urn].state),
                aliases=[
                    {"urn": a.urn}
                    if a.WhichOneof("alias") == "urn"
                    else {
                        "name": a.spec.name,
                        "type": a.spec.type,
                        "stack": a.spec.stack,
                        "project": a.spec.project,
                        "parentUrn": a.spec.parentUrn,
                        "noParent": a.spec.noParent,
                    }
                    for a in request.aliases
                ],
                ignore_changes=list(request.ignoreChanges),
            )
        )
        return response


def pushed_digest(repository: str, tag: str) -> str:
    """The digest the mocks give the image tagged `tag` in `repository`."""
    return "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()


def _resource_ref(urn: str, id_: str) -> dict[str, str]:
    """How a mock returns an output that is itself a resource (pulumi_eks's `eksCluster` and friends)."""
    return {rpc._special_sig_key: rpc._special_resource_sig, "urn": urn, "id": id_}


class ClinicMocks(pulumi.runtime.Mocks):
    """Plausible provider answers: ids, ARNs and the outputs of the remote EKS components."""

    def __init__(
        self, region: str, pushed: Mapping[str, Sequence[str]] | None = None, default_pushed: Sequence[str] = ()
    ):
        self.region = region
        self.monitor: GraphRecorder | None = None
        # The tags (or sha256: digests) each ECR repository holds; a repository not named holds `default_pushed`.
        self.pushed = dict(pushed or {})
        self.default_pushed = tuple(default_pushed)

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        return f"arn:aws:{service}:{region or self.region}:{ACCOUNT_ID}:{resource}"

    def provider_region(self, provider: str | None) -> str:
        """The region of the resource's explicit aws provider (a copy region), else the stack's."""
        urn = (provider or "").rsplit("::", 1)[0]
        registration = self.monitor.resources.get(urn) if self.monitor and urn else None
        return (registration.state.get("region") if registration else None) or self.region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        name = args.name
        typ = args.typ
        rid = f"{name}-id"
        region = self.provider_region(args.provider)
        if typ == "aws:sqs/queue:Queue":
            queue = state.get("name", name)
            state.update(
                arn=self.arn("sqs", queue), url=f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{queue}"
            )
            rid = state["url"]
        elif typ == "aws:s3/bucket:Bucket":
            bucket = state.get("bucket") or f"{name}-a1b2c3"
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            rid = bucket
        elif typ == "aws:rds/instance:Instance":
            state.setdefault("identifier", name)
            state.update(
                address=f"{name}.abc123.{self.region}.rds.amazonaws.com",
                port=5432,
                endpoint=f"{name}.abc123.{self.region}.rds.amazonaws.com:5432",
                arn=self.arn("rds", f"db:{name}"),
                masterUserSecrets=[
                    {
                        "secretArn": self.arn("secretsmanager", f"secret:rds!db-{name}"),
                        "kmsKeyId": state.get("masterUserSecretKmsKeyId", ""),
                        "secretStatus": "active",
                    }
                ],
            )
        elif typ == "aws:sesv2/emailIdentity:EmailIdentity":
            identity = state["emailIdentity"]
            state.update(
                arn=self.arn("ses", f"identity/{identity}"),
                dkimSigningAttributes={**state.get("dkimSigningAttributes", {}), "tokens": ["tok1", "tok2", "tok3"]},
            )
        elif typ == "eks:index:Cluster":
            state.update(self._eks_cluster_outputs(state.get("name", name)))
        elif typ == "random:index/randomPassword:RandomPassword":
            state.update(result=GENERATED_SECRET)
        elif typ == "aws:ecr/repository:Repository":
            state.update(repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{state.get('name', name)}")
        elif typ == "aws:ec2/eip:Eip":
            # An address from TEST-NET-3, stable per name.
            state.update(allocationId=f"eipalloc-{name}", publicIp=f"203.0.113.{sum(map(ord, name)) % 254 + 1}")
            rid = state["allocationId"]
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=1, defaultVersion=1)
        elif typ == "aws:kms/key:Key":
            state.update(arn=self.arn("kms", f"key/{name}", region), keyId=f"{name}-key-id")
        elif typ == "kubernetes:networking.k8s.io/v1:Ingress":
            # What the load balancer controller writes once the ALB exists (pulumi-kubernetes waits for it).
            state["status"] = {
                "loadBalancer": {"ingress": [{"hostname": f"k8s-{name}-0123456789.{self.region}.elb.amazonaws.com"}]}
            }
        elif typ == "aws:acm/certificate:Certificate":
            domain = state["domainName"]
            state["domainValidationOptions"] = [
                {
                    "domainName": domain,
                    "resourceRecordName": f"_3f1a2b.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_9c8d7e.acm-validations.aws.",
                }
            ]
        elif typ == "aws:route53/record:Record":
            state["fqdn"] = state["name"].rstrip(".")
        elif typ == "aws:iam/role:Role":
            # Auto-named like the provider does it: the logical name and a random suffix (key policies match it).
            role = state.get("name") or f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"
            state.update(arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role}", name=role)
        elif typ == "aws:iam/policy:Policy":
            state.update(arn=f"arn:aws:iam::{ACCOUNT_ID}:policy/{state.get('name', name)}")
        if typ.startswith("aws:"):
            # The provider auto-names resources from their logical name; the mocks keep the logical name.
            state.setdefault("name", name)
            state.setdefault("arn", self.arn(typ.split(":")[1].split("/")[0], name, region))
        return rid, state

    def _eks_cluster_outputs(self, cluster_name: str) -> dict[str, Any]:
        """pulumi_eks's Cluster is a remote component: answer its outputs, with `eksCluster` a reference to an
        aws.eks.Cluster the monitor knows about (see notes/pulumi-mocks.md)."""
        assert self.monitor is not None
        urn = f"urn:pulumi:{pulumi.get_stack()}::{PROJECT}::aws:eks/cluster:Cluster::{cluster_name}"
        issuer = f"oidc.eks.{self.region}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        self.monitor.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(
            urn,
            cluster_name,
            {
                "name": cluster_name,
                "arn": self.arn("eks", f"cluster/{cluster_name}"),
                "endpoint": f"https://{cluster_name}.gr7.{self.region}.eks.amazonaws.com",
                "vpcConfig": {"clusterSecurityGroupId": f"sg-{cluster_name}-cluster"},
                "identities": [{"oidcs": [{"issuer": f"https://{issuer}"}]}],
            },
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": f"https://{cluster_name}.gr7.{self.region}.eks.amazonaws.com"},
                }
            ],
        }
        return {
            "eksCluster": _resource_ref(urn, cluster_name),
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}",
            "oidcProviderUrl": issuer,
            "oidcIssuer": issuer,
        }

    def call(self, args: pulumi.runtime.MockCallArgs):
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{suffix}" for suffix in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)], "id": self.region}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
                "userId": "AIDA",
                "id": ACCOUNT_ID,
            }
        if token == "aws:index/getRegion:getRegion":
            return {"region": self.region, "name": self.region, "id": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:rds/getInstance:getInstance":
            # An instance restored outside the state (python -m ops.db_restore), as RDS describes it.
            identifier = args.args["dbInstanceIdentifier"]
            return {
                "id": identifier,
                "dbInstanceIdentifier": identifier,
                "dbInstanceArn": self.arn("rds", f"db:{identifier}"),
                "address": f"{identifier}.abc123.{self.region}.rds.amazonaws.com",
                "port": 5432,
                "masterUserSecrets": [
                    {
                        "secretArn": self.arn("secretsmanager", f"secret:rds!db-{identifier}"),
                        "kmsKeyId": "",
                        "secretStatus": "active",
                    }
                ],
            }
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            # What EKS publishes: kube-proxy's version follows the cluster's; the others have their own.
            addon, kubernetes = args.args["addonName"], args.args["kubernetesVersion"]
            version = f"v{kubernetes}.0-eksbuild.1" if addon == "kube-proxy" else ADDON_VERSIONS[addon]
            return {"addonName": addon, "kubernetesVersion": kubernetes, "version": version, "id": addon}
        if token == "aws:lb/getLoadBalancer:getLoadBalancer":
            name = args.args["name"]
            arn = self.arn("elasticloadbalancing", f"loadbalancer/app/{name}/50dc6c495c0c9188")
            return {
                "arn": arn,
                "arnSuffix": f"app/{name}/50dc6c495c0c9188",
                "name": name,
                "id": arn,
                "dnsName": f"{name}-0123456789.{self.region}.elb.amazonaws.com",
                "loadBalancerType": "application",
                "zoneId": "Z32O12XQLNTSW2",
            }
        if token == "aws:ecr/getImages:getImages":
            repository = args.args["repositoryName"]
            held = self.pushed.get(repository, self.default_pushed)
            image_ids = [
                {"imageDigest": ref}
                if ref.startswith("sha256:")
                else {"imageDigest": pushed_digest(repository, ref), "imageTag": ref}
                for ref in held
            ]
            return {"id": repository, "repositoryName": repository, "region": self.region, "imageIds": image_ids}
        raise NotImplementedError(f"the mocks do not answer invoke {token}; add it to ClinicMocks.call")


class Graph:
    """The recorded registrations and the engine's ordering rules over them."""

    def __init__(self, records: Iterable[Registration], exports: dict[str, tuple[Any, bool]]):
        self.records = list(records)
        self.by_urn = {r.urn: r for r in self.records}
        self.exports = exports
        self._edges: dict[str, set[str]] = {}
        for r in self.records:
            edges = set(r.dependencies)
            for urns in r.property_dependencies.values():
                edges |= urns
            edges |= {u for u in (r.parent, r.provider, r.deleted_with) if u}
            self._edges[r.urn] = {u for u in edges if u in self.by_urn}
        self._closure: dict[str, set[str]] = {}

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.records if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name!r}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registration:
        found = [r for r in self.records if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.records if r.parent == parent.urn]

    def descendants(self, parent: Registration) -> list[Registration]:
        out, frontier = [], [parent.urn]
        while frontier:
            urn = frontier.pop()
            kids = [r for r in self.records if r.parent == urn]
            out += kids
            frontier += [k.urn for k in kids]
        return out

    def dependencies_of(self, resource: Registration) -> set[str]:
        """Every URN `resource` depends on, transitively, over parent, provider, property, dependsOn and
        deletedWith edges — exactly the set the engine must keep alive until `resource` is deleted."""
        if resource.urn not in self._closure:
            seen: set[str] = set()
            stack = list(self._edges[resource.urn])
            while stack:
                urn = stack.pop()
                if urn not in seen:
                    seen.add(urn)
                    stack.extend(self._edges[urn])
            self._closure[resource.urn] = seen
        return self._closure[resource.urn]

    def depends_on(self, resource: Registration, other: Registration) -> bool:
        return other.urn in self.dependencies_of(resource)

    def deleted_before(self, first: Registration, then: Registration) -> bool:
        """The engine deletes a resource before everything it depends on; so `first` is guaranteed to be
        gone before `then` is deleted exactly when `first` depends on `then`."""
        return self.depends_on(first, then)

    def delete_order(self) -> list[Registration]:
        """One valid order of `pulumi destroy` (reverse topological, ties by reverse registration order)."""
        index = {r.urn: i for i, r in enumerate(self.records)}
        dependents: dict[str, set[str]] = defaultdict(set)
        for urn, deps in self._edges.items():
            for dep in deps:
                dependents[dep].add(urn)
        remaining = {urn: len(dependents[urn]) for urn in self.by_urn}
        ready = sorted((u for u, n in remaining.items() if n == 0), key=index.__getitem__, reverse=True)
        order: list[Registration] = []
        while ready:
            urn = ready.pop(0)
            order.append(self.by_urn[urn])
            for dep in self._edges[urn]:
                remaining[dep] -= 1
                if remaining[dep] == 0:
                    ready.append(dep)
            ready.sort(key=index.__getitem__, reverse=True)
        assert len(order) == len(self.records), "the resource graph has a cycle"
        return order


def _normalised(value: Any) -> Any:
    """An input as a reviewer should see it: secrets hidden, unknowns marked, maps in key order."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return "<secret>"
        return {key: _normalised(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_normalised(item) for item in value]
    if value == rpc.UNKNOWN:
        return "<unknown>"
    if value == GENERATED_SECRET:
        return "<secret>"
    return value


def snapshot(graph: Graph) -> list[dict[str, Any]]:
    """What the engine would be asked to deploy, per resource and ordered by URN: a stable, secret-free record whose
    diff shows exactly what a change deploys (tests/infra/test_snapshot.py compares it with the committed one)."""
    return [
        {
            "urn": r.urn,
            "type": r.type,
            "parent": r.parent,
            "provider": r.provider,
            "custom": r.custom,
            "protect": r.protect,
            "retainOnDelete": r.retain_on_delete,
            "deleteTimeout": r.delete_timeout,
            "deletedWith": r.deleted_with,
            "dependencies": sorted(r.dependencies),
            "propertyDependencies": {
                key: sorted(urns) for key, urns in sorted(r.property_dependencies.items()) if urns
            },
            "inputs": _normalised(r.inputs),
        }
        for r in sorted(graph.records, key=lambda r: r.urn)
    ]


def stack_config(stack: str) -> dict[str, str]:
    """The committed Pulumi.<stack>.yaml as the engine passes it: structured values JSON-encoded."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in (document.get("config") or {}).items()
    }


def stack_settings(stack: str) -> PlatformSettings:
    """The committed Pulumi.<stack>.yaml as the program's typed settings (for tests that build one component)."""
    from stacks.settings import _decode, load_settings

    config = stack_config(stack)
    prefix = f"{PROJECT}:"
    raw = {key[len(prefix) :]: _decode(value) for key, value in config.items() if key.startswith(prefix)}
    return load_settings(raw, stack=stack, region=config.get("aws:region"))


def configured_images(config: Mapping[str, str]) -> list[str]:
    """The tags and digests the stack's `images.*` settings name (the mocks' repositories hold them by default)."""
    images = json.loads(config.get(f"{PROJECT}:images", "{}"))
    return [value for value in images.values() if isinstance(value, str)] if isinstance(images, dict) else []


def evaluate(
    build: Callable[[], Any],
    *,
    stack: str,
    config: dict[str, str] | None = None,
    region: str = "eu-west-1",
    pushed: Mapping[str, Sequence[str]] | None = None,
) -> Graph:
    """Runs `build` under mocks with the given config and returns the recorded graph and stack exports. ECR
    repositories hold the images the config names, unless `pushed` says what a repository holds."""
    config = dict(config or {})
    region = config.get("aws:region", region)
    mocks = ClinicMocks(region, pushed=pushed, default_pushed=configured_images(config))
    recorder = GraphRecorder(mocks)
    mocks.monitor = recorder
    runtime_settings.ROOT.set(None)  # a fresh Stack per evaluation (internal, see notes/pulumi-mocks.md)
    pulumi.runtime.set_all_config({"aws:region": region, **config}, secret_keys=[])
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=recorder)
    exports: dict[str, tuple[Any, bool]] = {}

    async def collect_exports() -> None:
        root = pulumi.runtime.get_root_resource()
        assert isinstance(root, Stack), "the program ran without its root Stack"
        for key, value in root.outputs.items():
            output = pulumi.Output.from_input(value)
            exports[key] = (await output.future(), await output.is_secret())

    @pulumi.runtime.test
    def run():
        build()
        return pulumi.Output.from_input(collect_exports())

    run()
    return Graph(recorder.records, exports)


def evaluate_program(
    stack: str, overrides: dict[str, Any] | None = None, pushed: Mapping[str, Sequence[str]] | None = None
) -> Graph:
    """Evaluates `__main__.py` for a committed stack file, optionally overriding config keys and what the ECR
    repositories hold."""
    config = stack_config(stack)
    for key, value in (overrides or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return evaluate(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        stack=stack,
        config=config,
        pushed=pushed,
    )
