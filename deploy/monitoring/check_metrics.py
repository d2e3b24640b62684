"""Checks deploy/monitoring against a live Ferry (scripts/monitoring-test.sh):

  python3 check_metrics.py METRICS_PAGE RULES DASHBOARD RULE_TESTS

1. Every metric name in every rule expression and every dashboard query (panels and
   template variables) is a sample Ferry exports, by the `# HELP` and `# TYPE` lines of
   the page (labelled series appear only after events, the HELP lines always): a counter
   family `f` is queried as `f_total`, a histogram as `f_bucket`, `f_sum` or `f_count`, a
   gauge as `f`. A name recorded by a rule in RULES counts as exported.
2. Every alert has a promtool test that fires it and one where it stays quiet.

Exits non-zero listing every problem."""
import json
import re
import sys

import yaml

SUFFIXES = {
    "counter": ["_total", "_created"],
    "histogram": ["_bucket", "_sum", "_count", "_created"],
    "gauge": [""],
    "unknown": [""],
}
# PromQL words that are not metric names: operators, modifiers, constants.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "Inf", "NaN", "atan2",
}


def exported(page):
    """The sample names the page's HELP and TYPE lines allow."""
    helped = set(re.findall(r"^# HELP (\S+) ", page, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)", page, re.M))
    names = set()
    for family in helped:
        for suffix in SUFFIXES.get(types.get(family, "unknown"), [""]):
            names.add(family + suffix)
    return names


def metric_names(expr):
    """The metric names a PromQL expression selects: strings, label matchers, ranges and
    label lists removed, then every identifier that is not a function call, keyword or
    part of a number."""
    e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^{}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        before = e[m.start() - 1] if m.start() else " "
        after = e[m.end():].lstrip()[:1]
        if before.isdigit() or before == "." or after == "(" or m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def grafana_queries(dashboard):
    """Every PromQL query of a dashboard: panel targets (rows' nested panels too) and
    query variables (`label_values(expr, label)` → expr)."""
    out = []

    def panels(ps):
        for p in ps:
            for t in p.get("targets", []):
                out.append((f"panel {p.get('title')!r}", t["expr"]))
            panels(p.get("panels", []))

    panels(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        out.append((f"variable {v['name']!r}", m.group(1) if m else q))
    return out


def main(page_path, rules_path, dashboard_path, tests_path):
    page = open(page_path).read()
    rules = yaml.safe_load(open(rules_path))
    dashboard = json.load(open(dashboard_path))
    tests = yaml.safe_load(open(tests_path))
    have = exported(page)
    problems = []
    if not have:
        problems.append(f"{page_path}: no # HELP lines")
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    queries = [(f"rule {r.get('record') or r.get('alert')}", r["expr"])
               for g in rules["groups"] for r in g["rules"]]
    queries += grafana_queries(dashboard)
    used = 0
    for where, expr in queries:
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric name found in {expr!r}")
        for n in sorted(names - have - recorded):
            problems.append(f"{where}: {n} is not exported by Ferry (no # HELP line for it)")
        used += len(names)

    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired, quiet = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    for a in sorted(alerts - fired):
        problems.append(f"alert {a}: no promtool test fires it")
    for a in sorted(alerts - quiet):
        problems.append(f"alert {a}: no promtool test shows it quiet")

    if problems:
        sys.exit("\n".join(problems))
    print(f"    {len(queries)} queries ({used} metric uses) all name exported metrics or "
          f"recording rules; {len(alerts)} alerts each tested firing and quiet")


if __name__ == "__main__":
    main(*sys.argv[1:5])
