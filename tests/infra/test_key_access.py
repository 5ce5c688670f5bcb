"""Who can use which key, evaluated on the recorded graph of both stacks: every key policy against every role the
program creates (policy/key_access.py does what KMS does for a same-account principal: key policy, then IAM)."""

import fnmatch

import pytest

from policy.key_access import CRYPTO_ACTIONS, Request, is_allowed, usable
from preview.graph import ACCOUNT_ID, ROOT, stack_settings
from stacks.key_users import platform_roles

KEY = "aws:kms/key:Key"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PRODUCE = {("kms:GenerateDataKey", None), ("kms:Decrypt", None)}


def via(service, pairs):
    return {(action, service) for action, _ in pairs}


# What each workload role may do with each key, by the keys' and roles' logical names after `clinic-<stack>-`.
EXPECTED = {
    "apps-api-role": {
        "exams-key": via("s3", PRODUCE),
        "events-key": via("sqs", PRODUCE),
        "db-key": {("kms:Decrypt", "secretsmanager")},
    },
    "apps-notifier-role": {
        "events-key": {("kms:Decrypt", "sqs")},
        "db-key": {("kms:Decrypt", "secretsmanager")},
    },
    "apps-file-processor-role": {
        "exams-key": via("s3", PRODUCE),
        "events-key": {("kms:Decrypt", "sqs")},
        "db-key": {("kms:Decrypt", "secretsmanager")},
    },
    "monitoring-alertmanager-role": {"alarms-topic-key": via("sns", PRODUCE)},
    # Prod's exam replication (S3 reads each source PDF and writes its replica as this role).
    "exams-replication-role": {
        "exams-key": {("kms:Decrypt", "s3")},
        "exams-replica-key": {("kms:Encrypt", "s3"), ("kms:GenerateDataKey", "s3")},
    },
}


def keys(graph):
    return {k.name: (k.state["arn"], k.input("policy")) for k in graph.of_type(KEY)}


def s3_contexts(graph):
    """The encryption context S3 sends for each bucket key: the ARN of the bucket whose default encryption it is."""
    contexts = {}
    for config in graph.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ):
        for rule in config.inputs["rules"]:
            key = rule["applyServerSideEncryptionByDefault"].get("kmsMasterKeyId")
            contexts[key] = {"s3": {"aws:s3:arn": f"arn:aws:s3:::{config.inputs['bucket']}"}}
    return contexts


def role_permissions(graph):
    """Each role whose permissions the graph holds entirely (inline policies only), with those policies. Roles with
    AWS managed policies attached (nodes, backup, flow logs) are left out: their documents are not in the graph."""
    attached = {a.inputs["role"] for a in graph.of_type(ATTACHMENT)}
    roles = {}
    for role in graph.of_type(ROLE):
        handles = {role.name, f"{role.name}-id", role.state["name"]}
        if handles & attached:
            continue
        policies = [p.input("policy") for p in graph.of_type(ROLE_POLICY) if p.parent == role.urn]
        policies += [p.input("policy") for p in graph.of_type(ROLE_POLICY) if p.inputs.get("role") in handles]
        roles[role.name] = (role.state["arn"], policies)
    return roles


