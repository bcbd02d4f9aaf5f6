"""The Grafana dashboards, the Prometheus alerting rules and docs/observability.md against the
metrics the services really export.

The inventory is read from the code at test time: each service app is built (nothing is
started, so no broker or store is needed) in a subprocess with a clean environment, and its
CollectorRegistry is listed. That covers Steward's own metrics and FastStream's Prometheus
middleware (its metrics are registered when the middleware is constructed). The consumer-lag
gauge of services/runtime/lag.py is taken from that module's source while the services do not
register it at construction. ``up`` is Prometheus' own.

Every PromQL expression is parsed with promql-parser (a real PromQL grammar: unknown
functions and unbalanced brackets are errors) and walked: each selected series must be one a
scrape really yields (a counter only as ``_total``, a histogram only as ``_bucket``/``_sum``/
``_count``), each label matched on, grouped by, joined on, shown in a legend or an alert
annotation must exist on the series at that point of the expression.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DOC = REPO / "docs" / "observability.md"
RUNBOOK = REPO / "docs" / "runbook.md"
LAG_MODULE = REPO / "services" / "runtime" / "lag.py"

SERVICES = ("ingest", "moderation", "metrics", "notifier")
EXPECTED_UIDS = {"steward-pipeline.json": "steward-pipeline", "steward-communities.json": "steward-communities"}
DATASOURCE_VARIABLE = "${datasource}"
DOC_BASE = "https://github.com/steward-oss/steward/blob/main/docs/"
RUNBOOK_ANCHORS = {
    "kafka-or-mongodb-down",
    "drain-and-replay-a-dead-letter-topic",
    "scale-for-a-large-community",
    "rotate-a-platform-secret",
}
SEVERITIES = {"critical", "warning", "info"}
# Labels Prometheus attaches to every scraped series (the scrape target's).
TARGET_LABELS = frozenset({"job", "instance"})
# Metrics Prometheus itself writes for every target.
PROMETHEUS_OWN = {"up": {"type": "gauge", "labels": [], "services": ["prometheus"]}}
# What the consumer-lag gauge is announced as, until services/runtime/lag.py exists.
ANNOUNCED_LAG = {"steward_consumer_lag": {"type": "gauge", "labels": ["group", "topic", "partition"],
                                          "services": ["moderation", "metrics", "notifier"]}}
# Grafana's built-in interval variables, and the dashboards' own variables, as PromQL-safe text.
GRAFANA_DURATIONS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

# --------------------------------------------------------------------------------------------
# The inventory, from the code

INVENTORY_SCRIPT = r"""
import importlib, json, sys
out = {}
for service in SERVICES:
    registry = importlib.import_module(f"services.{service}.app").create_app().state.service.registry
    for collector in list(registry._collector_to_names):
        name, kind = getattr(collector, "_name", None), getattr(collector, "_type", None)
        if name is not None and kind is not None:  # a prometheus_client metric
            labels = list(collector._labelnames)
        else:  # a custom collector: what it yields now
            for family in collector.collect():
                name, kind = family.name, family.type
                labels = sorted({k for s in family.samples for k in s.labels} - {"le", "quantile"})
        entry = out.setdefault(name, {"type": kind, "labels": labels, "services": []})
        entry["services"].append(service)
