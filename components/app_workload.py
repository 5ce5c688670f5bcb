"""AppWorkload: one clinic app on the cluster — its service account and IRSA role, its migrations Job, its hardened
Deployment, its Service, autoscaler and disruption budget — each waiting for exactly what it needs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import Cluster
from limits.capacity import MIGRATION_POD

# Kubernetes specs are written here as dicts in the API's own camelCase, as manifests and the Kubernetes docs read. The
# SDK's ArgsDict types spell keys in snake_case although the engine takes camelCase as it is (pulumi/pulumi#16646), so
# mypy does not follow pulumi_kubernetes (pyproject.toml).

APP_UID = 10001
# The label the Deployment, Service, PDB and NetworkPolicies select an app's pods by; migrations Jobs use their own.
MIGRATE_LABEL = "clinic-migrate"


@dataclass(frozen=True)
class Shutdown:
    """How a pod leaves: kept serving while the load balancer stops sending to it, then drained by the app."""

    prestop_seconds: int
    """kubelet `sleep` before SIGTERM (0: none, for a pod no load balancer sends to)."""
    grace_seconds: int
    """terminationGracePeriodSeconds: after it the kubelet kills the container."""


@dataclass(frozen=True)
class AppWorkloadArgs:
    app: str
    """Name of the service account, Deployment, Service and PDB, and the pods' `app` label (`clinic-api`)."""
    namespace: str
    """Namespace the workload runs in."""
    cluster: Cluster
    """The cluster: Kubernetes provider and IRSA."""
    policy: pulumi.Input[str]
    """IAM policy (JSON): the only AWS permissions of the app's pods."""
    image: pulumi.Input[str]
    """Full image reference of the app."""
    release: pulumi.Input[str]
    """What names a release (the image's `repository@sha256:...`): a new value runs the migrations again."""
    env: Sequence[Mapping[str, Any]]
    """Container environment, shared by the migrations Job and the Deployment."""
    port: int
    """Container port the probes and the Service reach."""
    service_port: int
    """Port the Service exposes."""
    service_port_name: str
    """Name of the Service's port (`http`, `metrics`)."""
    cpu: str
    """CPU request (millicores, e.g. `250m`); the limit is twice it."""
    memory: str
    """Memory request and limit."""
    replicas: int
    """Replicas, or the autoscaler's minimum when `max_replicas` is set."""
    shutdown: Shutdown
    """preStop wait and termination grace period."""
    max_replicas: int | None = None
    """Autoscaler ceiling (CPU); None keeps `replicas` fixed."""
    migrate_module: str | None = None
    """`python -m` module run by the migrations Job before the Deployment rolls; None runs none."""
    after: Sequence[pulumi.Resource] = ()
    """What every Kubernetes object of the app waits for (its namespace)."""
    pods_read: Sequence[pulumi.Resource] = ()
    """Secrets the pods read: created before the migrations Job and the Deployment."""
    pods_after: Sequence[pulumi.Resource] = ()
    """What the Deployment waits for besides its own migrations: another app's migrations Job whose schema its pods
    use."""
    service_after: Sequence[pulumi.Resource] = ()
    """The Service also waits for these: the load balancer controller, whose webhooks intercept Services."""
    previous_parent: pulumi.Resource | None = None
    """The component these resources belonged to before this one existed: each child is aliased to its old URN, so
    splitting a component replaces nothing live."""
    previous_names: Mapping[str, str] = field(default_factory=dict)
    """Old logical names of children renamed in that move, by role (`deployment`, `pdb`)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for the IAM role."""


def validate_app_workload_args(args: AppWorkloadArgs) -> None:
    if args.max_replicas is not None and args.max_replicas < args.replicas:
        raise ValueError(
            f"{args.app}: max_replicas = {args.max_replicas} is invalid; allowed: at least replicas ({args.replicas})"
        )
    if args.shutdown.grace_seconds <= args.shutdown.prestop_seconds:
        raise ValueError(
            f"{args.app}: shutdown.grace_seconds = {args.shutdown.grace_seconds} is invalid; allowed: "
            f"more than prestop_seconds ({args.shutdown.prestop_seconds}), or the app never gets SIGTERM "
            "in time to drain"
        )


def restricted_pod(
    *,
    service_account: str,
    containers: list[dict[str, Any]],
    app: str,
    restart_policy: str | None = None,
    shutdown: Shutdown | None = None,
) -> dict[str, Any]:
    """A pod spec that passes the restricted Pod Security Standard, with a writable /tmp only and no Kubernetes API
    token: the clinic's apps never call the Kubernetes API (IRSA's web identity token is a volume of its own, which
    the EKS pod identity webhook adds whatever this says)."""
    for container in containers:
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        if shutdown and shutdown.prestop_seconds:
            # The kubelet's own sleep (on by default since Kubernetes 1.30): no shell needed in the image.
            container["lifecycle"] = {"preStop": {"sleep": {"seconds": shutdown.prestop_seconds}}}
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": app}},
            }
        ],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if shutdown:
        spec["terminationGracePeriodSeconds"] = shutdown.grace_seconds
    return spec


