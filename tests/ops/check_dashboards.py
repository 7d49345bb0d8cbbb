#!/usr/bin/env python3
"""Checks Stoa's Grafana dashboards (Python 3.11, standard library only).

Modes, which can be combined:

  --check-structure   offline: the variables, data sources, panel ids and layout, and
                      every query (node filter, metric and label names, rate windows)
  --promtool          offline: every query parses, as PromQL, for promtool
  --prometheus URL    live: every query returns data from a Prometheus scraping Stoa
  --list              print every query and exit

  python3 tests/ops/check_dashboards.py --check-structure --promtool grafana/dashboards
  python3 tests/ops/check_dashboards.py --prometheus http://localhost:9090 --nodes 2 \\
      --retry-seconds 120 grafana/dashboards

In live mode the Grafana variables are replaced as Grafana would with "All" selected
($node -> .*, $__rate_interval -> 1m, $__interval -> 15s). A query is OK when Prometheus
answers with status success and a scalar, or at least one series. Counters that carry a
label only exist once something was counted (rate limits, for instance); a quiet test
cluster leaves such panels EMPTY, which --allow-empty can accept by panel title.

Exit status: 0 when every check passed, 1 otherwise, 2 on bad usage.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NODE_QUERY = "label_values(stoa_build_info, node)"
NODE_MATCHER = re.compile(r'node\s*=~\s*"\$node"')
ALLOWED_VARIABLES = {"$node", "$datasource", "${datasource}", "$__rate_interval", "$__interval"}
ALLOWED_RANGES = {"$__rate_interval", "$__interval"}

# Every metric Stoa exports (docs: the metrics specification) and its own labels; `node`,
# `job` and `instance` are on every series. Histograms also export _bucket (with le),
# _sum and _count.
COMMON_LABELS = {"node", "job", "instance"}
METRICS = {
    "stoa_http_requests_total": {"method": None, "route": None, "status": None},
    "stoa_http_requests_in_flight": {},
    "stoa_rate_limited_total": {"limit": None},
    "stoa_password_hash_busy_total": {},
    "stoa_build_info": {"version": None},
    "stoa_ws_connections": {},
    "stoa_ws_sockets": {},
    "stoa_ws_topics": {},
    "stoa_ws_subscriptions": {},
    "stoa_ws_inbox_bytes": {},
    "stoa_ws_joins_total": {"kind": {"workspace", "document", "user"}},
    "stoa_ws_joins_refused_total": {},
    "stoa_ws_frames_in_total": {"event": {"heartbeat", "phx_join", "phx_leave", "broadcast",
                                          "presence:update", "access_token", "other", "malformed",
                                          "yjs"}},
    "stoa_ws_frames_out_total": {"event": {"phx_reply", "event", "broadcast", "notification",
                                           "presence_state", "presence_diff", "yjs"}},
    "stoa_ws_slow_consumers_total": {},
    "stoa_ws_rate_limited_total": {},
    "stoa_ws_user_rate_limited_total": {},
    "stoa_ws_topic_rate_limited_total": {},
    "stoa_ws_topic_shed_total": {},
    "stoa_ws_topic_crashes_total": {},
    "stoa_ws_topic_restarts_total": {},
    "stoa_ws_session_crashes_total": {},
    "stoa_ws_events_replayed_total": {},
    "stoa_ws_revocations_total": {},
    "stoa_ws_sockets_refused_total": {},
    "stoa_ws_presence_untracked_total": {},
    "stoa_cluster_nodes": {},
    "stoa_cluster_nodes_expired_total": {},
    "stoa_bus_connected": {},
    "stoa_bus_reconnects_total": {},
    "stoa_bus_published_total": {},
    "stoa_bus_dropped_total": {},
    "stoa_bus_messages_out_total": {},
    "stoa_bus_messages_in_total": {},
    "stoa_bus_messages_undecodable_total": {},
    "stoa_bus_messages_rejected_total": {},
    "stoa_yjs_connections": {},
    "stoa_yjs_documents_open": {},
    "stoa_yjs_updates_total": {},
    "stoa_yjs_updates_refused_total": {},
    "stoa_yjs_updates_written_total": {},
    "stoa_yjs_saves_failed_total": {},
    "stoa_yjs_catch_ups_total": {},
    "stoa_db_pool_connections": {"pool": {"reader", "writer", "shared"}, "state": {"idle", "in_use"}},
    "stoa_db_pool_max_connections": {"pool": {"reader", "writer", "shared"}},
    "stoa_process_resident_memory_bytes": {},
    "stoa_process_cpu_seconds_total": {},
    "stoa_process_open_fds": {},
    "stoa_process_max_fds": {},
    "stoa_process_heap_bytes": {"state": {"in_use", "free"}},
}
HISTOGRAMS = {
    "stoa_http_request_duration_seconds": {"method": None, "route": None},
    "stoa_ws_fanout_latency_seconds": {},
    "stoa_ws_outbound_queue_frames": {},
    "stoa_bus_lag_seconds": {},
    "stoa_yjs_update_duration_seconds": {},
    "stoa_yjs_persist_duration_seconds": {},
    "stoa_db_query_duration_seconds": {"statement": {"select", "insert", "update", "delete", "other"}},
}
for _name, _labels in HISTOGRAMS.items():
    METRICS[_name + "_bucket"] = dict(_labels, le=None)
    METRICS[_name + "_sum"] = dict(_labels)
    METRICS[_name + "_count"] = dict(_labels)


# --- reading dashboards ---------------------------------------------------------------


class Query:
    def __init__(self, dashboard, panel, panel_id, ref, expr):
        self.dashboard, self.panel, self.panel_id = dashboard, panel, panel_id
        self.ref, self.expr = ref, expr

    def where(self):
        return "%s / %s [%s]" % (self.dashboard, self.panel, self.ref)


def walk_panels(panels):
    """Every panel, rows' nested panels included (collapsed rows keep theirs inside)."""
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))


