"""`python -m preview <stack>`: the offline preview runs for both committed stacks without credentials and its
views are consistent with the recorded graph."""

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from preview import costs, timing
from preview.__main__ import main
from preview.graph import ROOT, Graph, Registration

SECTIONS = (
    "## Resource tree",
    "## Counts by type",
    "## Create critical path",
    "## Delete order",
    "## Estimated monthly cost",
    "## Policy pack",
)


def run(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def views():
    """Both stacks' JSON views, produced by the command's own entry point."""
    out = {}
    for stack in ("dev", "prod"):
        capture = io.StringIO()
        with contextlib.redirect_stdout(capture):
            assert main([stack, "--json"]) == 0
        out[stack] = json.loads(capture.getvalue())
    return out


def test_the_command_runs_from_a_fresh_process_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    env.update(
        HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none")
    )
    done = subprocess.run(
        [sys.executable, "-m", "preview", "prod"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    positions = [done.stdout.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), positions


def test_text_output_has_every_view_for_both_stacks(capsys):
    for stack in ("dev", "prod"):
        text = run(capsys, stack)
        for section in SECTIONS:
            assert section in text, f"{stack}: {section}"


def test_an_unknown_stack_is_refused_with_the_allowed_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["staging"])
    assert exit_.value.code == 2
    assert "allowed: dev, prod" in capsys.readouterr().err


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_tree_counts_and_delete_order_cover_every_resource_once(views, stack):
    view = views[stack]

    def names(nodes):
        for n in nodes:
            yield n["name"]
            yield from names(n["children"])

    tree_names = list(names(view["tree"]))
    assert len(tree_names) == len(set(tree_names)) == view["resources"] == sum(view["counts"].values())
    assert sorted(view["deleteOrder"]) == sorted(tree_names)
    assert view["counts"]["eks:index:Cluster"] == 1


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_critical_path_is_a_chain_of_direct_dependencies(views, stack, request):
    graph: Graph = request.getfixturevalue(stack)
    steps = views[stack]["criticalPath"]["steps"]
    by_name = {r.name: r for r in graph.records}
    assert len(steps) >= 3
    for previous, step in zip(steps, steps[1:]):
        record = by_name[step["name"]]
        assert by_name[previous["name"]].urn in timing.create_dependencies(graph, record), (
            f"{step['name']} does not depend on {previous['name']}"
        )
        assert step["finishSeconds"] == previous["finishSeconds"] + step["seconds"]
    assert steps[0]["finishSeconds"] == steps[0]["seconds"]
    # Nothing takes longer alone than the whole path, and the EKS control plane is on it.
    assert steps[-1]["finishSeconds"] >= max(timing.create_seconds(r) for r in graph.records)
    assert "eks:index:Cluster" in [s["type"] for s in steps]
    assert views[stack]["criticalPath"]["minutes"] == round(steps[-1]["finishSeconds"] / 60, 1)


def registration(name, typ, deps=(), **inputs):
    return Registration(
        urn=f"urn:{name}",
        type=typ,
        name=name,
        custom=True,
        remote=False,
        parent="",
        provider="",
        dependencies=set(deps),
        property_dependencies={},
        deleted_with="",
        protect=False,
        retain_on_delete=False,
        delete_timeout="",
        inputs=inputs,
    )


def test_the_critical_path_takes_the_longest_branch_not_the_last_registered():
    records = [
        registration("vpc", "aws:ec2/vpc:Vpc"),
        registration("cluster", "eks:index:Cluster", ["urn:vpc"]),
        registration("nodes", "aws:eks/nodeGroup:NodeGroup", ["urn:cluster"]),
        registration("db", "aws:rds/instance:Instance", ["urn:vpc"], multiAz=False),
        registration("nat", "aws:ec2/natGateway:NatGateway", ["urn:vpc"]),
    ]
    path = timing.critical_path(Graph(records, {}))
    assert [s.record.name for s in path] == ["vpc", "cluster", "nodes"]
    assert path[-1].finish == 5 + 600 + 240
    # A Multi-AZ database (15 min) outlasts the cluster and its nodes (14 min) and becomes the path.
    records[3] = registration("db", "aws:rds/instance:Instance", ["urn:vpc"], multiAz=True)
    path = timing.critical_path(Graph(records, {}))
    assert [s.record.name for s in path] == ["vpc", "db"] and path[-1].finish == 5 + 15 * 60


def test_prod_costs_more_than_dev_and_every_line_adds_up(views):
    dev, prod = views["dev"]["cost"], views["prod"]["cost"]
    assert prod["monthlyUsd"] > dev["monthlyUsd"] > 0
    for cost in (dev, prod):
        assert cost["monthlyUsd"] == pytest.approx(sum(line["monthlyUsd"] for line in cost["lines"]), abs=0.01)
        assert cost["pricesRegion"] == "eu-west-1" and cost["pricesAsOf"]
        assert any("data processed by NAT" in e for e in cost["excluded"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cost_lines_follow_the_graph(views, stack, request):
    graph: Graph = request.getfixturevalue(stack)
    lines = views[stack]["cost"]["lines"]
    items = [line["item"] for line in lines]
    assert items.count("NAT gateway hours") == len(graph.of_type("aws:ec2/natGateway:NatGateway"))
    assert items.count("EKS control plane") == 1
    assert items.count("KMS customer-managed key") == len(graph.of_type("aws:kms/key:Key"))
    db = graph.one("aws:rds/instance:Instance")
    rds = next(line for line in lines if line["resource"] == db.name and line["item"].startswith("db."))
    copies = 2 if db.inputs["multiAz"] else 1
    expected = costs.RDS_POSTGRES_HOUR[db.inputs["instanceClass"]] * copies * costs.HOURS_PER_MONTH
    assert rds["monthlyUsd"] == pytest.approx(expected, abs=0.01)
    alarms = [line for line in lines if line["item"].startswith("CloudWatch alarm")]
    assert len(alarms) == len(graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) >= 8
    volume = [line for line in lines if line["item"].endswith("Prometheus volume")]
    if graph.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule"):  # monitoring on (prod)
        assert [line["item"] for line in volume] == ["100 GB gp3 Prometheus volume"]
        assert volume[0]["monthlyUsd"] == pytest.approx(100 * costs.EBS_GP3_GB_MONTH)
    else:
        assert not volume


def test_spot_nodes_are_discounted_and_ingress_groups_share_one_alb():
    group = {"alb.ingress.kubernetes.io/group.name": "clinic"}
    records = [
        registration(
            "od",
            "aws:eks/nodeGroup:NodeGroup",
            instanceTypes=["t3.large"],
            capacityType="ON_DEMAND",
            scalingConfig={"desiredSize": 2},
        ),
        registration(
            "spot",
            "aws:eks/nodeGroup:NodeGroup",
            instanceTypes=["t3.large"],
            capacityType="SPOT",
            scalingConfig={"desiredSize": 2},
        ),
        registration("api", "kubernetes:networking.k8s.io/v1:Ingress", metadata={"annotations": group}),
        registration("admin", "kubernetes:networking.k8s.io/v1:Ingress", metadata={"annotations": group}),
        registration("other", "kubernetes:networking.k8s.io/v1:Ingress", metadata={}),
    ]
    lines = {line.resource: line for line in costs.cost_lines(Graph(records, {}))}
    assert lines["spot"].monthly_usd == pytest.approx(lines["od"].monthly_usd * costs.SPOT_FACTOR, abs=0.01)
    assert sorted(lines) == ["api", "od", "other", "spot"]


def test_a_missing_price_is_reported_not_guessed():
    records = [
        registration("ng", "aws:eks/nodeGroup:NodeGroup", instanceTypes=["x9.huge"], scalingConfig={"desiredSize": 1})
    ]
    [line] = costs.cost_lines(Graph(records, {}))
    assert line.monthly_usd == 0 and "'x9.huge'" in line.unpriced and "preview/costs.py" in line.unpriced


def test_both_stacks_are_fully_priced(views):
    for stack, view in views.items():
        assert view["cost"]["unpriced"] == [], f"{stack}: {view['cost']['unpriced']}"


def test_every_database_class_the_settings_allow_has_a_price():
    from limits import DB_INSTANCE_CLASSES

    assert set(DB_INSTANCE_CLASSES) <= set(costs.RDS_POSTGRES_HOUR)


def test_the_preview_reports_policy_findings_of_the_stack(views):
    assert views["prod"]["policy"] == [] and views["dev"]["policy"] == []
