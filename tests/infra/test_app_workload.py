"""AppWorkload: one component per clinic app, split out of ClinicApps without replacing anything live, each
resource waiting for exactly what it needs (the IRSA role's ARN resolves only after its policy)."""

import dataclasses
import json
from pathlib import Path

import pytest

from components.app_workload import AppWorkloadArgs, Shutdown, validate_app_workload_args
from preview.graph import Graph
from preview.urns import match_state

BEFORE_SPLIT = json.loads((Path(__file__).parent / "snapshots" / "clinic_apps_urns_before_split.json").read_text())
WORKLOAD = "clinic:index:AppWorkload"
# The image repositories left ClinicApps for ImageRegistry under per-cluster names (`clinic-dev/api`): a new name
# replaces a repository whatever its URN, so these are replaced on purpose (README "Repository names").
REPLACED_ON_PURPOSE = ("aws:ecr/repository:Repository", "aws:ecr/lifecyclePolicy:LifecyclePolicy")


def lost(before: list[str], matched: set[str]) -> list[str]:
    """URNs of the old state no resource of the new graph claims, but for the repositories replaced on purpose."""
    return sorted(
        urn for urn in set(before) - matched if urn.split("::")[2].rsplit("$", 1)[-1] not in REPLACED_ON_PURPOSE
    )


ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_resource_clinic_apps_had_keeps_its_urn_or_is_aliased_to_it(name, dev, prod):
    graph = {"dev": dev, "prod": prod}[name]
    matched = match_state(graph, BEFORE_SPLIT[name], name)
    assert not matched.errors
    assert lost(BEFORE_SPLIT[name], matched.matched) == [], "these would be deleted and created again"
    assert len(set(BEFORE_SPLIT[name]) - matched.matched) == 4, "two repositories and their lifecycle policies"
    moved = {old.rsplit("::", 1)[1] for old in matched.aliased.values()}
    assert f"clinic-{name}-apps-api" in moved and f"clinic-{name}-apps-clinic-api-pdb" in moved, (
        "renamed children are found through their old names"
    )
    assert f"clinic-{name}-apps-api-role-policy" in moved, "a role's policy follows the role (inherited alias)"


def test_an_alias_left_out_shows_as_a_replacement(dev):
    """The check above is only as good as the engine model: drop one alias and the old PDB is no longer matched."""
    pdb = next(r for r in dev.records if r.name == "clinic-dev-apps-api-pdb")
    records = [dataclasses.replace(r, aliases=[]) if r is pdb else r for r in dev.records]
    matched = match_state(Graph(records, dev.exports), BEFORE_SPLIT["dev"], "dev")
    assert set(lost(BEFORE_SPLIT["dev"], matched.matched)) == {
        "urn:pulumi:dev::clinic-platform::clinic:index:ClinicApps$kubernetes:policy/v1:PodDisruptionBudget"
        "::clinic-dev-apps-clinic-api-pdb"
    }


def test_each_app_is_one_workload_holding_its_own_objects(stack):
    apps = stack.one("clinic:index:ClinicApps")
    workloads = {w.name: w for w in stack.of_type(WORKLOAD)}
    assert {w.parent for w in workloads.values()} == {apps.urn}
    for app, kinds in (
        (
            "api",
            {
                "ServiceAccount",
                "Role",
                "RolePolicy",
                "Job",
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
            },
        ),
        ("notifier", {"ServiceAccount", "Role", "RolePolicy", "Job", "Deployment", "Service", "PodDisruptionBudget"}),
    ):
        workload = next(w for n, w in workloads.items() if n.endswith(f"-{app}"))
        assert {r.type.rsplit(":", 1)[1] for r in stack.descendants(workload)} == kinds, app
    shared = {r.type.rsplit(":", 1)[1] for r in stack.children(apps)} - {
        "Certificate",
        "CertificateValidation",
        "Record",
    }  # prod's TLS and DNS
    assert shared == {"Namespace", "RandomPassword", "Secret", "Ingress", "NetworkPolicy", "AppWorkload"}


def test_what_uses_an_irsa_role_waits_for_its_policy_and_goes_before_it(stack):
    """No caller lists the role and its policy in depends_on: the ARN it takes carries the policy with it."""
    policies = {p.parent: p for p in stack.of_type(ROLE_POLICY)}
    users = [
        r
        for r in stack.records
        if r.custom
        and r.type not in (ROLE_POLICY, "aws:iam/role:Role")
        and any(role in r.dependencies for role in policies)
    ]
    assert len(users) >= 4, [u.name for u in users]  # clinic api/notifier, controller, log agent (+ alertmanager)
    for user in users:
        for role, policy in policies.items():
            if role in user.dependencies:
                assert stack.deleted_before(user, policy), f"{user.name} must wait for {policy.name}"
    workloads = [
        r
        for r in stack.records
        if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job")
        and r.inputs["metadata"].get("namespace") == "clinic"
    ]
    for workload in workloads:
        assert any(stack.deleted_before(workload, p) for p in policies.values()), (
            f"{workload.name}'s pods run with their role's permissions attached"
        )


def args(**changes):
    base = AppWorkloadArgs(
        app="clinic-api",
        namespace="clinic",
        cluster=None,
        policy="{}",
        image="x",
        release="1",
        env=[],
        port=8000,
        service_port=80,
        service_port_name="http",
        cpu="250m",
        memory="512Mi",
        replicas=2,
        shutdown=Shutdown(prestop_seconds=40, grace_seconds=75),
    )
    return dataclasses.replace(base, **changes)


def test_an_autoscaler_ceiling_below_the_replicas_is_refused():
    with pytest.raises(ValueError, match=r"clinic-api: max_replicas = 1 is invalid; allowed: at least replicas \(2\)"):
        validate_app_workload_args(args(max_replicas=1))


def test_a_grace_period_that_ends_before_the_prestop_wait_is_refused():
    with pytest.raises(ValueError, match=r"shutdown.grace_seconds = 40 is invalid; allowed: more than prestop_seconds"):
        validate_app_workload_args(args(shutdown=Shutdown(prestop_seconds=40, grace_seconds=40)))
