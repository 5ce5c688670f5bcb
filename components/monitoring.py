"""Monitoring: kube-prometheus-stack (Prometheus, Alertmanager, Grafana) watching the clinic's apps, its rules and
dashboard from the repo, and Alertmanager publishing to the same SNS topic as the CloudWatch alarms."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.cluster import Cluster, irsa_trust_policy
from components.volume_reaper import VolumeReaper, VolumeReaperArgs
from limits import REGION_PATTERN

# 88.5.3 (operator v0.93.1, Alertmanager v0.34) is the newest release whose values.yaml these values were checked
# against key by key. Helm installs the chart's CRDs on first install only: a major upgrade starts with applying
# the new version's CRDs (`kubectl apply --server-side -f charts/crds/crds/` of that tag).
# renovate: datasource=helm depName=kube-prometheus-stack registryUrl=https://prometheus-community.github.io/helm-charts
CHART_VERSION = "88.5.3"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
RELEASE_NAME = "kube-prometheus-stack"
NAMESPACE = "monitoring"
ALERTMANAGER_SERVICE_ACCOUNT = "alertmanager"
GRAFANA_ADMIN_SECRET = "grafana-admin"
# The Prometheus data source the chart provisions in Grafana; the dashboard's panels refer to it by this uid.
PROMETHEUS_DATASOURCE_UID = "prometheus"
DASHBOARD_LABEL = ("grafana_dashboard", "1")
# gp3 volumes come from the EBS CSI driver (the in-tree provisioner is gone since Kubernetes 1.27).
STORAGE_CLASS = "monitoring-gp3"
# Prometheus' claim, as the operator's StatefulSet names it (<template>-<statefulset>-<ordinal>, the StatefulSet
# being prometheus-<Prometheus resource>; the template name pinned to the operator's default). helm uninstall never
# deletes a StatefulSet's claims: the StatefulSet's retention policy does, and the VolumeReaper waits for the volume.
PROMETHEUS_VOLUME = "prometheus-kube-prometheus-stack-prometheus-db"
PROMETHEUS_CLAIM = f"{PROMETHEUS_VOLUME}-prometheus-kube-prometheus-stack-prometheus-0"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
# Prometheus stops keeping samples when the TSDB reaches this share of its volume, before the disk is full.
RETENTION_SIZE_SHARE = 0.85
RELEASE_TIMEOUT_SECONDS = 900
RULES_FILE = Path(__file__).with_name("monitoring_rules.yaml")
DASHBOARD_FILE = Path(__file__).with_name("monitoring_dashboard.json")
SEVERITIES = ("critical", "warning")
RULE_ANNOTATIONS = ("summary", "description", "runbook")
CLINIC_NAMESPACE = "clinic"
PROBE_ROUTES = ("/healthz", "/readyz", "/metrics")

# Metrics the rules and the dashboard may use without the clinic's apps exporting them, each with the exporter
# of the chart that does. Anything else they name must come from the apps (tests/apps/test_metric_names.py).
EXTERNAL_METRICS: dict[str, str] = {
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "node_filesystem_avail_bytes": "node-exporter",
    "node_filesystem_size_bytes": "node-exporter",
    "node_filesystem_readonly": "node-exporter",
}


@dataclass(frozen=True)
class ScrapeTarget:
    """A clinic Service Prometheus scrapes."""

    service: str
    """Service name (its `app` label has the same value)."""
    port: str
    """Name of the Service port serving /metrics."""
    path: str = "/metrics"
    """Path of the metrics endpoint."""


# The Services ClinicApps creates in the clinic namespace (its NetworkPolicies admit scrapes from `monitoring`).
SCRAPE_TARGETS = (
    ScrapeTarget("clinic-api", "http"),
    ScrapeTarget("clinic-notifier", "metrics"),
    ScrapeTarget("clinic-file-processor", "metrics"),
)


@dataclass(frozen=True)
class MonitoringArgs:
    cluster: Cluster
    """The cluster (Kubernetes provider, IRSA, node groups)."""
    prometheus_retention_days: int
    """Days Prometheus keeps samples (1-90)."""
    prometheus_storage_gb: int
    """Size of Prometheus' persistent volume (10-1000 GiB)."""
    alarm_topic_arn: pulumi.Input[str]
    """SNS topic of the CloudWatch alarms; Alertmanager publishes every alert there too."""
    alarm_topic_key_arn: pulumi.Input[str]
    """KMS key the alarm topic is encrypted with (publishing needs a data key)."""
    region: str
    """AWS region of the topic (Alertmanager signs its SNS calls for it)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for the IAM roles, the EBS CSI add-on and the volumes it creates."""
    wait_for: Sequence[pulumi.Resource] = ()
    """The release is created after these: the load balancer controller, whose webhooks would intercept its Services."""