def http_probes(port: int) -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5, "failureThreshold": 2},
    }


def container_resources(cpu: str, memory: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": f"{int(cpu.removesuffix('m')) * 2}m", "memory": memory},
    }


def migrations_job_name(app: str, release: str) -> str:
    """A new release gets a new Job name, so each app's migrations run once per release, before its new pods."""
    return f"{app}-migrate-{hashlib.sha256(release.encode()).hexdigest()[:10]}"


class AppWorkload(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    """IRSA role of the app's pods (resolves once its policy is attached)."""
    deployment_name: pulumi.Output[str]
    """Name of the app's Deployment."""
    service_name: pulumi.Output[str]
    """Name of the app's Service."""

    def __init__(self, name: str, args: AppWorkloadArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:AppWorkload", name, None, opts)
        validate_app_workload_args(args)
        ns, app, provider = args.namespace, args.app, args.cluster.provider

        def aliases(role: str) -> list[pulumi.Alias] | None:
            if args.previous_parent is None:
                return None
            old_name = args.previous_names.get(role)
            return [pulumi.Alias(parent=args.previous_parent, **({"name": old_name} if old_name else {}))]

        def child(role: str, depends_on: Sequence[pulumi.Resource], **extra: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=list(depends_on), aliases=aliases(role), **extra
            )

        role = args.cluster.irsa_role(
            f"{name}-role", ns, app, policy=args.policy, parent=self, tags=args.tags, aliases=aliases("role")
        )
        # The annotation carries the role ARN, which resolves only once the policy is attached: everything that
        # waits for the service account waits for the permissions, and on destroy goes before them.
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            opts=child("sa", args.after),
            metadata={"name": app, "namespace": ns, "annotations": {"eks.amazonaws.com/role-arn": role.arn}},
            automount_service_account_token=False,
        )
        before_pods: list[pulumi.Resource] = [*args.after, *args.pods_read, account]
        self.migrations: k8s.batch.v1.Job | None = None

        if args.migrate_module:
            migrations = k8s.batch.v1.Job(
                f"{name}-migrate",
                opts=child(
                    "migrate",
                    before_pods,
                    delete_before_replace=True,
                    custom_timeouts=pulumi.CustomTimeouts(create="10m"),
                ),
                metadata={
                    "name": pulumi.Output.from_input(args.release).apply(lambda r: migrations_job_name(app, r)),
                    "namespace": ns,
                    "labels": {"app": app},
                },
                spec={
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 600,
                    "template": {
                        "metadata": {"labels": {"app": MIGRATE_LABEL}},
                        "spec": restricted_pod(
                            service_account=app,
                            app=MIGRATE_LABEL,
                            restart_policy="Never",
                            containers=[
                                {
                                    "name": "migrate",
                                    "image": args.image,
                                    "command": ["python", "-m", args.migrate_module],
                                    "env": list(args.env),
                                    "resources": container_resources(MIGRATION_POD.cpu, MIGRATION_POD.memory),
                                }
                            ],
                        ),
                    },
                },
            )
            before_pods.append(migrations)
            self.migrations = migrations

        container = {
            "name": app.removeprefix("clinic-"),
            "image": args.image,
            "env": list(args.env),
            "resources": container_resources(args.cpu, args.memory),
            "ports": [{"name": "http", "containerPort": args.port}],
            **http_probes(args.port),
        }
        autoscaled = args.max_replicas is not None
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            # The autoscaler owns `replicas` once it has scaled; with server-side apply, ignoring the field makes
            # pulumi-kubernetes leave it out of the apply (no field conflict) or re-send the live value (no reset
            # to 1), where dropping it from the spec would reset a Deployment only Pulumi ever scaled.
            opts=child(
                "deployment", [*before_pods, *args.pods_after], ignore_changes=["spec.replicas"] if autoscaled else None
            ),
            metadata={"name": app, "namespace": ns, "labels": {"app": app}},
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": {"app": app}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": restricted_pod(
                        service_account=app, app=app, containers=[container], shutdown=args.shutdown
                    ),
                },
            },
        )
        service = k8s.core.v1.Service(
            f"{name}-svc",
            opts=child("svc", [*args.after, *args.service_after]),
            metadata={"name": app, "namespace": ns, "labels": {"app": app}},
            spec={
                "type": "ClusterIP",
                "selector": {"app": app},
                "ports": [{"name": args.service_port_name, "port": args.service_port, "targetPort": args.port}],
            },
        )
        if autoscaled:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                opts=child("hpa", args.after),
                metadata={"name": app, "namespace": ns},
                spec={
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                    "minReplicas": args.replicas,
                    "maxReplicas": args.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                        }
                    ],
                },
            )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            opts=child("pdb", args.after),
            metadata={"name": app, "namespace": ns},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
        )

        self.service = service
        self.role_arn = role.arn
        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.register_outputs(
            {"role_arn": self.role_arn, "deployment_name": self.deployment_name, "service_name": self.service_name}
        )
