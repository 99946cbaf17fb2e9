#!/usr/bin/env python3
"""Checks Skiff's Grafana dashboards (crates/skiff/src/monitoring/dashboards/*.json).

For every dashboard it checks the shape the monitoring docs promise (uid
"skiff-<file stem>", tags, a `datasource` variable of type prometheus,
timeseries/stat/table panels whose targets each have an `expr` and a
`legendFormat`), then checks that every PromQL expression parses, with
Prometheus' own parser: each expression, after substitution, becomes a
recording rule (`check:expr_N`) in a temporary rules file given to
`promtool check rules`.

Substitutions, made before parsing:
  $__rate_interval, ${__rate_interval}, [[__rate_interval]]  -> 1m
  $__interval, ${__interval}, [[__interval]]                 -> 1m
  $__range, ${__range}, [[__range]]                          -> 1h
  every variable of the dashboard's templating list, as $name, ${name},
  ${name:format} or [[name]]                                 -> example
Anything else that looks like a Grafana variable afterwards ($word or
${...}) is an error; `$1` and the like (label_replace's replacement) stay.

Template variable queries are checked too: label_values(<selector>, label)
is parsed as `group by (label) (<selector>)` and query_result(<expr>) as
<expr>; label_values(label) alone has no expression.

With --prometheus URL every expression is also evaluated there (an instant
query), variables taking the values given with --set name=value (else
"example"): an expression Prometheus refuses is a failure, and one that
returns no series is listed (a failure with --require-data).

Usage: scripts/check_dashboards.py [--promtool PATH] [--list-metrics]
       [--prometheus URL [--set NAME=VALUE ...] [--require-data]] [FILE_OR_DIR ...]
Exits 0 when all is well, 1 with the failing dashboards, panels and
expressions otherwise, 2 when promtool cannot be run.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "crates", "skiff", "src", "monitoring", "dashboards")

PANEL_TYPES = {"timeseries", "stat", "table"}
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
PLAIN_NAME = "example"


def substitute(expr, variables, chosen=None):
    """Grafana's interpolation, with fixed values; returns (text, errors)."""
    values = dict(BUILTINS)
    for name in variables:
        values.setdefault(name, (chosen or {}).get(name, PLAIN_NAME))
    # Longest names first, so $node never eats the start of $node_name.
    for name in sorted(values, key=len, reverse=True):
        value = values[name]
        n = re.escape(name)
        expr = re.sub(r"\$\{" + n + r"(?::[^}]*)?\}", value, expr)
        expr = re.sub(r"\[\[" + n + r"(?::[^\]]*)?\]\]", value, expr)
        expr = re.sub(r"\$" + n + r"(?![A-Za-z0-9_])", value, expr)
    errors = []
    for left in re.findall(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z_][A-Za-z0-9_:]*\]\]", expr):
        errors.append(f"unknown variable {left}")
    return expr, errors


def split_args(text):
    """Top-level comma-separated arguments of a call's inside."""
    args, depth, quote, current = [], 0, None, ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            current += c
            if c == "\\" and i + 1 < len(text):
                current += text[i + 1]
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            current += c
        elif c in "([{":
            depth += 1
            current += c
        elif c in ")]}":
            depth -= 1
            current += c
        elif c == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += c
        i += 1
    if current.strip():
        args.append(current.strip())
    return args


