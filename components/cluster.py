"""Cluster: EKS control plane, managed node groups, OIDC for IRSA, and the Kubernetes provider for what runs on it."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from components.iam import service_trust_policy
from components.key_policy import KeyUser, account_context, key_policy, validate_key_users
from components.log_encryption import log_group_key
from limits import LOG_RETENTION_DAYS, ROLE_ARN_PATTERN, is_graviton
from limits.eks_support import EKS_SUPPORT, extended_support_problem

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Every resource, get/list/watch only; includes Secrets, where Helm keeps its release records (a preview of the
# Helm releases reads them).
ADMIN_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"
# The common resources, get/list/watch only, no Secrets: for people who watch the cluster.
VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
# The Kubernetes verbs each policy grants (EKS user guide, "Review access policy permissions"); EKS access policies
# cannot be changed, so this table only changes when another policy is used.
ACCESS_POLICY_VERBS: dict[str, frozenset[str]] = {
    CLUSTER_ADMIN_POLICY: frozenset({"*"}),
    ADMIN_VIEW_POLICY: frozenset({"get", "list", "watch"}),
    VIEW_POLICY: frozenset({"get", "list", "watch"}),
}
READ_ONLY_VERBS = frozenset({"get", "list", "watch"})
KUBERNETES_API_PORT = 443
# What every node needs to join, run the VPC CNI and pull images; nothing for the workloads (they use IRSA).
NODE_MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


@dataclass(frozen=True)
class NodeGroupArgs:
    name: str
    """Managed node group name (stable: a rename replaces the group)."""
    instance_types: Sequence[str]
    """EC2 instance types, all of one architecture (Graviton gets the arm64 AMI)."""
    capacity_type: str
    """ON_DEMAND or SPOT."""
    min_size: int
    """Lower scaling bound."""
    desired_size: int
    """Initial size; later owned by the autoscaler."""
    max_size: int
    """Upper scaling bound."""
    max_unavailable: int = 1
    """Nodes replaced at once during a rolling update."""
    disk_size_gb: int = 30
    """Encrypted gp3 root volume size."""


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    """EKS cluster name (the subnets' discovery tags use the same value)."""
    kubernetes_version: str
    """Pinned Kubernetes version of the control plane and the nodes."""
    vpc_id: pulumi.Input[str]
    """VPC of the cluster."""
    private_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Subnets for the control plane's network interfaces and every node; nodes get no public address."""
    service_ipv4_cidr: str
    """Kubernetes Service CIDR (must not overlap the VPC)."""
    node_groups: Sequence[NodeGroupArgs]
    """Managed node groups."""
    deploy_role_arn: str
    """The role CI's deploy jobs assume (`pulumi up`/`destroy`): cluster admin through an access entry."""
    preview_role_arn: str | None = None
    """The role pull-request previews assume: read-only on the cluster (get/list/watch, Secrets included)."""
    admin_role_arns: Sequence[str] = ()
    """Operators' IAM roles given cluster admin."""
    viewer_role_arns: Sequence[str] = ()
    """Operators' IAM roles that may only look (no Secrets)."""
    api_client_security_group_ids: Sequence[pulumi.Input[str]] = ()
    """Security groups in the VPC (the CI runner's) admitted to the private API endpoint."""
    public_access_cidrs: Sequence[str] = ()
    """CIDRs allowed on the public API endpoint; empty keeps the endpoint private only."""
    protect: bool = False
    """Prod: EKS deletion protection on the control plane; its log group (audit logs) is kept on destroy."""
    log_retention_days: int | None = None
    """Retention of the control-plane log group, created encrypted before the cluster; None leaves it to EKS (which
    creates it unencrypted and never expiring)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""
    secrets_key_users: Sequence[KeyUser] = ()
    """Who may use the Kubernetes secrets key (the deployer and the cluster's role, through EKS)."""
    node_dependencies: Sequence[pulumi.Resource] = ()
    """Created before any node group (and deleted after them): the egress nodes need to join and pull images."""


def validate_cluster_args(args: ClusterArgs) -> None:
    validate_key_users(args.secrets_key_users)
    if args.kubernetes_version not in EKS_SUPPORT:
        raise ValueError(
            f"kubernetes_version = {args.kubernetes_version!r} is invalid; allowed: " + ", ".join(EKS_SUPPORT)
        )
    if not args.node_groups:
        raise ValueError("node_groups is empty; allowed: at least one managed node group")
    if any(c.endswith("/0") for c in args.public_access_cidrs):
        raise ValueError(
            f"public_access_cidrs = {list(args.public_access_cidrs)} is invalid; allowed: specific "
            "CIDRs, never the whole internet"
        )
    if not args.public_access_cidrs and not args.api_client_security_group_ids:
        raise ValueError(
            "public_access_cidrs is empty and no api_client_security_group_ids are given: nothing could "
            "reach the private API endpoint; allowed: an in-VPC runner's security group, or operators' "
            "CIDRs"
        )
    for key, arns in (
        ("deploy_role_arn", [args.deploy_role_arn]),
        ("preview_role_arn", [args.preview_role_arn] if args.preview_role_arn else []),
        ("admin_role_arns", args.admin_role_arns),
        ("viewer_role_arns", args.viewer_role_arns),
    ):
        for arn in arns:
            if not re.fullmatch(ROLE_ARN_PATTERN, arn):
                raise ValueError(
                    f"{key} = {arn!r} is invalid; allowed: an IAM role ARN such as "
                    "arn:aws:iam::123456789012:role/clinic-deploy"
                )
    principals = [
        args.deploy_role_arn,
        *([args.preview_role_arn] if args.preview_role_arn else []),
        *args.admin_role_arns,
        *args.viewer_role_arns,
    ]
    repeated = sorted({arn for arn in principals if principals.count(arn) > 1})
    if repeated:
        raise ValueError(
            f"{', '.join(repeated)} appear(s) more than once among deploy_role_arn, preview_role_arn, "
            "admin_role_arns and viewer_role_arns; allowed: one access entry per role"
        )
    if len(access_entries(args)) != len(principals):
        raise ValueError(
            f"admin_role_arns / viewer_role_arns = {principals} name the same role name twice (in "
            "other accounts or paths); allowed: distinct role names"
        )
    if args.log_retention_days is not None and args.log_retention_days not in LOG_RETENTION_DAYS:
        raise ValueError(
            f"log_retention_days = {args.log_retention_days} is invalid; allowed: "
            + ", ".join(map(str, LOG_RETENTION_DAYS))
        )


def addon_version(addon: str, kubernetes_version: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The newest version EKS publishes of `addon` for this Kubernetes version: add-ons follow a cluster upgrade in
    the same `pulumi up`."""
    return aws.eks.get_addon_version_output(
        addon_name=addon,
        kubernetes_version=kubernetes_version,
        most_recent=True,
        opts=pulumi.InvokeOutputOptions(parent=parent),
    ).version


def access_entries(args: ClusterArgs) -> dict[str, eks.AccessEntryArgsDict]:
    """One EKS access entry per role, keyed by what it is for and the role's name (stable when the lists change
    order), with exactly one cluster-wide access policy."""

    def entry(arn: str, policy: str, policy_key: str) -> eks.AccessEntryArgsDict:
        return {
            "principal_arn": arn,
            "access_policies": {policy_key: {"policy_arn": policy, "access_scope": {"type": "cluster"}}},
        }

    def key(kind: str, arn: str) -> str:
        return f"{kind}-{arn.split(':role/', 1)[1].replace('/', '-')}"

    entries = {"deploy": entry(args.deploy_role_arn, CLUSTER_ADMIN_POLICY, "cluster-admin")}
    if args.preview_role_arn:
        entries["preview"] = entry(args.preview_role_arn, ADMIN_VIEW_POLICY, "admin-view")
    entries.update(
        {key("admin", arn): entry(arn, CLUSTER_ADMIN_POLICY, "cluster-admin") for arn in args.admin_role_arns}
    )
    entries.update({key("viewer", arn): entry(arn, VIEW_POLICY, "view") for arn in args.viewer_role_arns})
    return entries


def no_creator_admin(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """pulumi-eks 4.x creates the control plane with bootstrapClusterCreatorAdminPermissions=true and no input to
    change it: whoever ran the first `up` would be a hidden, permanent admin, and an explicit entry for that same
    role would fail with ResourceInUseException. Access is the explicit entries only."""
    if args.type_ != "aws:eks/cluster:Cluster":
        return None
    props = dict(args.props)
    current = props.get("accessConfig") or {}
    if not isinstance(current, Mapping):  # pulumi-eks passes a plain map; anything else would be lost below
        raise TypeError(f"accessConfig of {args.name} is {current!r}; expected a map")
    access = dict(current)
    access["bootstrapClusterCreatorAdminPermissions"] = False
    props["accessConfig"] = access
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


def ami_type(instance_types: Sequence[str]) -> str:
    """AL2023 for the node group's architecture (Graviton types have a `g` after the generation digit)."""
    return "AL2023_ARM_64_STANDARD" if is_graviton(instance_types[0]) else "AL2023_x86_64_STANDARD"


def irsa_trust_policy(oidc_provider_arn: str, oidc_provider_url: str, namespace: str, service_account: str) -> str:
    """Only the named service account in the named namespace may assume the role (IRSA)."""
    issuer = oidc_provider_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


@dataclass(frozen=True)
class IrsaRole:
    """A workload's IAM role and its permissions."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    arn: pulumi.Output[str]
    """The role's ARN, resolving only once `policy` is attached: whatever takes it (a service account's annotation,
    an add-on) is created after the permissions and deleted before them, with no `depends_on` of its own."""


class Cluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    """Name of the EKS cluster."""
    kubeconfig: pulumi.Output[str]
    """Kubeconfig (JSON) for the cluster, a secret."""
    oidc_provider_arn: pulumi.Output[str]
    """IAM OIDC provider of the cluster, for IRSA."""
    oidc_provider_url: pulumi.Output[str]
    """Issuer URL of the cluster's OIDC provider."""
    cluster_security_group_id: pulumi.Output[str]
    """EKS-managed security group of the control plane and the managed nodes (pods use node networking)."""
    node_group_names: pulumi.Output[list[str]]
    """Names of the managed node groups."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Cluster", name, None, opts)
        validate_cluster_args(args)
        # Prod refuses such a version in its settings; dev runs it, told what it costs.
        problem = extended_support_problem(args.kubernetes_version, datetime.date.today())
        if problem:
            pulumi.log.warn(problem, resource=self)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        secrets_key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"{name}: Kubernetes secrets envelope encryption",
            enable_key_rotation=True,
            policy=account_context(self).apply(lambda c: key_policy(*c, users=args.secrets_key_users)),
            tags=tags,
            opts=child,
        )
        # EKS creates /aws/eks/<name>/cluster as soon as control-plane logging is on, with no retention and no key;
        # the group must exist first (creating it afterwards fails: it already exists).
        before_cluster: list[pulumi.Resource] = []
        if args.log_retention_days is not None:
            log_group = f"/aws/eks/{args.cluster_name}/cluster"
            logs_key = log_group_key(
                f"{name}-logs-key",
                f"{name}: control-plane logs",
                log_group,
                parent=self,
                retain=args.protect,
                tags=tags,
            )
            before_cluster.append(
                aws.cloudwatch.LogGroup(
                    f"{name}-control-plane-logs",
                    name=log_group,
                    retention_in_days=args.log_retention_days,
                    kms_key_id=logs_key.arn,
                    tags=tags,
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect),
                )
            )
        self._cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            private_subnet_ids=args.private_subnet_ids,
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=bool(args.public_access_cidrs),
            public_access_cidrs=list(args.public_access_cidrs) or None,
            kubernetes_service_ip_address_range=args.service_ipv4_cidr,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries(args),
            # Managed node groups below; no self-managed default group and its security groups.
            skip_default_node_group=True,
            skip_default_security_groups=True,
            create_oidc_provider=True,
            # The VPC CNI and kube-proxy are EKS add-ons pulumi-eks owns (it created them; a second owner would
            # fight it), at the versions resolved here for the cluster's version. The VPC CNI enforces
            # NetworkPolicy only when asked; the clinic's namespace relies on it.
            vpc_cni_options={
                "enable_network_policy": True,
                "addon_version": addon_version("vpc-cni", args.kubernetes_version, self),
            },
            kube_proxy_addon_options={"version": addon_version("kube-proxy", args.kubernetes_version, self)},
            # pulumi-eks would create CoreDNS before any managed node group exists (it would never become ACTIVE);
            # Cluster owns it instead, after the node groups (_coredns).
            coredns_addon_options={"enabled": False},
            encryption_config_key_arn=secrets_key.arn,
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            deletion_protection=args.protect,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=before_cluster, transforms=[no_creator_admin]),
        )
        eks_cluster = self._cluster.eks_cluster
        # The private endpoint's network interfaces carry the EKS-managed cluster security group.
        for i, client in enumerate(args.api_client_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-from-client-{i}",
                security_group_id=eks_cluster.vpc_config.cluster_security_group_id,
                referenced_security_group_id=client,
                ip_protocol="tcp",
                from_port=KUBERNETES_API_PORT,
                to_port=KUBERNETES_API_PORT,
                description="Kubernetes API from the in-VPC CI runner",
                opts=child,
            )

        node_role = aws.iam.Role(
            f"{name}-node-role",
            tags=tags,
            opts=child,
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy.rsplit('/', 1)[1]}", role=node_role.name, policy_arn=policy, opts=child
            )
            for policy in NODE_MANAGED_POLICIES
        ]

        self.node_groups: list[aws.eks.NodeGroup] = []
        for spec in args.node_groups:
            template = aws.ec2.LaunchTemplate(
                f"{name}-{spec.name}-lt",
                # IMDSv2 only, and a hop limit of 1 so pods cannot reach the node's credentials; workloads use IRSA.
                metadata_options={
                    "http_endpoint": "enabled",
                    "http_tokens": "required",
                    "http_put_response_hop_limit": 1,
                },
                block_device_mappings=[
                    {
                        "device_name": "/dev/xvda",
                        "ebs": {
                            "volume_size": spec.disk_size_gb,
                            "volume_type": "gp3",
                            "encrypted": "true",
                            "delete_on_termination": "true",
                        },
                    }
                ],
                tag_specifications=[
                    {"resource_type": "instance", "tags": {**tags, "Name": f"{name}-{spec.name}"}},
                    {"resource_type": "volume", "tags": tags},
                ],
                update_default_version=True,
                tags=tags,
                opts=child,
            )
            self.node_groups.append(
                aws.eks.NodeGroup(
                    f"{name}-{spec.name}",
                    cluster_name=eks_cluster.name,
                    node_group_name_prefix=f"{spec.name}-",
                    node_role_arn=node_role.arn,
                    subnet_ids=args.private_subnet_ids,
                    version=args.kubernetes_version,
                    ami_type=ami_type(spec.instance_types),
                    instance_types=list(spec.instance_types),
                    capacity_type=spec.capacity_type,
                    scaling_config={
                        "min_size": spec.min_size,
                        "desired_size": spec.desired_size,
                        "max_size": spec.max_size,
                    },
                    update_config={"max_unavailable": spec.max_unavailable},
                    launch_template={"id": template.id, "version": template.latest_version.apply(str)},
                    labels={"clinic/node-group": spec.name},
                    tags=tags,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[*attachments, *args.node_dependencies],
                        # The cluster autoscaler owns the current size once the group exists.
                        ignore_changes=["scalingConfig.desiredSize"],
                    ),
                )
            )

        self.coredns = self._coredns(name, args, eks_cluster.name)

        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self._cluster.kubeconfig_json, enable_server_side_apply=True, opts=child
        )
        self.cluster_name = eks_cluster.name
        self.kubeconfig = pulumi.Output.secret(self._cluster.kubeconfig_json)
        self.oidc_provider_arn = self._cluster.oidc_provider_arn
        self.oidc_provider_url = self._cluster.oidc_provider_url
        self.cluster_security_group_id = eks_cluster.vpc_config.cluster_security_group_id
        self.node_group_names = pulumi.Output.all(*[g.node_group_name for g in self.node_groups])
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_provider_url": self.oidc_provider_url,
                "cluster_security_group_id": self.cluster_security_group_id,
                "node_group_names": self.node_group_names,
            }
        )

    def _coredns(self, name: str, args: ClusterArgs, cluster_name: pulumi.Input[str]) -> aws.eks.Addon:
        """CoreDNS as an EKS add-on, adopting the Deployment EKS bootstrapped; created once nodes can run its pods
        (an add-on is ACTIVE only when they are)."""
        return aws.eks.Addon(
            f"{name}-coredns",
            cluster_name=cluster_name,
            addon_name="coredns",
            addon_version=addon_version("coredns", args.kubernetes_version, self),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # Taking the add-on out of the program must not take the cluster's DNS with it.
            preserve=True,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.node_groups),
        )

    def irsa_role(
        self,
        name: str,
        namespace: str,
        service_account: str,
        policy: pulumi.Input[str],
        parent: pulumi.Resource,
        tags: Mapping[str, str] | None = None,
        aliases: Sequence[pulumi.Alias] | None = None,
    ) -> IrsaRole:
        """An IAM role only `namespace/service_account` can assume, with `policy` (JSON) as its only permissions.
        `parent` is the component of the workload, so the role lives and dies with it; `aliases` are the role's
        earlier URNs (its policy, a child, follows it)."""
        role = aws.iam.Role(
            name,
            tags=dict(tags or {}),
            opts=pulumi.ResourceOptions(parent=parent, aliases=aliases),
            assume_role_policy=pulumi.Output.all(self.oidc_provider_arn, self.oidc_provider_url).apply(
                lambda a: irsa_trust_policy(a[0], a[1], namespace, service_account)
            ),
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-policy", role=role.id, policy=policy, opts=pulumi.ResourceOptions(parent=role)
        )
        return IrsaRole(role, permissions, pulumi.Output.all(role.arn, permissions.id).apply(lambda a: a[0]))