print("INVENTORY " + json.dumps(out))
"""


def _from_services() -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env["PYTHONPATH"] = str(REPO)
    script = f"SERVICES = {SERVICES!r}\n" + INVENTORY_SCRIPT
    # Run outside the checkout so no .env file there configures the services.
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO / "tests" / "deploy", env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("INVENTORY "))
    return json.loads(line.removeprefix("INVENTORY "))


def _declared_in(path: Path) -> dict[str, dict[str, Any]]:
    """Metrics a module declares: Counter/Gauge/Histogram/Summary(...) or *MetricFamily(...)
    calls whose name is a string literal, with their label names when those are literal."""
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
             "CounterMetricFamily": "counter", "GaugeMetricFamily": "gauge",
             "HistogramMetricFamily": "histogram", "SummaryMetricFamily": "summary"}
    found: dict[str, dict[str, Any]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if callee not in kinds or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name = node.args[0].value
        labels_node = next((k.value for k in node.keywords if k.arg in ("labelnames", "labels")),
                           node.args[2] if len(node.args) > 2 else None)
        labels = []
        if isinstance(labels_node, (ast.List, ast.Tuple)):
            labels = [e.value for e in labels_node.elts if isinstance(e, ast.Constant)]
        kind = kinds[callee]
        if kind == "counter":
            name = name.removesuffix("_total")
        found[name] = {"type": kind, "labels": labels, "services": ["runtime (lag.py)"]}
    return found


@cache
def inventory() -> dict[str, dict[str, Any]]:
    metrics = dict(PROMETHEUS_OWN)
    lag = _declared_in(LAG_MODULE) if LAG_MODULE.exists() else ANNOUNCED_LAG
    metrics.update(lag)
    metrics.update(_from_services())  # what the registries hold wins
    return metrics


def exposed_names(family: str, kind: str) -> set[str]:
    """The series names a scrape of ``family`` yields (prometheus_client's exposition)."""
    if kind == "counter":
        return {family + "_total", family + "_created"}
    if kind == "histogram":
        return {family + s for s in ("_bucket", "_sum", "_count", "_created")}
    if kind == "summary":
        return {family, family + "_sum", family + "_count", family + "_created"}
    return {family}


@cache
def series_index() -> dict[str, tuple[str, frozenset[str]]]:
    """Exposed series name -> (family, labels it carries once scraped)."""
    index = {}
    for family, entry in inventory().items():
        for name in exposed_names(family, entry["type"]):
            labels = set(entry["labels"]) | TARGET_LABELS
            if name.endswith("_bucket"):
                labels.add("le")
            index[name] = (family, frozenset(labels))
    return index


# --------------------------------------------------------------------------------------------
# PromQL: parse and infer the labels at each node


@pytest.fixture(scope="module")
def promql():
    return pytest.importorskip("promql_parser", reason="promql-parser (the test extra) validates PromQL")


class Checker:
    """Walks a parsed expression; collects every problem instead of stopping at the first."""

    def __init__(self, promql: Any, where: str) -> None:
        self.p = promql
        self.where = where
        self.problems: list[str] = []
        self.metrics: set[str] = set()

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def labels(self, node: Any) -> frozenset[str] | None:
        """The label names of the series ``node`` evaluates to; None for a scalar or string."""
        p = self.p
        if isinstance(node, p.VectorSelector):
            return self.selector(node)
        if isinstance(node, p.MatrixSelector):
            return self.selector(node.vector_selector)
        if isinstance(node, (p.ParenExpr, p.UnaryExpr, p.SubqueryExpr)):
            return self.labels(node.expr)
        if isinstance(node, (p.NumberLiteral, p.StringLiteral)):
            return None
        if isinstance(node, p.Call):
            return self.call(node)
        if isinstance(node, p.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, p.BinaryExpr):
            return self.binary(node)
        self.fail(f"unexpected node {type(node).__name__}")
        return frozenset()

    def selector(self, node: Any) -> frozenset[str]:
        matchers = list(node.matchers.matchers) + [m for ms in node.matchers.or_matchers for m in ms]
        name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
        if name is None:
            self.fail("a selector without a metric name")
            return frozenset()
        self.metrics.add(name)
        found = series_index().get(name)
        if found is None:
            family = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
            hint = ""
            if family in inventory():
                kind = inventory()[family]["type"]
                hint = f" ({family} is a {kind}: use {sorted(exposed_names(family, kind))})"
            elif name + "_total" in series_index():
                hint = f" (a counter: use {name}_total)"
            self.fail(f"{name} is not exported by any Steward service{hint}")
            return frozenset()
        _, labels = found
        for m in matchers:
            if m.name != "__name__" and m.name not in labels:
                self.fail(f"{name} has no label {m.name!r} (it has {sorted(labels)})")
        return labels

    def call(self, node: Any) -> frozenset[str] | None:
        fn = node.func.name
        args = list(node.args)
        if fn in ("label_replace", "label_join"):
            inner = self.labels(args[0]) or frozenset()
            sources = [args[3]] if fn == "label_replace" else args[3:]
            for source in sources:
                if source.val not in inner:
                    self.fail(f"{fn} reads label {source.val!r}, absent from {sorted(inner)}")
            return inner | {args[1].val}
        if fn == "histogram_quantile":
            inner = self.labels(args[1]) or frozenset()
            if "le" not in inner:
                self.fail(f"histogram_quantile over series without 'le' (labels {sorted(inner)})")
            return inner - {"le"}
        if fn in ("absent", "absent_over_time"):
            self.labels(args[0])
            selector = args[0].vector_selector if isinstance(args[0], self.p.MatrixSelector) else args[0]
            if isinstance(selector, self.p.VectorSelector):
                return frozenset(m.name for m in selector.matchers.matchers
                                 if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual")
                                 and m.name != "__name__")
            return frozenset()
        if fn in ("scalar", "time", "pi"):
            for arg in args:
                self.labels(arg)
            return None
        if fn == "vector":
            self.labels(args[0])
            return frozenset()
        result: frozenset[str] | None = None
        for arg in args:
            labels = self.labels(arg)
            if result is None and labels is not None:
                result = labels
        return result

    def aggregate(self, node: Any) -> frozenset[str]:
        inner = self.labels(node.expr) or frozenset()
        if node.param is not None:
            self.labels(node.param)
        op = str(node.op)
        grouping: frozenset[str] = frozenset()
        without = False
        if node.modifier is not None:
            grouping = frozenset(node.modifier.labels)
            without = str(node.modifier.type).endswith("Without")
            missing = grouping - inner
            if missing and not without:
                self.fail(f"{op} by {sorted(missing)}: not labels of {sorted(inner)}")
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        result = inner - grouping if without else grouping
        if op == "count_values":
            result |= {node.param.val}
        return result

    def binary(self, node: Any) -> frozenset[str] | None:
        left, right = self.labels(node.lhs), self.labels(node.rhs)
        if left is None or right is None:
            return right if left is None else left
        op = str(node.op)
        modifier = node.modifier
        matching = modifier.matching if modifier is not None else None
        card = str(modifier.card) if modifier is not None else "OneToOne"
        if matching is not None:
            on = frozenset(matching.labels)
            if str(matching.type).endswith("Include"):
                for side, labels in (("left", left), ("right", right)):
                    if on - labels:
                        self.fail(f"'{op} on {sorted(on)}': {sorted(on - labels)} not on the {side} "
                                  f"side ({sorted(labels)})")
                if op in ("and", "or", "unless"):
                    return left | right if op == "or" else left
                return on if card.endswith("OneToOne") else left | right
            if op in ("and", "or", "unless"):
                return left | right if op == "or" else left
            return left - on if card.endswith("OneToOne") else left | right
        if op == "or":
            return left | right
        if left != right:
            # Without on/ignoring, samples match only on identical label sets: a mismatch
            # silently yields nothing.
            self.fail(f"'{op}' between series labelled {sorted(left)} and {sorted(right)} matches nothing")
        return left


def check_promql(promql: Any, expr: str, where: str) -> tuple[Checker, frozenset[str] | None]:
    checker = Checker(promql, where)
    try:
        tree = promql.parse(expr)
    except ValueError as error:  # the parser's own message says where
        checker.fail(f"does not parse: {error}\n    {expr}")
        return checker, frozenset()
    return checker, checker.labels(tree)


# --------------------------------------------------------------------------------------------
# Dashboards


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return out


def variable_names(board: dict[str, Any]) -> set[str]:
    return {v["name"] for v in board["templating"]["list"]}


def grafana_to_promql(expr: str, variables: set[str]) -> str:
    """Replace Grafana variables with text PromQL accepts: built-in intervals with a duration,
    the dashboard's own variables (only ever inside matcher strings) with a word."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_DURATIONS:
            return GRAFANA_DURATIONS[name]
        assert name in variables, f"unknown variable ${name} in {expr!r}"
        return "placeholder"

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


def datasource_refs(node: Any, path: str = "") -> list[tuple[str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}.{key}", value))
            found.extend(datasource_refs(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(datasource_refs(value, f"{path}[{i}]"))
    return found


def test_the_two_dashboards_exist_with_stable_uids() -> None:
    boards = dashboards()
    assert set(EXPECTED_UIDS) <= set(boards), sorted(boards)
    uids = [board["uid"] for board in boards.values()]
    assert len(uids) == len(set(uids)), uids
    for name, uid in EXPECTED_UIDS.items():
        board = boards[name]
        assert board["uid"] == uid
        assert board["id"] is None, "a provisioned dashboard carries no database id"
        assert board["title"] and board["schemaVersion"] >= 36
        assert board["templating"]["list"][0]["name"] == "datasource"


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_dashboard_panels(name: str) -> None:
    board = dashboards()[name]
    panels = all_panels(board)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        where = f"{name} panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title"), where
        assert panel.get("description"), f"{where}: say what it shows"
        targets = panel.get("targets") or []
        assert targets, f"{where}: no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), where
        for target in targets:
            assert target.get("expr", "").strip(), f"{where}: a target without expr"
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
    for panel in panels:
        if panel["type"] == "row":
            assert "targets" not in panel and "datasource" not in panel


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_every_datasource_is_the_template_variable(name: str) -> None:
    board = dashboards()[name]
    variable = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    refs = datasource_refs(board)
    assert refs
    for path, ref in refs:
        assert ref == {"type": "prometheus", "uid": DATASOURCE_VARIABLE}, f"{name}{path}: {ref!r}"
    text = json.dumps(board)
    # No hard-coded datasource ids or names anywhere.
    assert '"datasourceId"' not in text
    assert not re.search(r'"uid":\s*"(?!\$\{datasource\}|steward-)', text)


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, legend labels) of every panel target."""
    out = []
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            out.append((f"panel {panel['id']} {panel.get('title')!r} {target['refId']}", target["expr"], legend))
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_dashboard_queries_use_real_metrics_and_labels(name: str, promql: Any) -> None:
    board = dashboards()[name]
    variables = variable_names(board)
    problems: list[str] = []
    used: set[str] = set()
    for where, expr, legend in dashboard_queries(board):
        checker, labels = check_promql(promql, grafana_to_promql(expr, variables), f"{name} {where}")
        problems += checker.problems
        used |= checker.metrics
        if labels is not None and legend - labels:
            problems.append(f"{name} {where}: legend shows {sorted(legend - labels)}, "
                            f"not labels of the result {sorted(labels)}")
    assert not problems, "\n".join(problems)
    assert used, name


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_template_variables_query_real_labels(name: str) -> None:
    board = dashboards()[name]
    for variable in board["templating"]["list"]:
        if variable["type"] == "datasource":
            continue
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE_VARIABLE}
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"{name} ${variable['name']}: {query!r}"
        metric, label = match.groups()
        assert metric in series_index(), f"{name} ${variable['name']}: no metric {metric}"
        assert label in series_index()[metric][1], f"{name} ${variable['name']}: {metric} has no {label}"


