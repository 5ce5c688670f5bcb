"""Who can use a KMS key: a small evaluator of same-account KMS authorization over recorded policy documents.

It answers one question, "may this IAM role perform this KMS action on this key, called directly or through this
AWS service?", the way KMS decides it for a principal of the key's own account (AWS KMS Developer Guide, "Key
policies" and "Determining access to a KMS key"):

1. an explicit Deny in the key policy or an IAM policy refuses;
2. the key policy allows the role itself: allowed;
3. the key policy allows the account (`arn:...:root`, IAM delegation): allowed only if an IAM policy of the role
   allows too;
4. otherwise refused. Grants are not modelled: the program creates none (services create their own).

Conditions are evaluated against the request's context (aws:PrincipalArn, kms:CallerAccount, kms:ViaService,
kms:GrantIsForAWSResource). An operator this evaluator does not know raises instead of guessing, so it can never
report "refused" for a statement it did not understand. Libraries looked at first: policy_sentry writes policies and
parliament lints them; neither evaluates an authorization across a key policy and IAM policies.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The actions that read or write data under a symmetric key (a grant hands those out, so it counts too).
CRYPTO_ACTIONS: tuple[str, ...] = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:CreateGrant",
)
# What a key's user may go through: calling KMS directly (None) or one of these services.
VIA_SERVICES: tuple[str | None, ...] = (None, "s3", "sqs", "sns", "rds", "secretsmanager", "eks", "backup", "logs")


@dataclass(frozen=True)
class Request:
    """One KMS request by an IAM role of the key's account."""

    principal_arn: str
    """The role's ARN (aws:PrincipalArn of its sessions)."""
    action: str
    """`kms:Decrypt`, ..."""
    key_arn: str
    """The key's ARN."""
    via: str | None = None
    """The service prefix the call goes through (`sqs`), or None for a direct call."""
    encryption_context: Mapping[str, str] = field(default_factory=dict)
    """What the service passes as encryption context (S3 with a bucket key: `aws:s3:arn` = the bucket's ARN)."""

    @property
    def account(self) -> str:
        return self.key_arn.split(":")[4]

    @property
    def region(self) -> str:
        return self.key_arn.split(":")[3]

    def context(self) -> dict[str, str]:
        context = {"aws:PrincipalArn": self.principal_arn, "kms:CallerAccount": self.principal_arn.split(":")[4]}
        if self.via:
            context["kms:ViaService"] = f"{self.via}.{self.region}.amazonaws.com"
            # Services attach keys to their resources through grants; a direct CreateGrant is not for one.
            context["kms:GrantIsForAWSResource"] = "true"
        else:
            context["kms:GrantIsForAWSResource"] = "false"
        context.update({f"kms:EncryptionContext:{k}": v for k, v in self.encryption_context.items()})
        return context


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _document(policy: str | Mapping[str, Any]) -> Mapping[str, Any]:
    return json.loads(policy) if isinstance(policy, str) else policy


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_like(a.lower(), action.lower()) for a in _list(statement["NotAction"]))
    return any(_like(a.lower(), action.lower()) for a in _list(statement.get("Action", [])))


def _resource_matches(statement: Mapping[str, Any], arn: str) -> bool:
    if "NotResource" in statement:
        return not any(_like(r, arn) for r in _list(statement["NotResource"]))
    return any(_like(r, arn) for r in _list(statement.get("Resource", [])))


_OPERATORS = {
    "StringEquals": lambda want, have: have == want,
    "StringLike": lambda want, have: _like(want, have),
    "ArnEquals": lambda want, have: have == want,
    "ArnLike": lambda want, have: _like(want, have),
    "Bool": lambda want, have: str(want).lower() == have.lower(),
}


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in statement.get("Condition", {}).items():
        negated = operator.startswith(("StringNot", "ArnNot"))
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists").replace("StringNot", "String").replace("ArnNot", "Arn")
        if base not in _OPERATORS:
            raise ValueError(f"condition operator {operator!r} is not understood by this evaluator")
        compare = _OPERATORS[base]
        for key, wanted in tests.items():
            if key not in context:
                if if_exists or negated:
                    continue
                return False
            match = any(compare(w, context[key]) for w in _list(wanted))
            if match == negated:
                return False
    return True


def _principal(statement: Mapping[str, Any], request: Request) -> str | None:
    """ "role" when the key policy statement names the role, "account" when it delegates to the account's IAM."""
    principal = statement.get("Principal")
    values = ["*"] if principal == "*" else _list((principal or {}).get("AWS", []))
    if request.principal_arn in values:
        return "role"
    account_root = f"arn:{request.key_arn.split(':')[1]}:iam::{request.account}:root"
    if account_root in values or request.account in values:
        return "account"
    return "role" if "*" in values else None


def _allows(statements: Iterable[Mapping[str, Any]], request: Request, *, key_policy: bool) -> tuple[set[str], bool]:
    """(how the matching Allow statements name the principal, whether a Deny matches)."""
    context = request.context()
    allowed: set[str] = set()
    denied = False
    for statement in statements:
        if not _action_matches(statement, request.action):
            continue
        if key_policy:
            who = _principal(statement, request)
            if who is None:
                continue
        else:
            who = "iam"
            if not _resource_matches(statement, request.key_arn):
                continue
        if not _conditions_hold(statement, context):
            continue
        if statement.get("Effect") == "Deny":
            denied = True
        else:
            allowed.add(who)
    return allowed, denied


def is_allowed(request: Request, key_policy: str | Mapping[str, Any], iam_policies: Sequence[Any] = ()) -> bool:
    """Whether KMS would allow `request`, given the key's policy and the role's IAM policies."""
    key_allows, key_denies = _allows(_list(_document(key_policy).get("Statement", [])), request, key_policy=True)
    iam_statements = [s for p in iam_policies for s in _list(_document(p).get("Statement", []))]
    iam_allows, iam_denies = _allows(iam_statements, request, key_policy=False)
    if key_denies or iam_denies:
        return False
    return "role" in key_allows or ("account" in key_allows and "iam" in iam_allows)


def usable(
    principal_arn: str,
    key_arn: str,
    key_policy: str | Mapping[str, Any],
    iam_policies: Sequence[Any] = (),
    actions: Sequence[str] = CRYPTO_ACTIONS,
    encryption_contexts: Mapping[str, Mapping[str, str]] | None = None,
) -> set[tuple[str, str | None]]:
    """Every (action, service or None) through which the role may use the key; `encryption_contexts` gives, per
    service, the context that service sends for this key."""
    contexts = encryption_contexts or {}
    return {
        (action, via)
        for action in actions
        for via in VIA_SERVICES
        if is_allowed(
            Request(principal_arn, action, key_arn, via, contexts.get(via or "", {})), key_policy, iam_policies
        )
    }
