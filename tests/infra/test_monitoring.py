"""Monitoring built under mocks for dev (monitoring switched on) and prod: pinned chart, retention and volume per
settings, Grafana's password only in a Secret, ordering around the release, Alertmanager limited to the topic."""

import json

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc

from components.cluster import Cluster, ClusterArgs
from components.monitoring import (
    CHART_VERSION,
    DASHBOARD_FILE,
    EXTERNAL_METRICS,
    RULES_FILE,
    Monitoring,
    MonitoringArgs,
    load_dashboard,
    validate_monitoring_args,
    validate_rules,
)
from stacks.component_args import node_group_args
from stacks.settings import settings_from_pulumi
from tests.infra.pulumi_mocks import ACCOUNT_ID, GENERATED_SECRET, evaluate, stack_config

RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
TOPIC_ARN = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:clinic-alarms"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/0f1e2d3c-alarms"
DEV_MONITORING = {
    "monitoring": True,
    "prometheusRetentionDays": 3,
    "prometheusStorageGb": 20,
    "logRetentionDays": 7,
    "alarmEmails": [],
}


def build(stack: str, overrides: dict | None = None):
    """The cluster and Monitoring as __main__ wires them, from the committed stack file (plus overrides)."""
    config = stack_config(stack)
    for key, value in (overrides or {}).items():
        config[key] = json.dumps(value)

    def program():
        settings = settings_from_pulumi()
        tags = {**settings.tags, "project": "clinic-platform", "stack": stack, "environment": settings.environment}
        cluster = Cluster(
            f"clinic-{stack}-cluster",
            ClusterArgs(
                cluster_name=settings.cluster_name,
                kubernetes_version=settings.cluster.kubernetes_version,
                vpc_id="vpc-1",
                private_subnet_ids=["subnet-a", "subnet-b"],
                service_ipv4_cidr=settings.network.kubernetes_service_cidr,
                node_groups=node_group_args(settings.cluster),
                deploy_role_arn=settings.cluster.deploy_role_arn,
                api_client_security_group_ids=["sg-ci-runner"],
                tags=tags,
            ),
        )
        monitoring = Monitoring(
            f"clinic-{stack}-monitoring",
            MonitoringArgs(
                cluster=cluster,
                prometheus_retention_days=settings.observability.prometheus_retention_days,
                prometheus_storage_gb=settings.observability.prometheus_storage_gb,
                region=settings.region,
                tags=tags,
                alarm_topic_arn=pulumi.Output.from_input(TOPIC_ARN),
                alarm_topic_key_arn=KEY_ARN,
            ),
            opts=pulumi.ResourceOptions(depends_on=cluster.node_groups),
        )
        pulumi.export("alertmanagerRoleArn", monitoring.alertmanager_role_arn)
        pulumi.export("grafanaAdminSecret", monitoring.grafana_admin_secret)

    return evaluate(program, stack=stack, config=config)


@pytest.fixture(scope="module")
def dev():
    return build("dev", {"clinic-platform:observability": DEV_MONITORING})


@pytest.fixture(scope="module")
def prod():
    return build("prod")


@pytest.fixture(params=["dev", "prod"])
def graph(request, dev, prod):
    return {"dev": dev, "prod": prod}[request.param]


def release(graph):
    return graph.one(RELEASE, f"{graph.records[0].name.rsplit('-cluster', 1)[0]}-monitoring-release")