def all_panels(dash):
    yield from walk_panels(dash.get("panels"))
    for row in dash.get("rows") or []:  # pre-schema-16 layout, should an old file turn up
        yield from walk_panels(row.get("panels"))


def load(directory):
    names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    if not names:
        sys.exit("no dashboards (*.json) in %s" % directory)
    out = []
    for n in names:
        path = os.path.join(directory, n)
        with open(path, encoding="utf-8") as f:
            try:
                out.append((n, json.load(f)))
            except json.JSONDecodeError as e:
                sys.exit("%s: not JSON: %s" % (path, e))
    return out


def dashboard_name(filename, dash):
    return dash.get("uid") or filename[:-5]


def queries(dashboards):
    out = []
    for filename, dash in dashboards:
        name = dashboard_name(filename, dash)
        for p in all_panels(dash):
            for t in p.get("targets") or []:
                if isinstance(t.get("expr"), str) and t["expr"].strip():
                    out.append(Query(name, p.get("title", "(untitled)"), p.get("id"),
                                     t.get("refId", "?"), t["expr"]))
    return out


def substitute(expr):
    """What Grafana sends with node=All, in a 1-minute rate interval."""
    expr = re.sub(r"\$\{node(?::[a-z]+)?\}|\[\[node\]\]|\$node\b", ".*", expr)
    expr = re.sub(r"\$\{__rate_interval\}|\$__rate_interval\b", "1m", expr)
    expr = re.sub(r"\$\{__interval\}|\$__interval\b", "15s", expr)
    return expr


# --- a little PromQL scanning ---------------------------------------------------------


def strip_strings(expr):
    """The expression with the inside of string literals blanked (same length), so that
    scanning for names and brackets does not look inside them."""
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c not in "\"'`":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < n and expr[j] != c:
            j += 2 if expr[j] == "\\" and c != "`" else 1
        j = min(j, n)  # an unterminated string runs to the end
        out.append(c + " " * (j - i - 1) + (c if j < n else ""))
        i = j + 1
    return "".join(out)


IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*,?')


def selectors(expr):
    """(metric name, text inside its braces or None) for every stoa_ metric named."""
    blank = strip_strings(expr)
    out = []
    for m in IDENT.finditer(blank):
        name = m.group(0)
        if not name.startswith("stoa_"):
            continue
        if m.start() > 0 and (blank[m.start() - 1].isalnum() or blank[m.start() - 1] in "_:"):
            continue
        j = m.end()
        while j < len(blank) and blank[j].isspace():
            j += 1
        if j < len(blank) and blank[j] == "{":
            end = blank.find("}", j)
            if end < 0:
                out.append((name, expr[j + 1:]))
            else:
                out.append((name, expr[j + 1:end]))
        else:
            out.append((name, None))
    return out