def test_communities_dashboard_covers_every_kpi_gauge() -> None:
    text = json.dumps(dashboards()["steward-communities.json"])
    kpis = {name for name in inventory() if name.startswith("steward_kpi_")}
    assert kpis, "the metrics service exports no steward_kpi_* gauge"
    assert not {k for k in kpis if not re.search(rf"\b{k}\b", text)}, "a KPI gauge is not shown"
    variable = next(v for v in dashboards()["steward-communities.json"]["templating"]["list"]
                    if v["name"] == "community")
    assert variable["multi"] and variable["includeAll"]


def test_pipeline_dashboard_covers_every_stage() -> None:
    text = json.dumps(dashboards()["steward-pipeline.json"])
    wanted = {"steward_consumer_lag", "steward_ingest_webhooks_total", "steward_ingest_events_published_total",
              "faststream_received_messages_total", "steward_notifier_deliveries_total",
              "faststream_received_processed_messages_exceptions_total", "steward_dead_letters_total",
              "steward_handler_failures_total", "faststream_received_processed_messages_duration_seconds_bucket",
              "steward_model_latency_seconds_bucket", "steward_model_batch_size_bucket",
              "steward_notifier_delivery_seconds_bucket", "steward_notifier_incident_to_delivery_seconds_bucket",
              "steward_mongo_commands_total", "steward_notifier_fallbacks_total",
              "steward_notifier_suppressed_total", "steward_model_fallbacks_total"}
    assert not {m for m in wanted if m not in text}