def test_release_is_the_pinned_chart_with_retention_and_volume_per_settings(dev, prod):
    for graph, days, gb in ((dev, 3, 20), (prod, 15, 100)):
        r = release(graph)
        assert r.inputs["chart"] == "kube-prometheus-stack" and r.inputs["version"] == CHART_VERSION == "88.5.3"
        assert r.inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
        assert r.inputs["namespace"] == "monitoring" and r.inputs["atomic"] is True
        spec = r.inputs["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == f"{days}d", r.name
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == f"{gb}Gi", r.name
        assert claim["storageClassName"] == "monitoring-gp3"
        assert (
            spec["serviceMonitorSelectorNilUsesHelmValues"] is False and spec["ruleSelectorNilUsesHelmValues"] is False
        )


def test_the_storage_class_is_encrypted_gp3_from_the_csi_driver_and_tags_its_volumes(graph):
    storage_class = graph.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage_class.inputs["metadata"]["name"] == "monitoring-gp3"
    assert storage_class.inputs["provisioner"] == "ebs.csi.aws.com"
    parameters = storage_class.inputs["parameters"]
    assert parameters["type"] == "gp3" and parameters["encrypted"] == "true"
    assert "project=clinic-platform" in parameters.values()
    addon = next(a for a in graph.of_type("aws:eks/addon:Addon") if a.name.endswith("-ebs-csi"))
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    assert graph.depends_on(release(graph), addon) and graph.depends_on(release(graph), storage_class)
    for group in graph.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert graph.depends_on(addon, group), "the add-on's pods need a node before it turns ACTIVE"


def test_chart_pods_that_never_call_the_kubernetes_api_mount_no_token(graph):
    """Alertmanager (its reloader watches files) and node-exporter (the chart's default, kept: no kube-rbac-proxy)."""
    values = release(graph).inputs["values"]
    assert values["alertmanager"]["alertmanagerSpec"]["automountServiceAccountToken"] is False
    assert "kubeRBACProxy" not in values["prometheus-node-exporter"]
    account = next(a for a in graph.of_type("kubernetes:core/v1:ServiceAccount") if a.name.endswith("alertmanager-sa"))
    assert account.inputs["automountServiceAccountToken"] is False


def test_every_pod_of_the_chart_runs_non_root_with_requests_and_limits(graph):
    values = release(graph).inputs["values"]
    resources = [
        values["prometheusOperator"]["resources"],
        values["kube-state-metrics"]["resources"],
        values["prometheus-node-exporter"]["resources"],
        values["prometheus"]["prometheusSpec"]["resources"],
        values["alertmanager"]["alertmanagerSpec"]["resources"],
        values["grafana"]["resources"],
        values["grafana"]["sidecar"]["resources"],
    ]
    for r in resources:
        assert r["requests"]["cpu"] and r["requests"]["memory"] and r["limits"]["cpu"] and r["limits"]["memory"], r
    for context in (
        values["prometheus"]["prometheusSpec"]["securityContext"],
        values["alertmanager"]["alertmanagerSpec"]["securityContext"],
        values["grafana"]["securityContext"],
    ):
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, context
    assert values["grafana"]["containerSecurityContext"]["allowPrivilegeEscalation"] is False


def test_grafana_password_exists_only_in_its_secret(graph):
    password = graph.one("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] >= 32
    secret = graph.one("kubernetes:core/v1:Secret")
    data = secret.inputs["stringData"]
    assert data[rpc._special_sig_key] == rpc._special_secret_sig, "the password stays a Pulumi secret in state"
    assert data["value"]["admin-password"] == GENERATED_SECRET
    grafana = release(graph).inputs["values"]["grafana"]
    assert grafana["admin"] == {
        "existingSecret": secret.inputs["metadata"]["name"],
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in grafana
    for resource in graph.records:
        if resource.type in (RELEASE, "kubernetes:core/v1:ConfigMap", SERVICE_MONITOR, PROMETHEUS_RULE):
            assert GENERATED_SECRET not in json.dumps(resource.inputs), f"{resource.name} carries the password"
    assert GENERATED_SECRET not in json.dumps({k: v for k, (v, _) in graph.exports.items()})
    assert graph.exports["grafanaAdminSecret"][0] == "grafana-admin"


def test_release_waits_for_node_groups_alertmanager_iam_and_the_grafana_secret(graph):
    r = release(graph)
    for group in graph.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert graph.depends_on(r, group), f"the release must depend on {group.name}"
    role = next(x for x in graph.of_type("aws:iam/role:Role") if x.name.endswith("monitoring-alertmanager-role"))
    policy = graph.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy")
    account = graph.one("kubernetes:core/v1:ServiceAccount")
    for dependency in (role, policy, account, graph.one("kubernetes:core/v1:Secret")):
        assert graph.depends_on(r, dependency), f"the release must depend on {dependency.name}"


def test_service_monitors_and_rules_are_created_after_the_release_and_deleted_before_it(graph):
    r = release(graph)
    monitors = {m.inputs["metadata"]["name"]: m for m in graph.of_type(SERVICE_MONITOR)}
    assert sorted(monitors) == ["clinic-api", "clinic-file-processor", "clinic-notifier"]
    for resource in [*monitors.values(), graph.one(PROMETHEUS_RULE)]:
        assert graph.deleted_before(resource, r), f"{resource.name} must depend on the release (its CRDs)"
        assert resource.provider == graph.one("pulumi:providers:kubernetes").urn, resource.name


def test_service_monitors_select_the_clinic_services_by_port_name(graph):
    monitors = {m.inputs["metadata"]["name"]: m.inputs["spec"] for m in graph.of_type(SERVICE_MONITOR)}
    for service, port in (
        ("clinic-api", "http"),
        ("clinic-notifier", "metrics"),
        ("clinic-file-processor", "metrics"),
    ):
        spec = monitors[service]
        assert spec["namespaceSelector"] == {"matchNames": ["clinic"]}, service
        assert spec["selector"] == {"matchLabels": {"app": service}}, service
        assert [(e["port"], e["path"]) for e in spec["endpoints"]] == [(port, "/metrics")], service


def test_rules_and_dashboard_are_the_repo_files(graph):
    rule = graph.one(PROMETHEUS_RULE)
    assert rule.inputs["metadata"]["namespace"] == "monitoring"
    assert rule.inputs["spec"] == yaml.safe_load(RULES_FILE.read_text())
    dashboard = graph.one("kubernetes:core/v1:ConfigMap")
    values = release(graph).inputs["values"]["grafana"]["sidecar"]["dashboards"]
    assert values["enabled"] is True
    assert (
        dashboard.inputs["metadata"]["labels"] == {values["label"]: values["labelValue"]} == {"grafana_dashboard": "1"}
    )
    assert json.loads(dashboard.inputs["data"]["clinic.json"]) == json.loads(DASHBOARD_FILE.read_text())


def test_alertmanager_role_may_only_publish_to_the_alarm_topic(graph):
    role = next(x for x in graph.of_type("aws:iam/role:Role") if x.name.endswith("monitoring-alertmanager-role"))
    statements = graph.one("aws:iam/rolePolicy:RolePolicy", role.name + "-policy").input("policy")["Statement"]
    assert [(s["Action"], s["Resource"]) for s in statements] == [
        ("sns:Publish", TOPIC_ARN),
        (["kms:GenerateDataKey*", "kms:Decrypt"], KEY_ARN),
    ]
    assert statements[1]["Condition"] == {"StringEquals": {"kms:ViaService": "sns.eu-west-1.amazonaws.com"}}
    condition = role.input("assumeRolePolicy", "Statement")[0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == ["system:serviceaccount:monitoring:alertmanager"]
    account = graph.one("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role.state["arn"]
    assert release(graph).inputs["values"]["alertmanager"]["serviceAccount"] == {
        "create": False,
        "name": "alertmanager",
    }


def test_every_alert_goes_to_the_alarm_topic_signed_for_the_region(graph):
    config = release(graph).inputs["values"]["alertmanager"]["config"]
    assert config["route"]["receiver"] == "alarm-topic"
    assert [r["receiver"] for r in config["route"]["routes"]] == ["null"], "only the chart's heartbeats are dropped"
    assert config["route"]["routes"][0]["matchers"] == ['alertname =~ "Watchdog|InfoInhibitor"']
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["alarm-topic"]["sns_configs"] == [
        {"topic_arn": TOPIC_ARN, "sigv4": {"region": "eu-west-1"}, "send_resolved": True}
    ]


def test_bad_arguments_are_refused_naming_the_value():
    def args(**overrides):
        return MonitoringArgs(
            **{
                **dict(
                    cluster=None,
                    prometheus_retention_days=3,
                    prometheus_storage_gb=20,
                    alarm_topic_arn=TOPIC_ARN,
                    alarm_topic_key_arn=KEY_ARN,
                    region="eu-west-1",
                ),
                **overrides,
            }
        )

    validate_monitoring_args(args())
    with pytest.raises(ValueError, match="alarm_topic_arn = 'arn:aws:sqs:x' is invalid"):
        validate_monitoring_args(args(alarm_topic_arn="arn:aws:sqs:x"))
    with pytest.raises(ValueError, match="prometheus_retention_days = 0 is invalid"):
        validate_monitoring_args(args(prometheus_retention_days=0))
    with pytest.raises(ValueError, match="prometheus_storage_gb = 5 is invalid"):
        validate_monitoring_args(args(prometheus_storage_gb=5))


def test_a_rule_without_severity_or_runbook_is_refused():
    spec = yaml.safe_load(RULES_FILE.read_text())
    rule = spec["groups"][0]["rules"][0]
    del rule["annotations"]["runbook"]
    with pytest.raises(ValueError, match=r"rule 'ClinicApiLatencyHigh' .* lacks annotations \['runbook'\]"):
        validate_rules(spec, "rules.yaml")
    rule["annotations"]["runbook"] = "x"
    rule["labels"]["severity"] = "page"
    with pytest.raises(ValueError, match="severity = 'page'; allowed: critical, warning"):
        validate_rules(spec, "rules.yaml")


def test_the_allowlist_names_the_exporter_of_each_metric():
    assert set(EXTERNAL_METRICS.values()) <= {"kube-state-metrics", "node-exporter"}
    assert len(EXTERNAL_METRICS) <= 8, "keep the allowlist small: app metrics belong in the apps"
    assert json.loads(load_dashboard())["uid"] == "clinic-overview"