def check_expr(expr):
    """Problems with one dashboard query, as strings."""
    problems = []
    for var in re.findall(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]", expr):
        if var not in ALLOWED_VARIABLES:
            problems.append("uses %s (only $node, $__rate_interval and $__interval may appear)" % var)
    blank = strip_strings(expr)
    for r in re.finditer(r"\[([^\]]*)\]", blank):
        window = expr[r.start() + 1:r.end() - 1].strip()
        if window not in ALLOWED_RANGES:
            problems.append("range [%s] (use [$__rate_interval])" % window)
    for name, inside in selectors(expr):
        problems.extend(check_selector(name, inside))
    if "stoa_" in blank and not selectors(expr):
        problems.append("names a stoa_ metric in an unexpected way")
    return problems


def check_selector(name, inside, need_node=True):
    problems = []
    if name not in METRICS:
        return ["unknown metric %s" % name]
    if need_node and (inside is None or not NODE_MATCHER.search(inside)):
        problems.append('%s without node=~"$node"' % name)
    if inside is None:
        return problems
    labels = METRICS[name]
    pos = 0
    text = inside.strip()
    while pos < len(text):
        m = MATCHER.match(text, pos)
        if not m:
            problems.append("%s: cannot read matchers {%s}" % (name, inside))
            break
        label, op, value = m.group(1), m.group(2), m.group(3)[1:-1]
        if label not in labels and label not in COMMON_LABELS:
            problems.append("%s has no label %s" % (name, label))
        elif op == "=" and labels.get(label) and value not in labels[label]:
            problems.append("%s: %s is never %r" % (name, label, value))
        pos = m.end()
    return problems


# --- --check-structure ----------------------------------------------------------------


def check_structure(dashboards, rules_files):
    failures = []
    per_dashboard = {}
    current = [None]

    def fail(where, what):
        failures.append("%s: %s" % (where, what))
        per_dashboard[current[0]] = per_dashboard.get(current[0], 0) + 1

    uids = {}
    for filename, dash in dashboards:
        name = dashboard_name(filename, dash)
        current[0] = name
        if not dash.get("uid"):
            fail(filename, "no uid")
        elif dash["uid"] in uids:
            fail(filename, "uid %s also used by %s" % (dash["uid"], uids[dash["uid"]]))
        uids.setdefault(dash.get("uid"), filename)
        if dash.get("schemaVersion") != 39:
            fail(name, "schemaVersion %r, expected 39" % dash.get("schemaVersion"))
        if dash.get("editable") is not True:
            fail(name, "not editable")
        if "stoa" not in (dash.get("tags") or []):
            fail(name, 'no tag "stoa"')
        if not dash.get("title"):
            fail(name, "no title")

        variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
        ds = variables.get("datasource")
        if not ds:
            fail(name, "no datasource variable")
        elif ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            fail(name, "datasource variable is not a Prometheus data source picker")
        node = variables.get("node")
        if not node:
            fail(name, "no node variable")
        else:
            q = node.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if node.get("type") != "query" or q != NODE_QUERY:
                fail(name, "node variable is not the query %s" % NODE_QUERY)
            if not node.get("multi") or not node.get("includeAll") or node.get("allValue") != ".*":
                fail(name, "node variable must be multi, include All, with allValue .*")
            if node.get("datasource") != DATASOURCE:
                fail(name, "node variable's data source is not ${datasource}")

        ids, titles, boxes = {}, set(), []
        for p in all_panels(dash):
            title = p.get("title", "(untitled)")
            where = "%s / %s" % (name, title)
            if p.get("type") != "row":
                if title in titles:
                    fail(where, "title used by another panel of the dashboard")
                titles.add(title)
            pid = p.get("id")
            if pid is None:
                fail(where, "no panel id")
            elif pid in ids:
                fail(where, "panel id %s also used by %s" % (pid, ids[pid]))
            ids.setdefault(pid, title)
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
                fail(where, "no gridPos")
            elif g["x"] < 0 or g["x"] + g["w"] > 24:
                fail(where, "gridPos outside the 24 columns")
            else:
                boxes.append((where, g))
            if p.get("type") == "row":
                continue
            if p.get("datasource") != DATASOURCE:
                fail(where, "panel data source is %r, not ${datasource}" % (p.get("datasource"),))
            if not ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit"):
                fail(where, "no unit")
            targets = p.get("targets") or []
            if not targets:
                fail(where, "no targets")
            refs = [t.get("refId") for t in targets]
            if len(set(refs)) != len(refs):
                fail(where, "repeated refId")
            for t in targets:
                twhere = "%s [%s]" % (where, t.get("refId"))
                if t.get("datasource") != DATASOURCE:
                    fail(twhere, "target data source is %r, not ${datasource}" % (t.get("datasource"),))
                expr = t.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    fail(twhere, "no expr")
                    continue
                for problem in check_expr(expr):
                    fail(twhere, problem)
        # Panels of the same level must not overlap (rows' nested panels reuse the space).
        top = [(w, g) for w, g in boxes]
        for i in range(len(top)):
            for j in range(i + 1, len(top)):
                (wa, a), (wb, b) = top[i], top[j]
                if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                        and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                    fail(wa, "overlaps %s" % wb)

    for filename, dash in dashboards:
        name = dashboard_name(filename, dash)
        n_panels = sum(1 for p in all_panels(dash) if p.get("type") != "row")
        n_problems = per_dashboard.get(name, 0)
        print("%-22s %3d panels  %s" % (name, n_panels,
                                        "OK" if not n_problems else "%d problem(s)" % n_problems))

    current[0] = None
    for path in rules_files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
                # Annotations are text, not PromQL (the runbook link names the external
                # label `stoa_url`): only expressions name metrics.
                if re.match(r"\s*(summary|description|runbook_url):", code):
                    continue
                for name in re.findall(r"(?<![A-Za-z0-9_])stoa_[A-Za-z0-9_:]+", code):
                    if name not in METRICS:
                        fail("%s:%d" % (path, n), "unknown metric %s" % name)

    return failures