def short(name, stack):
    return name.removeprefix(f"clinic-{stack}-")


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_each_workload_role_can_use_only_the_keys_it_needs_and_only_through_its_service(stack_name, dev, prod):
    graph = {"dev": dev, "prod": prod}[stack_name]
    found, contexts = {}, s3_contexts(graph)
    for role_name, (role_arn, policies) in role_permissions(graph).items():
        for key_name, (key_arn, policy) in keys(graph).items():
            allowed = usable(role_arn, key_arn, policy, policies, encryption_contexts=contexts.get(key_arn))
            if allowed:
                found.setdefault(short(role_name, stack_name), {})[short(key_name, stack_name)] = allowed
    expected = {role: uses for role, uses in EXPECTED.items() if f"clinic-{stack_name}-{role}" in graph_roles(graph)}
    assert found == expected


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_key_policies_alone_hold_the_line_even_for_a_role_given_kms_star_in_iam(stack_name, dev, prod):
    """Defence in depth: were a role's IAM policy widened to kms:* on everything, the key policies still let it use
    exactly the keys of the table above."""
    graph = {"dev": dev, "prod": prod}[stack_name]
    everything = [{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]
    found, contexts = {}, s3_contexts(graph)
    for role_name, (role_arn, _) in role_permissions(graph).items():
        for key_name, (key_arn, policy) in keys(graph).items():
            allowed = usable(role_arn, key_arn, policy, everything, encryption_contexts=contexts.get(key_arn))
            if allowed:
                found.setdefault(short(role_name, stack_name), {})[short(key_name, stack_name)] = allowed
    expected = {role: uses for role, uses in EXPECTED.items() if f"clinic-{stack_name}-{role}" in graph_roles(graph)}
    assert found == expected


def graph_roles(graph):
    return {r.name for r in graph.of_type(ROLE)}


def test_the_notifier_cannot_read_exam_pdfs_nor_the_database_directly(prod):
    roles, all_keys = role_permissions(prod), keys(prod)
    notifier_arn, notifier_policies = roles["clinic-prod-apps-notifier-role"]
    exams_arn, exams_policy = all_keys["clinic-prod-exams-key"]
    db_arn, db_policy = all_keys["clinic-prod-db-key"]
    for action in CRYPTO_ACTIONS:
        for service in (None, "s3", "rds"):
            assert not is_allowed(Request(notifier_arn, action, exams_arn, service), exams_policy, notifier_policies)
            assert not is_allowed(Request(notifier_arn, action, db_arn, service), db_policy, notifier_policies)


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_every_role_pattern_in_a_key_policy_names_a_role_that_exists(stack_name, dev, prod):
    """The key policies name the apps' roles by their auto-name pattern: a renamed component must break this."""
    graph = {"dev": dev, "prod": prod}[stack_name]
    recorded = {r.state["arn"] for r in graph.of_type(ROLE)}
    settings = stack_settings(stack_name)
    # Created outside the graph: by the bootstrap template (deploy, restore drill) or people (operators), and inside
    # pulumi-eks's remote component (the cluster's service role, `<eks.Cluster name>-eksRole-role`).
    [eks] = graph.of_type("eks:index:Cluster")
    outside = {
        f"arn:aws:iam::{ACCOUNT_ID}:role/{eks.name}-eksRole-role-*",
        f"arn:aws:iam::{ACCOUNT_ID}:role/clinic-{stack_name}-restore-drill",
        settings.cluster.deploy_role_arn,
        *settings.cluster.admin_role_arns,
    }
    for key_name, (_, policy) in keys(graph).items():
        for statement in policy["Statement"]:
            for pattern in statement.get("Condition", {}).get("ArnLike", {}).get("aws:PrincipalArn", []):
                if pattern in outside:
                    continue
                assert any(fnmatch.fnmatchcase(arn, pattern) for arn in recorded), (
                    f"{key_name}: {statement['Sid']} names {pattern}, which matches no role of the program"
                )


def test_the_roles_made_outside_the_program_are_named_as_the_key_policies_expect():
    bootstrap = (ROOT / "bootstrap" / "github-oidc.yaml").read_text()
    assert "RoleName: !Sub clinic-${Stack}-restore-drill" in bootstrap
    assert "RoleName: !Sub clinic-${Stack}-deploy" in bootstrap
    # pulumi-eks 4.x: `new ServiceRole(`${name}-eksRole`)` whose role is `${name}-role` (nodejs/eks/cluster/cluster.ts,
    # servicerole.ts); stacks/key_users.py names it after the Cluster component's `<name>-eks`.
    assert platform_roles(stack_settings("dev")).cluster == "clinic-dev-cluster-eks-eksRole-role-*"


def test_no_key_lets_the_account_use_it_without_naming_who(stack):
    """The default key policy's gap: `kms:*` for the account root lets any principal with IAM kms:* use the key."""
    for key_name, (key_arn, policy) in keys(stack).items():
        stranger = f"arn:aws:iam::{ACCOUNT_ID}:role/someone-with-kms-star"
        everything = [{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]
        assert usable(stranger, key_arn, policy, everything) == set(), f"{key_name} is usable by any kms:* principal"
        # ...while that principal can still administer it: the key stays manageable (lockout safety check).
        assert is_allowed(Request(stranger, "kms:PutKeyPolicy", key_arn), policy, everything), key_name


# The evaluator itself, on hand-written documents.
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/k"
APP = f"arn:aws:iam::{ACCOUNT_ID}:role/app-1a2b3c4"
ACCOUNT_ROOT = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}


def statement(effect="Allow", principal=None, action="kms:Decrypt", condition=None):
    s = {"Effect": effect, "Action": action, "Resource": "*"}
    if principal is not None:
        s["Principal"] = principal
    if condition:
        s["Condition"] = condition
    return s


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_the_account_delegation_needs_an_iam_allow_and_a_named_role_does_not():
    delegated = doc(statement(principal=ACCOUNT_ROOT))
    iam = [doc(statement())]
    assert not is_allowed(Request(APP, "kms:Decrypt", KEY_ARN), delegated)
    assert is_allowed(Request(APP, "kms:Decrypt", KEY_ARN), delegated, iam)
    assert is_allowed(Request(APP, "kms:Decrypt", KEY_ARN), doc(statement(principal={"AWS": [APP]})))


def test_a_deny_anywhere_wins_and_conditions_bind():
    through_sqs = {"StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}
    key = doc(
        statement(principal=ACCOUNT_ROOT, condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/app-*"}})
    )
    iam = [doc(statement(condition=through_sqs))]
    assert is_allowed(Request(APP, "kms:Decrypt", KEY_ARN, "sqs"), key, iam)
    assert not is_allowed(Request(APP, "kms:Decrypt", KEY_ARN, "s3"), key, iam), "only through SQS"
    assert not is_allowed(Request(APP, "kms:Decrypt", KEY_ARN), key, iam), "never directly"
    other = f"arn:aws:iam::{ACCOUNT_ID}:role/other"
    assert not is_allowed(Request(other, "kms:Decrypt", KEY_ARN, "sqs"), key, iam), "not a role the key names"
    denied = [*iam, doc(statement(effect="Deny", action="kms:*"))]
    assert not is_allowed(Request(APP, "kms:Decrypt", KEY_ARN, "sqs"), key, denied)


def test_an_operator_the_evaluator_does_not_know_is_an_error_not_a_refusal():
    key = doc(
        statement(principal=ACCOUNT_ROOT, condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})
    )
    with pytest.raises(ValueError, match="'DateLessThan' is not understood"):
        is_allowed(Request(APP, "kms:Decrypt", KEY_ARN), key)
