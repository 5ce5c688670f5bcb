"""The URNs the Pulumi engine gives a recorded graph's resources, and which resources of an earlier state it matches
them to (aliases included) — so a refactoring can be proven, under mocks, to replace nothing.

Pulumi's mock monitor builds URNs its own way (the parent's last type only, the Stack's type kept); the engine
prefixes a resource's type with its parent's full qualified type and leaves the root Stack out
(pkg/resource/deploy/deployment.go `generateURN`). Aliases are resolved as the engine's step generator does
(`collapseAliasToUrn`, `generateAliases`, `inheritedChildAlias`): a spec's empty fields mean the resource's own, a
parent that matched through an alias stands for its old URN, and every child inherits its parent's matched alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from preview.graph import PROJECT, Graph, Registration

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[3]


def make_urn(stack: str, project: str, parent_type: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{project}::{f'{parent_type}${type_}' if parent_type else type_}::{name}"


@dataclass
class StateMatch:
    """How the engine would line a program's resources up with a stack's earlier state."""

    urns: dict[str, str]
    """Recorded (mock) URN -> the engine's URN."""
    aliased: dict[str, str] = field(default_factory=dict)
    """Engine URN -> the old URN it took over through an alias."""
    same: set[str] = field(default_factory=set)
    """Old URNs matched under their own URN."""
    errors: list[str] = field(default_factory=list)
    """What the engine would refuse (an old resource claimed twice)."""

    @property
    def matched(self) -> set[str]:
        return self.same | set(self.aliased.values())


def match_state(graph: Graph, old_urns: Iterable[str], stack: str, project: str = PROJECT) -> StateMatch:
    """Walks the registrations in order, as the engine receives them, matching each to `old_urns`."""
    olds = set(old_urns)
    result = StateMatch(urns={})

    def engine_parent(mock_parent: str) -> str:
        """The parent's engine URN, "" for the root Stack or none."""
        if not mock_parent or qualified_type(mock_parent).split("$")[-1] == ROOT_STACK_TYPE:
            return ""
        return result.urns[mock_parent]

    def collapse(r: Registration, parent: str, alias: dict) -> str:
        if alias.get("urn"):
            return alias["urn"]
        alias_parent = parent
        if alias.get("parentUrn"):
            alias_parent = engine_parent(alias["parentUrn"])
            alias_parent = result.aliased.get(alias_parent, alias_parent)
        if alias.get("noParent"):
            alias_parent = ""
        return make_urn(
            alias.get("stack") or stack,
            alias.get("project") or project,
            qualified_type(alias_parent) if alias_parent else "",
            alias.get("type") or r.type,
            alias.get("name") or r.name,
        )

    def inherited(child_type: str, child_name: str, parent_name: str, parent_alias: str) -> str:
        name = child_name
        if child_name.startswith(parent_name):
            name = urn_name(parent_alias) + child_name[len(parent_name) :]
        return make_urn(stack, project, qualified_type(parent_alias), child_type, name)

    for r in graph.records:
        parent = engine_parent(r.parent)
        urn = make_urn(stack, project, qualified_type(parent) if parent else "", r.type, r.name)
        result.urns[r.urn] = urn
        aliases = [collapse(r, parent, a) for a in r.aliases]
        if parent in result.aliased:
            parent_alias = result.aliased[parent]
            aliases += [inherited(r.type, r.name, urn_name(parent), parent_alias)]
            aliases += [
                inherited(qualified_type(a).split("$")[-1], urn_name(a), urn_name(parent), parent_alias)
                for a in list(aliases[: len(r.aliases)])
            ]
        for candidate in [urn, *aliases]:
            if candidate not in olds:
                continue
            if candidate in result.matched:
                result.errors.append(f"{urn} claims {candidate}, already taken by another resource")
            elif candidate == urn:
                result.same.add(urn)
            else:
                result.aliased[urn] = candidate
            break
    return result