# --------------------------------------------------------------------------------------------
# Alerting rules


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    out = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.get("name")
        assert group["name"] and group["rules"]
        out.extend(group["rules"])
    return out


def markdown_anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_alert_rules_are_complete() -> None:
    names = []
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for rule in rules():
        assert "record" not in rule
        name = rule["alert"]
        names.append(name)
        assert re.fullmatch(r"Steward[A-Z]\w+", name), name
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, name
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        assert re.fullmatch(r"(\d+[smhd])+", str(rule["for"])), f"{name}: for {rule.get('for')!r}"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
    assert len(names) == len(set(names)), "duplicate alert names"


def test_runbook_links_point_at_real_anchors() -> None:
    runbook = markdown_anchors(RUNBOOK) if RUNBOOK.exists() else RUNBOOK_ANCHORS
    ours = markdown_anchors(DOC)
    used = set()
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.removeprefix(DOC_BASE).partition("#")
        assert url.startswith(DOC_BASE) and anchor, f"{rule['alert']}: {url}"
        if page == "runbook.md":
            assert anchor in RUNBOOK_ANCHORS, f"{rule['alert']}: #{anchor} is not a runbook procedure"
            assert anchor in runbook, f"{rule['alert']}: docs/runbook.md has no heading #{anchor}"
            used.add(anchor)
        else:
            assert page == "observability.md", f"{rule['alert']}: {url}"
            assert anchor in ours, f"{rule['alert']}: docs/observability.md has no heading #{anchor}"
    assert used == RUNBOOK_ANCHORS, f"no alert leads to {sorted(RUNBOOK_ANCHORS - used)}"


