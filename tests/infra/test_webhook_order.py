"""No Service is created while the load balancer controller's webhooks could refuse it.

The controller registers admission webhooks; the chart's Service webhook is turned off (chart_values), and, as a
second guarantee that survives a chart default changing, every resource that creates a Service — directly, through a
Helm release or through an EKS add-on — depends on the controller's release, so the engine creates it only once the
controller's pods are ready (atomic release) and deletes it while the controller still runs.
"""

import runpy

import pulumi
import pulumi_kubernetes as k8s

from components.lb_controller import NLB_LOAD_BALANCER_CLASS, chart_values
from tests.infra.pulumi_mocks import ROOT, Graph, evaluate, stack_config

SERVICE = "kubernetes:core/v1:Service"
RELEASE = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"
# EKS add-ons that create no Service of their own, each with the reason.
ADDONS_WITHOUT_NEW_SERVICES = {
    "aws-ebs-csi-driver": "a controller Deployment and a node DaemonSet, no Service",
    "coredns": "its kube-dns Service is created by EKS with the control plane; the add-on adopts it (an UPDATE)",
}


def controller_release(graph: Graph):
    return next(r for r in graph.of_type(RELEASE) if r.name.endswith("lb-controller-release"))


def service_creators(graph: Graph):
    """Every resource in the graph that makes the API server create a Service."""
    release = controller_release(graph)
    addons = [a for a in graph.of_type(ADDON) if a.inputs["addonName"] not in ADDONS_WITHOUT_NEW_SERVICES]
    return [*graph.of_type(SERVICE), *[r for r in graph.of_type(RELEASE) if r is not release], *addons]


def created_before_controller(graph: Graph) -> list[str]:
    release = controller_release(graph)
    return sorted(r.name for r in service_creators(graph) if not graph.depends_on(r, release))


def test_every_service_creator_waits_for_the_controller(stack):
    creators = {r.name for r in service_creators(stack)}
    assert any(n.endswith("api-svc") for n in creators) and any(n.endswith("container-logs-addon") for n in creators)
    assert any(n.endswith("metrics-server") for n in creators) and any(n.endswith("autoscaler") for n in creators)
    assert created_before_controller(stack) == []


def test_prod_has_the_monitoring_release_among_them(prod):
    assert any(r.name.endswith("monitoring-release") for r in service_creators(prod))


def test_a_service_declared_without_the_edge_is_found():
    """The check above fails when an edge is missing: a Service declared with only the cluster's provider."""

    def build():
        platform = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")["platform"]
        k8s.core.v1.Service(
            "unordered-svc",
            opts=pulumi.ResourceOptions(provider=platform.cluster.provider),
            metadata={"name": "web", "namespace": "default"},
            spec={"selector": {"app": "web"}, "ports": [{"port": 80}]},
        )

    graph = evaluate(build, stack="dev", config=stack_config("dev"))
    assert created_before_controller(graph) == ["unordered-svc"]


def test_chart_turns_the_service_webhook_off_and_lets_pods_through_while_it_is_down():
    values = chart_values("clinic-dev", "eu-west-1", "vpc-1", 2, {})
    assert values["enableServiceMutatorWebhook"] is False
    assert values["podMutatorWebhookConfig"] == {"failurePolicy": "Ignore"}
    # Unset: the chart would apply the same selectors to its QUIC webhook, whose failurePolicy is always Fail.
    assert "webhookNamespaceSelectors" not in values


def test_controller_is_critical_and_spread_one_replica_per_node(stack):
    values = controller_release(stack).inputs["values"]
    assert values["priorityClassName"] == "system-cluster-critical"
    assert values["podDisruptionBudget"] == {"maxUnavailable": 1} and values["replicaCount"] == 2
    by_node = [c for c in values["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node and by_node[0]["whenUnsatisfiable"] == "DoNotSchedule" and by_node[0]["maxSkew"] == 1


def test_every_load_balancer_service_names_the_controllers_class(stack):
    """Without the Service webhook, a LoadBalancer Service without the class would get an in-tree classic ELB."""
    for service in stack.of_type(SERVICE):
        if service.input("spec", "type") == "LoadBalancer":
            assert service.input("spec", "loadBalancerClass") == NLB_LOAD_BALANCER_CLASS, service.name