def validate_monitoring_args(args: MonitoringArgs) -> None:
    s = args
    if not 1 <= s.prometheus_retention_days <= 90:
        raise ValueError(f"prometheus_retention_days = {s.prometheus_retention_days} is invalid; allowed: 1 to 90")
    if not 10 <= s.prometheus_storage_gb <= 1000:
        raise ValueError(f"prometheus_storage_gb = {s.prometheus_storage_gb} is invalid; allowed: 10 to 1000")
    if not re.fullmatch(REGION_PATTERN, args.region):
        raise ValueError(f"region = {args.region!r} is invalid; allowed: an AWS region such as eu-west-1")
    if isinstance(args.alarm_topic_arn, str) and not args.alarm_topic_arn.startswith("arn:aws:sns:"):
        raise ValueError(f"alarm_topic_arn = {args.alarm_topic_arn!r} is invalid; allowed: an SNS topic ARN")


def alertmanager_policy(topic_arn: str, key_arn: str, region: str) -> str:
    """Publish to the alarm topic only, and use its key only through SNS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
                {
                    "Sid": "AlarmTopicKey",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                    "Resource": key_arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}},
                },
            ],
        }
    )


def alertmanager_config(topic_arn: str, region: str) -> dict[str, Any]:
    """Every alert to the alarm topic. The chart's Watchdog (always firing, a heartbeat for an external dead man's
    switch) and InfoInhibitor (a helper for inhibition) are not alerts anyone should be emailed about."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "alarm-topic",
            "group_by": ["alertname", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [{"receiver": "null", "matchers": ['alertname =~ "Watchdog|InfoInhibitor"']}],
        },
        "receivers": [
            {"name": "null"},
            {
                "name": "alarm-topic",
                "sns_configs": [
                    {
                        "topic_arn": topic_arn,
                        # No keys: the SDK's default chain picks up the IRSA web identity of the service account.
                        "sigv4": {"region": region},
                        "send_resolved": True,
                    }
                ],
            },
        ],
        "inhibit_rules": [
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity = "warning"'],
                "equal": ["alertname", "namespace"],
            }
        ],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


# readOnlyRootFilesystem stays at the grafana chart's default (off): its mounts were not checked to cover every
# path Grafana and its sidecar write to.
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def chart_values(retention_days: int, storage_gb: int, topic_arn: str, region: str) -> dict[str, Any]:
    non_root = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 2000,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        # EKS runs etcd, the scheduler and the controller manager out of reach, and kube-proxy serves metrics on
        # localhost only: scraping them would only raise TargetDown alerts.
        "kubeEtcd": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "defaultRules": {"rules": {"windows": False}},
        "prometheusOperator": {"resources": _resources("100m", "128Mi", "500m", "256Mi")},
        "kube-state-metrics": {"resources": _resources("50m", "128Mi", "250m", "256Mi")},
        "prometheus-node-exporter": {"resources": _resources("50m", "64Mi", "250m", "128Mi")},
        "prometheus": {
            "prometheusSpec": {
                "retention": f"{retention_days}d",
                "retentionSize": f"{int(storage_gb * RETENTION_SIZE_SHARE)}GB",
                # Select every ServiceMonitor and PrometheusRule, not only those labelled with this release: the
                # clinic's own objects carry no Helm labels.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "metadata": {"name": PROMETHEUS_VOLUME},
                        "spec": {
                            "storageClassName": STORAGE_CLASS,
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": f"{storage_gb}Gi"}},
                        },
                    }
                },
                # The claim goes with the StatefulSet (deleted with the release): metrics are not patient data, and a
                # destroyed stack must not keep paying for an orphaned EBS volume. The VolumeReaper waits for the
                # volume.
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "resources": _resources("250m", "1Gi", "1", "2Gi"),
                "securityContext": non_root,
            }
        },
        "alertmanager": {
            "serviceAccount": {"create": False, "name": ALERTMANAGER_SERVICE_ACCOUNT},
            "config": alertmanager_config(topic_arn, region),
            "alertmanagerSpec": {
                "resources": _resources("50m", "64Mi", "200m", "128Mi"),
                "securityContext": non_root,
                # Neither Alertmanager nor its config reloader (it watches mounted files) calls the
                # Kubernetes API; IRSA's token is a volume of its own.
                "automountServiceAccountToken": False,
            },
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "defaultDashboardsTimezone": "utc",
            "resources": _resources("100m", "256Mi", "500m", "512Mi"),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 472,
                "runAsGroup": 472,
                "fsGroup": 472,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containerSecurityContext": _CONTAINER_SECURITY,
            "sidecar": {
                "resources": _resources("50m", "64Mi", "200m", "128Mi"),
                "securityContext": _CONTAINER_SECURITY,
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL[0], "labelValue": DASHBOARD_LABEL[1]},
                "datasources": {"enabled": True, "uid": PROMETHEUS_DATASOURCE_UID},
            },
        },
    }


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    """The PrometheusRule spec from the repo, refused when a rule lacks what the on-call person needs."""
    spec = yaml.safe_load(path.read_text())
    validate_rules(spec, path.name)
    return spec


