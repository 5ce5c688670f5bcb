"""`pulumi destroy` cannot reach the VPC while a Kubernetes-made load balancer exists.

The program is evaluated for each committed stack with a sample Ingress and a sample LoadBalancer Service declared
the way every workload must declare them (`LoadBalancerController.load_balancer_opts()`); the engine deletes a
resource before everything it depends on, so each assertion below is a guarantee on the real destroy order.
"""

import runpy

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.infra.pulumi_mocks import ROOT, Graph, evaluate, stack_config

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
SERVICE = "kubernetes:core/v1:Service"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EKS = "eks:index:Cluster"
JANITOR = "pulumi-python:dynamic:Resource"
NETWORK_TYPES = (
    "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/eip:Eip",
)


def with_load_balancers(stack: str, *, through_controller: bool = True) -> Graph:
    def build():
        platform = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")["platform"]
        opts = (
            platform.controller.load_balancer_opts()
            if through_controller
            else pulumi.ResourceOptions(provider=platform.cluster.provider)
        )
        k8s.networking.v1.Ingress(
            "sample-ingress",
            opts=opts,
            metadata={"name": "web", "namespace": "default"},
            spec={"ingressClassName": "alb", "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        )
        k8s.core.v1.Service(
            "sample-nlb",
            opts=opts,
            metadata={"name": "tcp", "namespace": "default"},
            spec={
                "type": "LoadBalancer",
                "loadBalancerClass": "service.k8s.aws/nlb",
                "ports": [{"port": 443}],
                "selector": {"app": "tcp"},
            },
        )

    return evaluate(build, stack=stack, config=stack_config(stack))


@pytest.fixture(scope="module", params=["dev", "prod"])
def graph(request) -> Graph:
    return with_load_balancers(request.param)


def load_balancer_owners(graph: Graph):
    owners = graph.of_type(INGRESS) + [s for s in graph.of_type(SERVICE) if s.input("spec", "type") == "LoadBalancer"]
    names = sorted(o.name for o in owners)
    assert "sample-ingress" in names and "sample-nlb" in names and any(n.endswith("apps-ingress") for n in names), (
        f"expected the clinic's Ingress and both samples, got {names}"
    )
    return owners


def controller_release(graph: Graph):
    """The load balancer controller's release (prod also has kube-prometheus-stack's)."""
    return next(r for r in graph.of_type(RELEASE) if r.name.endswith("lb-controller-release"))


def assert_deleted_before(graph: Graph, first, then) -> None:
    assert graph.deleted_before(first, then), f"{first.name} must be deleted before {then.name}"
    order = [r.urn for r in graph.delete_order()]
    assert order.index(first.urn) < order.index(then.urn), f"delete order puts {then.name} before {first.name}"


def test_ingress_and_lb_service_are_deleted_before_the_controller_release(graph):
    release = controller_release(graph)
    for owner in load_balancer_owners(graph):
        assert_deleted_before(graph, owner, release)


def test_controller_is_deleted_before_the_node_groups_and_the_cluster(graph):
    release, cluster = controller_release(graph), graph.one(EKS)
    for group in graph.of_type(NODE_GROUP):
        assert_deleted_before(graph, release, group)
        assert_deleted_before(graph, group, cluster)


def janitors(graph: Graph):
    """The sweep after the cluster (before subnets, gateways, VPC) and the one after the nodes (before the egress)."""
    janitor = next(r for r in graph.of_type(JANITOR) if r.name.endswith("lb-janitor"))
    egress = next(r for r in graph.of_type(JANITOR) if r.name.endswith("lb-janitor-egress"))
    return janitor, egress


def is_egress(resource) -> bool:
    return resource.type == "aws:ec2/natGateway:NatGateway" or (
        resource.type == "aws:ec2/route:Route" and bool(resource.inputs.get("natGatewayId"))
    )


def test_cluster_is_deleted_before_the_janitor_and_the_janitor_before_the_network(graph):
    cluster, (janitor, egress_janitor) = graph.one(EKS), janitors(graph)
    assert_deleted_before(graph, cluster, janitor)
    for group in graph.of_type(NODE_GROUP):
        assert_deleted_before(graph, group, egress_janitor)
    network = [r for t in NETWORK_TYPES for r in graph.of_type(t)]
    assert len(network) > 10 and any(is_egress(r) for r in network)
    for resource in network:
        # Every network resource goes after a sweep: NAT and its routes after the one that follows the last node,
        # everything else (subnets, internet gateway, route tables) after the one that follows the cluster.
        assert_deleted_before(graph, egress_janitor if is_egress(resource) else janitor, resource)
    vpc = graph.one("aws:ec2/vpc:Vpc")
    for subnet in graph.of_type("aws:ec2/subnet:Subnet"):
        assert_deleted_before(graph, subnet, vpc)
        assert_deleted_before(graph, janitor, subnet)


def test_the_control_plane_waits_for_its_subnets_not_for_nat_and_the_nodes_wait_for_egress(graph):
    cluster = graph.one(EKS)
    egress = [r for t in NETWORK_TYPES for r in graph.of_type(t) if is_egress(r)]
    assert egress
    for resource in egress:
        assert not graph.depends_on(cluster, resource), f"the control plane must not wait for {resource.name}"
        for group in graph.of_type(NODE_GROUP):
            assert graph.depends_on(group, resource), f"{group.name} must wait for {resource.name}"
    for subnet in graph.of_type("aws:ec2/subnet:Subnet"):
        if "private" in subnet.name:
            assert graph.depends_on(cluster, subnet)


def test_whole_chain_from_every_load_balancer_to_the_vpc(graph):
    chain = [
        controller_release(graph),
        graph.of_type(NODE_GROUP)[0],
        graph.one(EKS),
        janitors(graph)[0],
        graph.of_type("aws:ec2/subnet:Subnet")[0],
        graph.one("aws:ec2/vpc:Vpc"),
    ]
    order = [r.urn for r in graph.delete_order()]
    for owner in load_balancer_owners(graph):
        positions = [order.index(r.urn) for r in [owner, *chain]]
        assert positions == sorted(positions), [r.name for r in [owner, *chain]]


def test_nothing_that_owns_a_load_balancer_skips_its_provider_delete(graph):
    for resource in [*load_balancer_owners(graph), controller_release(graph), graph.one(EKS), *janitors(graph)]:
        assert not resource.deleted_with, f"{resource.name} must be deleted by its provider, not with its parent"
        assert not resource.retain_on_delete, f"{resource.name} must really be deleted"


def test_janitor_targets_this_cluster_and_this_vpc(graph):
    for janitor in janitors(graph):
        assert janitor.inputs["cluster_name"] == graph.one(EKS).inputs["name"]
        assert janitor.inputs["vpc_id"] == graph.one("aws:ec2/vpc:Vpc").name + "-id"


def test_data_services_stay_off_the_cluster_chain(graph):
    cluster_side = [graph.one(EKS), controller_release(graph), *janitors(graph), *load_balancer_owners(graph)]
    data = [
        *graph.of_type("aws:rds/instance:Instance"),
        *graph.of_type("aws:s3/bucket:Bucket"),
        *graph.of_type("aws:sqs/queue:Queue"),
        *graph.of_type("aws:sesv2/emailIdentity:EmailIdentity"),
    ]
    assert len(data) >= 8
    for service in data:
        for resource in cluster_side:
            assert not graph.depends_on(service, resource), f"{service.name} must not wait on {resource.name}"
            assert not graph.depends_on(resource, service), f"{resource.name} must not wait on {service.name}"


def test_an_ingress_declared_without_the_controller_edge_would_not_be_ordered():
    """The check above can fail: without load_balancer_opts() nothing orders the Ingress before the controller,
    and the engine may uninstall the controller first, orphaning the ALB."""
    graph = with_load_balancers("dev", through_controller=False)
    ingress, release = graph.one(INGRESS, "sample-ingress"), controller_release(graph)
    assert not graph.deleted_before(ingress, release)


def test_prometheus_goes_while_the_nodes_still_run_and_its_custom_resources_before_it(prod):
    monitoring = next(r for r in prod.of_type(RELEASE) if r.name.endswith("monitoring-release"))
    for group in prod.of_type(NODE_GROUP):
        assert_deleted_before(prod, monitoring, group)
    custom = [r for r in prod.records if r.type.startswith("kubernetes:monitoring.coreos.com/")]
    assert {r.type.rsplit(":", 1)[1] for r in custom} >= {"ServiceMonitor", "PrometheusRule"}, custom
    for resource in custom:
        assert_deleted_before(prod, resource, monitoring)


def test_prods_create_path_is_within_5_percent_of_the_chain_that_cannot_be_shortened(prod):
    """VPC → subnet → control plane → node group → controller → Ingress must be waited for whatever the graph;
    the estimated `pulumi up` (preview/timing.py) may add only seconds to it, never the NAT gateways' two minutes."""
    from preview import timing

    chain = [
        prod.one("aws:ec2/vpc:Vpc"),
        prod.of_type("aws:ec2/subnet:Subnet")[0],
        prod.one(EKS),
        prod.of_type(NODE_GROUP)[0],
        controller_release(prod),
        next(i for i in prod.of_type(INGRESS) if i.name.endswith("apps-ingress")),
    ]
    floor = sum(timing.create_seconds(r) for r in chain)
    path = timing.critical_path(prod)
    assert path[-1].finish <= 1.05 * floor, f"critical path {path[-1].finish} s > 105 % of {floor} s: " + " → ".join(
        s.record.name for s in path
    )


def test_dev_destroy_stops_the_trail_before_emptying_and_deleting_its_log_bucket(dev):
    """The trail writes until it is deleted; its bucket is emptied (force_destroy, every version) only after. Were it
    the other way round, CloudTrail could deliver a file into a bucket being deleted."""
    trail = dev.one("aws:cloudtrail/trail:Trail")
    logs = dev.one("aws:s3/bucket:Bucket", "clinic-dev-audit-logs")
    assert logs.inputs["forceDestroy"] is True and not logs.protect and not logs.retain_on_delete
    for then in (logs, dev.one("aws:s3/bucketPolicy:BucketPolicy", "clinic-dev-audit-logs-policy")):
        assert_deleted_before(dev, trail, then)
    # It also records reads of the exam bucket until the end: the exam bucket goes after it.
    assert_deleted_before(dev, trail, dev.one("aws:s3/bucket:Bucket", "clinic-dev-exams-bucket"))
    assert not dev.of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig"), "dev keeps no replica"


def test_prod_destroy_keeps_the_audit_logs_and_the_exam_replica(prod):
    for name in ("clinic-prod-audit-logs", "clinic-prod-exams-replica"):
        bucket = prod.one("aws:s3/bucket:Bucket", name)
        assert bucket.protect and bucket.retain_on_delete and bucket.inputs["forceDestroy"] is False, name
    for name in ("clinic-prod-audit-key", "clinic-prod-exams-replica-key"):
        key = prod.one("aws:kms/key:Key", name)
        assert key.protect and key.retain_on_delete, f"{name}: kept files need their key"
