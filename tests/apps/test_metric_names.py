"""Every metric the alert rules and the Grafana dashboard query is really exported: by the apps (read from their
Prometheus registries after importing them) or by an exporter of the chart named in monitoring.EXTERNAL_METRICS.

The queries are parsed with promql-parser (a PromQL grammar, not a regex), so function names, keywords, label names
and `by`/`without` lists are never mistaken for metrics.
"""

from __future__ import annotations

import json
import re

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from components.monitoring import DASHBOARD_FILE, EXTERNAL_METRICS, RULES_FILE, load_rules

# Series suffixes prometheus_client exposes for each family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# Labels Prometheus adds to every scraped series (ServiceMonitor target labels), and the histogram's bucket label.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint", "le", "__name__"}
# Grafana's built-in interval variables, which PromQL does not know; any duration parses the same.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")


def app_series() -> dict[str, set[str] | None]:
    """{series name: label names (None when the collector does not say)} from the apps' real registries."""
    import clinic_api.main  # noqa: F401 - registers the API's metrics (main, outbox, exams routes, db_metrics)
    from file_processor.metrics import Metrics as FileProcessorMetrics
    from notifier.metrics import Metrics

    series: dict[str, set[str] | None] = {}
    for registry in (REGISTRY, Metrics().registry, FileProcessorMetrics().registry):
        # prometheus_client keeps which collector registered which names; a metric object knows its label names.
        for collector, names in registry._collector_to_names.items():
            labels = getattr(collector, "_labelnames", None)
            for name in names:
                series[name] = set(labels) if labels is not None else None
        for family in registry.collect():
            for suffix in SUFFIXES[family.type]:
                series.setdefault(family.name + suffix, None)
    return series


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule expression and every dashboard panel target."""
    found = [(f"rule {rule['alert']}", rule["expr"]) for group in load_rules()["groups"] for rule in group["rules"]]
    for panel in json.loads(DASHBOARD_FILE.read_text())["panels"]:
        for target in panel.get("targets", []):
            found.append(
                (f"panel {panel['title']!r} target {target['refId']}", GRAFANA_INTERVALS.sub("5m", target["expr"]))
            )
    return found


def selectors(expr: str) -> list[tuple[str | None, set[str]]]:
    """(metric name or None, matcher label names) of every vector selector in `expr`."""
    found: list[tuple[str | None, set[str]]] = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers if node.matchers else []
            name = node.name or next(
                (m.value for m in matchers if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal), None
            )
            found.append((name, {m.name for m in matchers}))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def problems(named: list[tuple[str, str]], exported: dict[str, set[str] | None]) -> list[str]:
    out = []
    for where, expr in named:
        for metric, labels in selectors(expr):
            if metric is None:
                out.append(f"{where}: a selector names no metric explicitly ({expr.strip()!r})")
            elif metric in EXTERNAL_METRICS:
                continue
            elif metric not in exported:
                out.append(f"{where}: {metric} is exported by neither app nor listed in EXTERNAL_METRICS")
            elif (known := exported[metric]) is not None and labels - known - TARGET_LABELS:
                out.append(f"{where}: {metric} has no label {sorted(labels - known - TARGET_LABELS)}")
    return out


@pytest.fixture(scope="module")
def exported():
    return app_series()


def test_the_apps_registries_hold_what_the_rules_rely_on(exported):
    for name in (
        "clinic_http_requests_total",
        "clinic_http_request_duration_seconds_bucket",
        "clinic_outbox_pending",
        "clinic_db_connections",
        "clinic_db_max_connections",
        "notifier_emails_sent_total",
        "notifier_dead_letter_messages",
        "notifier_poison_messages_total",
        "file_processor_messages_failed_total",
        "file_processor_poison_messages_total",
    ):
        assert name in exported, name
    assert exported["clinic_http_requests_total"] == {"method", "route", "status"}


def test_every_metric_in_rules_and_dashboard_is_exported_or_allowlisted(exported):
    named = queries()
    assert len(named) >= 20, "the rules and the dashboard were not all read"
    assert problems(named, exported) == []


def test_the_allowlist_holds_only_metrics_that_are_used_and_not_the_apps_own(exported):
    used = {metric for _, expr in queries() for metric, _ in selectors(expr)}
    assert set(EXTERNAL_METRICS) <= used, f"unused allowlist entries: {sorted(set(EXTERNAL_METRICS) - used)}"
    assert not set(EXTERNAL_METRICS) & set(exported)


def test_a_rule_naming_a_metric_nobody_exports_is_reported(exported, tmp_path):
    mutated = RULES_FILE.read_text().replace(
        "max by (queue) (notifier_dead_letter_messages)", "max by (queue) (notifier_dlq_messages)"
    )
    rules = yaml.safe_load(mutated)
    named = [(f"rule {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    assert problems(named, exported) == [
        "rule NotifierDeadLetters: notifier_dlq_messages is exported by neither app nor listed in EXTERNAL_METRICS"
    ]


def test_a_label_the_metric_does_not_have_is_reported(exported):
    named = [("rule X", 'sum(rate(clinic_http_requests_total{status_code=~"5.."}[5m])) by (route)')]
    assert problems(named, exported) == ["rule X: clinic_http_requests_total has no label ['status_code']"]


def test_functions_keywords_and_label_lists_are_not_taken_for_metrics():
    assert selectors(
        'histogram_quantile(0.95, sum by (le) (rate(foo_bucket{route!~"/x"}[5m]))) > 2 '
        'and on() absent(bar) or {__name__="baz", job="j"} unless vector(1)'
    ) == [("foo_bucket", {"route"}), ("bar", set()), ("baz", {"__name__", "job"})]