def validate_rules(spec: Any, source: str) -> None:
    if not isinstance(spec, dict) or not spec.get("groups"):
        raise ValueError(f"{source} has no `groups`; allowed: a PrometheusRule spec with at least one group")
    names: set[str] = set()
    for group in spec["groups"]:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record") or "?"
            where = f"{source}: rule {name!r} (group {group.get('name')!r})"
            if "alert" not in rule:
                raise ValueError(f"{where} is not an alerting rule; allowed: alerts only")
            if name in names:
                raise ValueError(f"{where} repeats an alert name; allowed: each alert once")
            names.add(name)
            if not str(rule.get("expr", "")).strip():
                raise ValueError(f"{where} has no expr")
            if not re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))):
                raise ValueError(f"{where} has for = {rule.get('for')!r}; allowed: a duration such as 5m")
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                raise ValueError(f"{where} has severity = {severity!r}; allowed: {', '.join(SEVERITIES)}")
            missing = [a for a in RULE_ANNOTATIONS if not (rule.get("annotations") or {}).get(a)]
            if missing:
                raise ValueError(f"{where} lacks annotations {missing}; allowed: {', '.join(RULE_ANNOTATIONS)} all set")


def load_dashboard(path: Path = DASHBOARD_FILE) -> str:
    """The dashboard JSON from the repo, checked to query the data source the chart provisions."""
    dashboard = json.loads(path.read_text())
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid != PROMETHEUS_DATASOURCE_UID:
                raise ValueError(
                    f"{path.name}: panel {panel.get('title')!r} queries data source uid = {uid!r}; "
                    f"allowed: {PROMETHEUS_DATASOURCE_UID!r}"
                )
    return json.dumps(dashboard, indent=1)


def service_monitor_spec(target: ScrapeTarget) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchNames": [CLINIC_NAMESPACE]},
        "selector": {"matchLabels": {"app": target.service}},
        "endpoints": [{"port": target.port, "path": target.path, "interval": "30s", "scrapeTimeout": "10s"}],
    }


