"""The offline preview's views of a recorded graph, as one JSON-ready dict and as text."""

from __future__ import annotations

from collections import Counter
from typing import Any

from preview import costs, timing
from preview.graph import Graph, Registration

VIEWS = ("tree", "counts", "criticalPath", "deleteOrder", "cost", "policy")


def tree(graph: Graph) -> list[dict[str, Any]]:
    """Resources nested by parent; roots are the children of the Stack."""
    children: dict[str, list[Registration]] = {}
    for r in graph.records:
        children.setdefault(r.parent if r.parent in graph.by_urn else "", []).append(r)

    def node(r: Registration) -> dict[str, Any]:
        return {
            "name": r.name,
            "type": r.type,
            "protect": r.protect,
            "retainOnDelete": r.retain_on_delete,
            "children": [node(c) for c in children.get(r.urn, [])],
        }

    return [node(r) for r in children.get("", [])]


def policy_findings(graph: Graph, environment: str | None) -> list[dict[str, str]]:
    """The clinic's guardrails (policy/guardrails.py) over the graph, as the policy pack would report them."""
    from policy import guardrails as g

    def resource(r: Registration, props: dict) -> g.Resource:
        return g.Resource(r.urn, r.type, r.name, props, {k: frozenset(v) for k, v in r.property_dependencies.items()})

    custom = [r for r in graph.records if r.custom or r.remote]
    found = g.check_stack(
        [resource(r, r.inputs) for r in custom],
        [resource(r, r.state) for r in custom],
        g.effective_environment(environment),
    )
    return [
        {
            "policy": v.rule,
            "resource": graph.by_urn[v.urn].name if v.urn in graph.by_urn else v.urn,
            "message": v.message,
            "enforcement": g.enforcement_level(environment),
        }
        for v in found
    ]


def build(graph: Graph, stack: str, region: str, environment: str | None) -> dict[str, Any]:
    path = timing.critical_path(graph)
    lines = costs.cost_lines(graph)
    return {
        "stack": stack,
        "region": region,
        "resources": len(graph.records),
        "tree": tree(graph),
        "counts": dict(sorted(Counter(r.type for r in graph.records).items(), key=lambda kv: (-kv[1], kv[0]))),
        "criticalPath": {
            "minutes": round(path[-1].finish / 60, 1) if path else 0.0,
            "steps": [
                {"name": s.record.name, "type": s.record.type, "seconds": s.seconds, "finishSeconds": s.finish}
                for s in path
            ],
            "durationsFrom": "preview/timing.py CREATE_SECONDS (default "
            f"{timing.DEFAULT_SECONDS} s, components and providers 0 s)",
        },
        "deleteOrder": [r.name for r in graph.delete_order()],
        "cost": {
            "monthlyUsd": costs.monthly_total(lines),
            "pricesRegion": costs.PRICES_REGION,
            "pricesAsOf": costs.PRICES_AS_OF,
            "hoursPerMonth": costs.HOURS_PER_MONTH,
            "spotFactor": costs.SPOT_FACTOR,
            "lines": [
                {"resource": c.resource, "type": c.type, "item": c.item, "monthlyUsd": c.monthly_usd}
                for c in lines
                if not c.unpriced
            ],
            "unpriced": [{"resource": c.resource, "type": c.type, "missing": c.unpriced} for c in lines if c.unpriced],
            "excluded": list(costs.EXCLUDED),
        },
        "policy": policy_findings(graph, environment),
    }


def _minutes(seconds: int) -> str:
    return f"{seconds // 60:d}m{seconds % 60:02d}s"


def text(view: dict[str, Any]) -> str:
    out = [
        f"# Offline preview: stack {view['stack']} ({view['region']}), {view['resources']} resources, "
        "evaluated under mocks (no credentials, nothing created)",
        "",
    ]

    out.append("## Resource tree")

    def walk(nodes: list[dict[str, Any]], depth: int) -> None:
        for n in nodes:
            flags = [f for f, on in (("protect", n["protect"]), ("retain", n["retainOnDelete"])) if on]
            out.append(f"{'  ' * depth}- {n['name']} ({n['type']}){' [' + ', '.join(flags) + ']' if flags else ''}")
            walk(n["children"], depth + 1)

    walk(view["tree"], 0)

    out += ["", "## Counts by type"]
    out += [f"{n:4d}  {t}" for t, n in view["counts"].items()]

    cp = view["criticalPath"]
    out += ["", f"## Create critical path: {cp['minutes']} min ({cp['durationsFrom']})"]
    out += [
        f"{_minutes(s['finishSeconds']):>8}  +{_minutes(s['seconds'])}  {s['name']} ({s['type']})" for s in cp["steps"]
    ]

    out += ["", "## Delete order (pulumi destroy)"]
    out += [f"{i:4d}. {name}" for i, name in enumerate(view["deleteOrder"], 1)]

    cost = view["cost"]
    out += [
        "",
        f"## Estimated monthly cost: ${cost['monthlyUsd']:,.2f} "
        f"({cost['pricesRegion']} list prices as of {cost['pricesAsOf']}, {cost['hoursPerMonth']} h/month, "
        f"spot at {cost['spotFactor']:.0%} of on-demand)",
    ]
    out += [f"{c['monthlyUsd']:>10,.2f}  {c['item']}  [{c['resource']}]" for c in cost["lines"]]
    out += [f"      ????  {u['missing']}  [{u['resource']}]" for u in cost["unpriced"]]
    out.append("Not included: " + "; ".join(cost["excluded"]) + ".")

    out += ["", f"## Policy pack (clinic-guardrails): {len(view['policy'])} violation(s)"]
    out += [f"[{p['enforcement']}] {p['policy']}: {p['resource']}: {p['message']}" for p in view["policy"]]
    return "\n".join(out) + "\n"