# --- --promtool -----------------------------------------------------------------------


def check_promtool(qs, promtool):
    """Every query, with the variables replaced, as a recording rule for
    `promtool check rules`: a parse error names the rule."""
    exe = shutil.which(promtool) or (promtool if os.path.exists(promtool) else None)
    if not exe:
        return ["promtool not found (%s); install the prometheus package" % promtool]

    def run(items):
        rules = [{"record": "stoa_dashboard_check:q%03d" % i, "expr": substitute(q.expr)}
                 for i, q in items]
        # JSON is YAML, so no YAML library is needed.
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump({"groups": [{"name": "dashboard_queries", "rules": rules}]}, f, indent=1)
            path = f.name
        try:
            p = subprocess.run([exe, "check", "rules", path], capture_output=True, text=True)
            return p.returncode, (p.stdout + p.stderr).strip()
        finally:
            os.unlink(path)

    items = list(enumerate(qs))
    code, output = run(items)
    if code == 0:
        print("promtool: %d queries parse (%s)" % (len(qs), output.splitlines()[-1].strip()))
        return []
    failures = []
    for i, q in items:  # find which ones
        c, out = run([(i, q)])
        if c != 0:
            failures.append("%s: promtool: %s" % (q.where(), out.splitlines()[-1].strip()))
    return failures or ["promtool check rules failed: %s" % output]


# --- --prometheus ---------------------------------------------------------------------


def api(base, path, params):
    url = base.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": "HTTP %d" % e.code}
    except (urllib.error.URLError, OSError) as e:
        return {"status": "error", "error": "cannot reach %s: %s" % (base, e)}
    try:
        return json.loads(body)
    except ValueError:
        return {"status": "error", "error": "not JSON from %s" % url}


def run_query(base, expr):
    """('OK' | 'EMPTY' | 'ERROR', detail)."""
    r = api(base, "/api/v1/query", {"query": substitute(expr)})
    if r.get("status") != "success":
        return "ERROR", r.get("error") or "status %r" % r.get("status")
    data = r.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return "OK", kind
    if not result:
        return "EMPTY", "no series"
    values = [s.get("value", [None, None])[1] for s in result] if kind == "vector" else []
    nan = " (all NaN: no observations yet)" if values and all(v == "NaN" for v in values) else ""
    return "OK", "%d series%s" % (len(result), nan)