def variable_expr(query):
    """The PromQL inside a Prometheus variable query, or None if it has none."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*)\)", query, re.S)
    if m:
        args = split_args(m.group(1))
        if len(args) == 2:
            return f"group by ({args[1]}) ({args[0]})"
        return None
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return m.group(1)
    return None


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        for inner in panel.get("panels", []):  # collapsed rows
            yield inner


def check_dashboard(path, exprs, problems):
    stem = os.path.splitext(os.path.basename(path))[0]
    where = os.path.relpath(path, ROOT)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{where}: not JSON: {e}")
        return
    if d.get("uid") != "skiff-" + stem:
        problems.append(f"{where}: uid is {d.get('uid')!r}, not {'skiff-' + stem!r}")
    if not isinstance(d.get("title"), str) or not d["title"].startswith("Skiff / "):
        problems.append(f"{where}: title {d.get('title')!r} does not start with 'Skiff / '")
    for tag in ("skiff", "kubernetes"):
        if tag not in d.get("tags", []):
            problems.append(f"{where}: missing tag {tag!r}")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problems.append(f"{where}: schemaVersion {d.get('schemaVersion')!r} is below 36")
    variables = d.get("templating", {}).get("list", [])
    names = [v.get("name") for v in variables]
    ds = [v for v in variables if v.get("name") == "datasource"]
    if not ds or ds[0].get("type") != "datasource" or ds[0].get("query") != "prometheus":
        problems.append(f"{where}: no `datasource` variable of type datasource querying prometheus")
    for v in variables:
        if v.get("type") != "query":
            continue
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        expr = variable_expr(query or "")
        if expr is not None:
            exprs.append((where, f"variable {v.get('name')}", "", expr, names))
    panels = list(panels_of(d))
    if not panels:
        problems.append(f"{where}: no panels")
    for panel in panels:
        kind, title = panel.get("type"), panel.get("title", "")
        if kind == "row":
            continue
        if kind not in PANEL_TYPES:
            problems.append(f"{where}: panel {title!r} is of type {kind!r}")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: panel {title!r} does not use ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: panel {title!r} has no targets")
        for t in targets:
            ref = t.get("refId", "?")
            if not t.get("expr"):
                problems.append(f"{where}: panel {title!r} target {ref} has no expr")
                continue
            if "legendFormat" not in t:
                problems.append(f"{where}: panel {title!r} target {ref} has no legendFormat")
            exprs.append((where, f"panel {title!r}", ref, t["expr"], names))


def metric_names(expr):
    """The metric (and recording rule) names an expression reads; approximate."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    keywords = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "atan2"}
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)", text):
        word = m.group(1)
        rest = text[m.end():].lstrip()
        if word.lower() in keywords or rest.startswith("("):
            continue
        names.add(word)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=[DEFAULT_DIR])
    parser.add_argument("--promtool", default="promtool")
    parser.add_argument("--list-metrics", action="store_true", help="also print every metric name the expressions read")
    parser.add_argument("--prometheus", help="also evaluate every expression in this Prometheus (http://host:port)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a variable's value for --prometheus")
    parser.add_argument("--require-data", action="store_true", help="with --prometheus, an expression with no series is a failure")
    args = parser.parse_args()
    chosen = dict(pair.split("=", 1) for pair in args.set)

    files = []
    for p in args.paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    if not files:
        print(f"no dashboards in {', '.join(args.paths)}", file=sys.stderr)
        return 1

    problems, exprs = [], []
    for path in files:
        check_dashboard(path, exprs, problems)

    rules, origin = [], {}
    for i, (where, what, ref, expr, names) in enumerate(exprs):
        text, errors = substitute(expr, [n for n in names if n and n != "datasource"])
        for e in errors:
            problems.append(f"{where}: {what} {ref}: {e}\n    {expr}")
        record = f"check:expr_{i}"
        origin[record] = (where, what, ref, expr, text)
        rules.append((record, text))

    with tempfile.TemporaryDirectory(prefix="check-dashboards-") as tmp:
        rules_file = os.path.join(tmp, "dashboards.rules.yml")
        with open(rules_file, "w") as f:
            f.write("groups:\n- name: dashboards\n  rules:\n")
            for record, text in rules:
                # A JSON string is a YAML double-quoted scalar.
                f.write(f"  - record: {record}\n    expr: {json.dumps(text)}\n")
        try:
            run = subprocess.run([args.promtool, "check", "rules", rules_file], capture_output=True, text=True)
        except OSError as e:
            print(f"cannot run {args.promtool}: {e}", file=sys.stderr)
            return 2
        if run.returncode != 0:
            output = run.stdout + run.stderr
            failed = sorted(set(re.findall(r"check:expr_\d+", output)), key=lambda r: int(r.split("_")[-1]))
            for record in failed:
                where, what, ref, expr, text = origin[record]
                lines = [line.strip() for line in output.splitlines() if re.search(re.escape(record) + r"(?!\d)", line)]
                problems.append(f"{where}: {what} {ref}: promtool rejects the expression\n    {expr}\n    as checked: {text}\n    " + "\n    ".join(lines))
            if not failed:
                problems.append("promtool check rules failed:\n" + output)

    if args.prometheus and not problems:
        empty = []
        for where, what, ref, expr, names in exprs:
            text, _ = substitute(expr, [n for n in names if n and n != "datasource"], chosen)
            url = args.prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": text})
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    body = json.load(response)
            except urllib.error.HTTPError as e:
                body = json.load(e)
            except (OSError, ValueError) as e:
                problems.append(f"{where}: {what} {ref}: querying {args.prometheus}: {e}")
                continue
            if body.get("status") != "success":
                problems.append(f"{where}: {what} {ref}: Prometheus refuses it: {body.get('error')}\n    {text}")
            elif not body["data"]["result"]:
                empty.append(f"{where}: {what} {ref}: no series\n    {text}")
        for line in empty:
            print(line, file=sys.stderr if args.require_data else sys.stdout)
        if args.require_data:
            problems += empty
        print(f"evaluated in {args.prometheus}: {len(exprs) - len(empty)} of {len(exprs)} with series")

    if args.list_metrics:
        used = set()
        for _, _, _, expr, _ in exprs:
            used |= metric_names(expr)
        print("metrics read:")
        for name in sorted(used):
            print("  " + name)

    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s) in {len(files)} dashboard(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(files)} dashboard(s), {len(exprs)} expression(s) parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
