"""The clinic's policy pack for pulumi-policy: `pulumi preview|up --policy-pack policy`.

The rules live in `guardrails.py` as plain functions (tested without pulumi-policy); this file only wraps them.
Enforcement is decided once, when the CLI starts the pack: the CLI passes the stack's name (PULUMI_STACK) and
config (PULUMI_CONFIG) to the pack's process, and `clinic-platform:environment` = dev makes every policy advisory;
prod, and any stack whose environment cannot be read, is mandatory.
"""

import os
import sys
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

# The CLI runs this file from the pack's directory, but not necessarily with it on sys.path. The project directory
# comes next: guardrails share limits/ (prod minimums, log retentions) with the stack settings and components. The
# pack therefore runs from a checkout (`--policy-pack policy`); `pulumi policy publish` would upload policy/ alone.
PACK = Path(__file__).resolve().parent
sys.path[:0] = [str(PACK), str(PACK.parent)]

import guardrails  # noqa: E402

STACK, ENVIRONMENT = guardrails.stack_environment(os.environ)
RULE_ENVIRONMENT = guardrails.effective_environment(ENVIRONMENT)
LEVEL = {guardrails.MANDATORY: EnforcementLevel.MANDATORY, guardrails.ADVISORY: EnforcementLevel.ADVISORY}[
    guardrails.enforcement_level(ENVIRONMENT)
]


def resource_policy(rule: guardrails.ResourceRule) -> ResourceValidationPolicy:
    def validate(args, report_violation):
        check = rule.checks.get(args.resource_type)
        if check is not None:
            for message in check(args.resource_type, args.props, RULE_ENVIRONMENT):
                report_violation(f"{args.name}: {message}")

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def stack_policy(rule: guardrails.StackRule) -> StackValidationPolicy:
    def validate(args, report_violation):
        resources = [
            guardrails.Resource(
                urn=r.urn,
                type=r.resource_type,
                name=r.name,
                props=r.props,
                property_dependencies={k: frozenset(d.urn for d in v) for k, v in r.property_dependencies.items()},
            )
            for r in args.resources
        ]
        for message, urn in rule.check(resources, RULE_ENVIRONMENT):
            report_violation(message, urn or None)  # "" = the stack as a whole (a resource that is missing)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate)


PolicyPack(
    name="clinic-guardrails",
    enforcement_level=LEVEL,
    policies=[*map(resource_policy, guardrails.RESOURCE_RULES), *map(stack_policy, guardrails.STACK_RULES)],
)