def check_live(base, qs, nodes, retry_seconds, allow_empty):
    deadline = time.monotonic() + retry_seconds
    results = {}
    pending = list(range(len(qs)))
    node_values, node_status = [], "ERROR"
    while True:
        for i in pending:
            results[i] = run_query(base, qs[i].expr)
        r = api(base, "/api/v1/label/node/values", {"match[]": "stoa_build_info"})
        if r.get("status") == "success":
            node_values = r.get("data") or []
            node_status = "OK" if len(node_values) >= nodes else "EMPTY"
        else:
            node_values, node_status = [r.get("error")], "ERROR"
        # Retry what may still come: no data yet, or Prometheus not reachable yet.
        pending = [i for i in pending if results[i][0] == "EMPTY"
                   or results[i][1].startswith("cannot reach")]
        if (not pending and node_status == "OK") or time.monotonic() >= deadline:
            break
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))

    failures = []
    print("%-22s %-44s %s" % ("(variables)", "node = " + NODE_QUERY, node_status),
          "(%s)" % ", ".join(map(str, node_values)) if node_values else "(no nodes)")
    if node_status != "OK":
        failures.append("node variable: %s nodes %s, expected at least %d"
                        % (len(node_values) if node_status == "EMPTY" else "?", node_values, nodes))

    # One line per panel: the worst status of its targets.
    panels = {}
    for i, q in enumerate(qs):
        panels.setdefault((q.dashboard, q.panel_id, q.panel), []).append((q, results[i]))
    rank = {"OK": 0, "EMPTY": 1, "ERROR": 2}
    for (dash, _, title), rows in panels.items():
        status = max((res[0] for _, res in rows), key=rank.get)
        allowed = status == "EMPTY" and any(re.search(a, title) for a in allow_empty)
        details = "; ".join("%s: %s" % (q.ref, res[1]) for q, res in rows)
        print("%-22s %-44s %s%s  (%s)" % (dash, title, status, " (allowed)" if allowed else "", details))
        if status != "OK" and not allowed:
            for q, res in rows:
                if res[0] != "OK":
                    failures.append("%s %s: %s\n    %s" % (q.where(), res[0], res[1], substitute(q.expr)))
    return failures


# --- main -----------------------------------------------------------------------------


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("dashboards", nargs="?", default="grafana/dashboards",
                    help="directory of dashboard JSON files (default: grafana/dashboards)")
    ap.add_argument("--prometheus", metavar="URL", help="query this Prometheus (e.g. http://localhost:9090)")
    ap.add_argument("--nodes", type=int, default=1, metavar="N",
                    help="the node variable must list at least N nodes (default 1)")
    ap.add_argument("--retry-seconds", type=float, default=0, metavar="N",
                    help="re-query EMPTY results until N seconds have passed (histograms and "
                         "rates need a few scrapes)")
    ap.add_argument("--allow-empty", action="append", default=[], metavar="REGEX",
                    help="accept EMPTY for panels whose title matches (repeatable)")
    ap.add_argument("--list", action="store_true", help="print every query and exit")
    ap.add_argument("--check-structure", action="store_true",
                    help="check the dashboards' structure and queries offline")
    ap.add_argument("--rules", action="append", default=[], metavar="FILE",
                    help="with --check-structure: also check the metric names in this rules file")
    ap.add_argument("--promtool", action="store_true",
                    help="check that every query parses, with promtool check rules")
    ap.add_argument("--promtool-bin", default="promtool", metavar="PATH",
                    help="the promtool to run (default: promtool on PATH)")
    args = ap.parse_args()

    if not os.path.isdir(args.dashboards):
        ap.error("%s is not a directory" % args.dashboards)
    dashboards = load(args.dashboards)
    qs = queries(dashboards)

    if args.list:
        for q in qs:
            print("%s\t%s\t%s\t%s" % (q.dashboard, q.panel, q.ref, q.expr))
        return 0
    if not (args.check_structure or args.promtool or args.prometheus):
        ap.error("nothing to do: give --check-structure, --promtool, --prometheus URL or --list")

    failures = []
    if args.check_structure:
        failures += check_structure(dashboards, args.rules)
        print("structure: %d dashboards, %d queries checked" % (len(dashboards), len(qs)))
    if args.promtool:
        failures += check_promtool(qs, args.promtool_bin)
    if args.prometheus:
        failures += check_live(args.prometheus, qs, args.nodes, args.retry_seconds, args.allow_empty)

    if failures:
        print("\n%d problem(s):" % len(failures))
        for f in failures:
            print("  " + f)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