def test_alert_expressions_use_real_metrics_and_labels(promql: Any) -> None:
    problems: list[str] = []
    for rule in rules():
        checker, labels = check_promql(promql, rule["expr"], rule["alert"])
        problems += checker.problems
        if not checker.metrics:
            problems.append(f"{rule['alert']}: selects no metric")
        # An annotation can only show labels the alert's series carry.
        shown = set()
        for text in rule["annotations"].values():
            shown |= set(re.findall(r"\$labels\.(\w+)", text))
        if labels is not None and shown - labels:
            problems.append(f"{rule['alert']}: annotations use {sorted(shown - labels)}, "
                            f"the alert's series carry {sorted(labels)}")
        for label in rule.get("labels", {}):
            if labels is not None and label in labels:
                problems.append(f"{rule['alert']}: label {label!r} would overwrite the series' own")
    assert not problems, "\n".join(problems)


def test_alerts_cover_the_pipeline() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    for metric in ("up{", "steward_consumer_lag", "steward_dead_letters_total", "steward_notifier_deliveries_total",
                   "steward_notifier_fallbacks_total", 'outcome="unavailable"', 'outcome="rejected_signature"',
                   "steward_model_latency_seconds_bucket"):
        assert metric in text, metric


def test_the_checker_catches_mistakes(promql: Any) -> None:
    """The checks above must be able to fail: known-bad expressions are reported."""
    bad = {
        "rate(steward_ingest_webhooks[5m])": "is not exported",  # a counter without _total
        "steward_model_latency_seconds > 1": "is not exported",  # a histogram's bare name
        "sum by (community) (rate(steward_dead_letters_total[5m]))": "not labels of",
        'steward_notifier_fallbacks_total{integration="slack"}': "has no label",
        "histogram_quantile(0.9, sum by (integration) (rate(steward_notifier_delivery_seconds_bucket[5m])))":
            "without 'le'",
        "sum by (topic) (steward_consumer_lag) / sum by (group) (steward_consumer_lag)": "matches nothing",
        "sum by (topic) (steward_consumer_lag) / on (platform) sum by (topic) (steward_consumer_lag)":
            "not on the left",
        "rate(steward_dead_letters_total[5m]": "does not parse",
        "no_such_function(up)": "does not parse",
    }
    for expr, expected in bad.items():
        checker, _ = check_promql(promql, expr, "example")
        assert any(expected in p for p in checker.problems), (expr, checker.problems)
    good, labels = check_promql(
        promql, "sum by (group, topic) (max by (group, topic, partition) (steward_consumer_lag))", "example")
    assert not good.problems and labels == {"group", "topic"}


# --------------------------------------------------------------------------------------------
# The inventory itself, and the guide


def test_inventory_has_what_the_services_declare() -> None:
    metrics = inventory()
    assert metrics["steward_ingest_webhooks"] == {"type": "counter", "labels": ["platform", "outcome"],
                                                  "services": ["ingest"]}
    assert metrics["steward_model_latency_seconds"]["type"] == "histogram"
    assert metrics["steward_consumer_lag"]["type"] == "gauge"
    assert set(metrics["steward_consumer_lag"]["labels"]) >= {"group", "topic", "partition"}
    assert metrics["faststream_received_messages"]["labels"][:3] == ["app_name", "broker", "handler"]
    # ingest uses no store
    assert set(metrics["steward_mongo_commands"]["services"]) == {"moderation", "metrics", "notifier"}
    assert set(metrics["steward_dead_letters"]["services"]) == set(SERVICES)
    for kpi in ("dau", "wau", "mau", "stickiness"):
        assert metrics[f"steward_kpi_{kpi}"]["labels"] == ["community"]


def test_the_guide_lists_every_metric_and_alert() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [family for family in inventory() if family != "up" and f"`{family}" not in text]
    assert not missing, f"docs/observability.md does not list {missing}"
    for rule in rules():
        assert rule["alert"] in text, f"docs/observability.md does not explain {rule['alert']}"
    for anchor in RUNBOOK_ANCHORS:
        assert f"runbook.md#{anchor}" in text, anchor
    for board in dashboards().values():
        assert board["title"] in text