class Monitoring(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    """Namespace of Prometheus, Alertmanager and Grafana."""
    release_name: pulumi.Output[str | None]
    """Helm release name of kube-prometheus-stack."""
    alertmanager_role_arn: pulumi.Output[str]
    """IRSA role Alertmanager publishes to the alarm topic with."""
    grafana_admin_secret: pulumi.Output[str]
    """Name of the Kubernetes Secret holding Grafana's admin login (read it with kubectl; never exported)."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Monitoring", name, None, opts)
        validate_monitoring_args(args)
        rules, dashboard = load_rules(), load_dashboard()
        cluster, tags = args.cluster, dict(args.tags)
        in_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider)

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            opts=in_cluster,
            metadata={
                "name": NAMESPACE,
                "labels": {
                    # node-exporter needs the host's network, PID namespace and root filesystem to report node disks;
                    # every other pod of the chart runs as non-root by the values below.
                    "pod-security.kubernetes.io/enforce": "privileged",
                    "pod-security.kubernetes.io/warn": "baseline",
                },
            },
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[namespace])

        storage = self._ebs_storage(name, cluster, tags)
        # On destroy, after the release (its StatefulSet, and with it the claim, are gone) and before the CSI driver
        # and the nodes that detach and delete the volume: waits until Prometheus' EBS volume is gone.
        reaper = VolumeReaper(
            f"{name}-prometheus-volume-reaper",
            VolumeReaperArgs(region=args.region, namespace=NAMESPACE, claim=PROMETHEUS_CLAIM, tags=tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*storage, *cluster.node_groups]),
        )

        alertmanager_role = cluster.irsa_role(
            f"{name}-alertmanager-role",
            NAMESPACE,
            ALERTMANAGER_SERVICE_ACCOUNT,
            parent=self,
            tags=tags,
            policy=pulumi.Output.all(args.alarm_topic_arn, args.alarm_topic_key_arn).apply(
                lambda a: alertmanager_policy(a[0], a[1], args.region)
            ),
        )
        alertmanager_account = k8s.core.v1.ServiceAccount(
            f"{name}-alertmanager-sa",
            opts=in_ns,
            metadata={
                "name": ALERTMANAGER_SERVICE_ACCOUNT,
                "namespace": NAMESPACE,
                "annotations": {"eks.amazonaws.com/role-arn": alertmanager_role.arn},
            },
            automount_service_account_token=False,
        )

        # Generated here, kept encrypted in Pulumi's state, handed to Grafana only as a Kubernetes Secret.
        password = random.RandomPassword(
            f"{name}-grafana-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        grafana_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            opts=in_ns,
            type="Opaque",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE},
            string_data={"admin-user": "admin", "admin-password": password.result},
        )

        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=RELEASE_NAME,
            chart="kube-prometheus-stack",
            version=CHART_VERSION,
            repository_opts={"repo": CHART_REPOSITORY},
            namespace=NAMESPACE,
            values=pulumi.Output.from_input(args.alarm_topic_arn).apply(
                lambda arn: chart_values(args.prometheus_retention_days, args.prometheus_storage_gb, arn, args.region)
            ),
            timeout=RELEASE_TIMEOUT_SECONDS,
            atomic=True,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.provider,
                # Pods need nodes, Prometheus' volume needs the CSI driver, Alertmanager needs its credentials and
                # Grafana its login before the (atomic) release can be ready; on destroy all of them outlive it.
                depends_on=[
                    *cluster.node_groups,
                    namespace,
                    *storage,
                    reaper,
                    alertmanager_account,
                    grafana_secret,
                    *args.wait_for,
                ],
            ),
        )

        # The CRDs come with the release: the custom resources are created after it and deleted before it.
        after_release = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])
        for target in SCRAPE_TARGETS:
            k8s.apiextensions.CustomResource(
                f"{name}-{target.service}-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": target.service, "namespace": NAMESPACE, "labels": {"app": target.service}},
                spec=service_monitor_spec(target),
                opts=after_release,
            )
        k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": "clinic", "namespace": NAMESPACE},
            spec=rules,
            opts=after_release,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            opts=in_ns,
            data={"clinic.json": dashboard},
            metadata={"name": "clinic-dashboard", "namespace": NAMESPACE, "labels": dict([DASHBOARD_LABEL])},
        )

        self.namespace = namespace.metadata.name
        self.release_name = self.release.name
        self.alertmanager_role_arn = alertmanager_role.arn
        self.grafana_admin_secret = grafana_secret.metadata.name
        self.register_outputs(
            {
                "namespace": self.namespace,
                "release_name": self.release_name,
                "alertmanager_role_arn": self.alertmanager_role_arn,
                "grafana_admin_secret": self.grafana_admin_secret,
            }
        )

    def _ebs_storage(self, name: str, cluster: Cluster, tags: dict[str, str]) -> list[pulumi.Resource]:
        """The EBS CSI driver (an EKS add-on with its own IRSA role) and an encrypted gp3 StorageClass whose volumes
        carry the platform's tags. Move both to Cluster when a second workload needs volumes."""
        role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
            assume_role_policy=pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_provider_url).apply(
                lambda a: irsa_trust_policy(a[0], a[1], "kube-system", EBS_CSI_SERVICE_ACCOUNT)
            ),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi-policy",
            role=role.name,
            policy_arn=EBS_CSI_POLICY,
            opts=pulumi.ResourceOptions(parent=role),
        )
        addon = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=cluster.cluster_name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=tags,
            # The add-on only turns ACTIVE once its pods run on a node, with their permissions attached.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*cluster.node_groups, attachment]),
        )
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider),
            metadata={"name": STORAGE_CLASS},
            provisioner="ebs.csi.aws.com",
            # Bind in the zone the pod is scheduled to (an EBS volume cannot follow it to another AZ).
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Delete",
            allow_volume_expansion=True,
            parameters={
                "type": "gp3",
                "encrypted": "true",
                "csi.storage.k8s.io/fstype": "ext4",
                **{f"tagSpecification_{i}": f"{k}={v}" for i, (k, v) in enumerate(sorted(tags.items()), 1)},
            },
        )
        return [role, attachment, addon, storage_class]
