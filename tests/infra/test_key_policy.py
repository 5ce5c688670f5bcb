"""The shared key policy builder: what every key policy holds, and the inputs it refuses."""

import json

import pytest

from components.key_policy import ADMIN_ACTIONS, DECRYPT, KeyUser, ServiceUser, autonamed_role, key_policy, role_name

ACCOUNT = "123456789012"


def statements(**kwargs):
    return {s["Sid"]: s for s in json.loads(key_policy(ACCOUNT, "aws", "eu-west-1", **kwargs))["Statement"]}


def test_the_account_administers_and_never_uses():
    admin = statements()["AccountAdministers"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert "kms:PutKeyPolicy" in admin["Action"], "the key must stay manageable (KMS lockout safety check)"
    for action in admin["Action"]:
        assert not action.startswith(("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt")), action
        assert "*" not in action, f"{action}: a wildcard could hide a use (kms:Create* covers CreateGrant)"
    assert "kms:CreateGrant" not in ADMIN_ACTIONS


def test_a_user_is_named_and_bound_to_its_services_and_may_get_grants_only_for_aws_resources():
    user = KeyUser("Deployer", ["clinic-dev-deploy", autonamed_role("clinic-dev-x-role")], ["rds"], grants=True)
    s = statements(users=[user])
    assert s["Deployer"]["Condition"] == {
        "ArnLike": {
            "aws:PrincipalArn": [
                f"arn:aws:iam::{ACCOUNT}:role/clinic-dev-deploy",
                f"arn:aws:iam::{ACCOUNT}:role/clinic-dev-x-role-*",
            ]
        },
        "StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:ViaService": ["rds.eu-west-1.amazonaws.com"]},
    }
    assert s["DeployerGrants"]["Action"] == ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    assert s["DeployerGrants"]["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_a_service_principal_keeps_its_condition():
    logs = ServiceUser("Logs", "logs.eu-west-1.amazonaws.com", ["kms:Encrypt*"], {"ArnLike": {"k": "v"}})
    assert statements(services=[logs])["Logs"]["Condition"] == {"ArnLike": {"k": "v"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": [KeyUser("A", [], ["sqs"])]}, "A: roles = \\[\\] is invalid; allowed: at least one IAM role"),
        ({"users": [KeyUser("A", ["bad name!"], ["sqs"])]}, "A: role 'bad name!' is invalid; allowed: an IAM role"),
        ({"users": [KeyUser("A", ["r"], [])]}, "A: services = \\[\\] is invalid; allowed: at least one service"),
        ({"users": [KeyUser("A", ["r"], ["sqs"], actions=["s3:GetObject"])]}, "A: actions = .* allowed: kms:"),
        ({"users": [KeyUser("A", ["r"], ["sqs"]), KeyUser("A", ["s"], ["sqs"])]}, "sid = 'A' is invalid"),
        ({"users": [KeyUser("AccountAdministers", ["r"], ["sqs"])]}, "sid = 'AccountAdministers' is invalid"),
        ({"services": [ServiceUser("L", "logs", DECRYPT)]}, "L: service = 'logs' is invalid"),
    ],
)
def test_bad_inputs_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        key_policy(ACCOUNT, "aws", "eu-west-1", **kwargs)


def test_bad_account_region_and_role_arn_are_refused():
    with pytest.raises(ValueError, match="account_id = '12' is invalid; allowed: a 12-digit"):
        key_policy("12", "aws", "eu-west-1")
    with pytest.raises(ValueError, match="region = 'europe' is invalid"):
        key_policy(ACCOUNT, "aws", "europe")
    with pytest.raises(ValueError, match="role ARN 'arn:aws:iam::1:user/x' is invalid"):
        role_name("arn:aws:iam::1:user/x")
    assert role_name(f"arn:aws:iam::{ACCOUNT}:role/ops/admin") == "ops/admin"
