#!/usr/bin/env python3
"""Generates Stoa's Grafana dashboards (grafana/dashboards/*.json).

The JSON files are this script's output and are committed with it; edit the panels here
and run `python3 grafana/generate.py` to rewrite them. The output is deterministic (sorted
keys, two-space indent), so a diff shows exactly what changed.

Conventions every dashboard follows (tests/ops/check_dashboards.py checks them):
- two variables: `datasource` (any Prometheus data source) and `node` (the `node` label of
  stoa_build_info, several at once, "All" matching `.*`);
- every panel and target uses the `${datasource}` data source;
- every selector of a stoa_ metric carries `node=~"$node"`;
- rate windows are `$__rate_interval`; every query is one PromQL expression.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dashboards")

DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'node=~"$node"'
RI = "$__rate_interval"


# --- PromQL helpers -------------------------------------------------------------------


def sel(metric, *matchers):
    """`metric{node=~"$node", matchers...}`."""
    return "%s{%s}" % (metric, ", ".join((NODE,) + matchers))


def rate(metric, *matchers):
    return "rate(%s[%s])" % (sel(metric, *matchers), RI)


def increase(metric, *matchers):
    return "increase(%s[%s])" % (sel(metric, *matchers), RI)


def sum_by(labels, inner):
    if labels:
        return "sum by (%s) (%s)" % (", ".join(labels), inner)
    return "sum(%s)" % inner


def quantile(q, histogram, by=(), *matchers):
    """The q-quantile of a histogram (name without _bucket), aggregated by `by`."""
    inner = sum_by(tuple(by) + ("le",), rate(histogram + "_bucket", *matchers))
    return "histogram_quantile(%s, %s)" % (q, inner)


def ratio_5xx(by=()):
    """Share of HTTP responses with a 5xx status. Groups without any 5xx give 0 rather than
    no series, so a healthy service draws a flat line instead of nothing."""
    errors = sum_by(by, rate("stoa_http_requests_total", 'status=~"5.."'))
    total = sum_by(by, rate("stoa_http_requests_total"))
    if by:
        return "(%s or %s * 0) / %s" % (errors, total, total)
    return "(%s or vector(0)) / %s" % (errors, total)


# --- panels ---------------------------------------------------------------------------


def target(expr, legend="", ref="A"):
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": True,
        "refId": ref,
    }


def targets(pairs):
    return [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(pairs)]


def thresholds(steps, base="green"):
    out = [{"color": base, "value": None}]
    for value, color in steps:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


def timeseries(title, queries, unit, w=12, h=8, desc="", stack=False, max_=None, min_=0):
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        },
        "thresholds": thresholds([]),
        "unit": unit,
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "datasource": DS,
        "description": desc,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(queries),
        "title": title,
        "type": "timeseries",
        "_w": w,
        "_h": h,
    }


def stat(title, expr, unit, steps=(), w=4, h=4, desc="", decimals=None, base="green"):
    defaults = {
        "color": {"mode": "thresholds"},
        "thresholds": thresholds(steps, base),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "datasource": DS,
        "description": desc,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": [target(expr, "", "A")],
        "title": title,
        "type": "stat",
        "_w": w,
        "_h": h,
    }


def layout(rows):
    """rows: [(row title, [panels])]. Places panels left to right, wrapping at 24 columns,
    each section under a row header; numbers every panel."""
    panels, y, next_id = [], 0, 1
    for title, section in rows:
        panels.append({
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "id": next_id,
            "panels": [],
            "title": title,
            "type": "row",
        })
        next_id += 1
        y += 1
        x, line_h = 0, 0
        for p in section:
            w, h = p.pop("_w"), p.pop("_h")
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            p["id"] = next_id
            next_id += 1
            x += w
            line_h = max(line_h, h)
            panels.append(p)
        y += line_h
    return panels


def dashboard(uid, title, description, rows):
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["stoa"],
                "targetBlank": False,
                "title": "Stoa dashboards",
                "type": "dashboards",
            }
        ],
        "liveNow": False,
        "panels": layout(rows),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["stoa"],
        "templating": {
            "list": [
                {
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "label": "Data source",
                    "multi": False,
                    "name": "datasource",
                    "options": [],
                    "query": "prometheus",
                    "refresh": 1,
                    "regex": "",
                    "skipUrlSync": False,
                    "type": "datasource",
                },
                {
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "datasource": DS,
                    "definition": "label_values(stoa_build_info, node)",
                    "hide": 0,
                    "includeAll": True,
                    "label": "Node",
                    "multi": True,
                    "name": "node",
                    "options": [],
                    "query": "label_values(stoa_build_info, node)",
                    "refresh": 2,
                    "regex": "",
                    "skipUrlSync": False,
                    "sort": 1,
                    "type": "query",
                },
            ]
        },
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --- the dashboards -------------------------------------------------------------------


def overview():
    http_total = sum_by((), rate("stoa_http_requests_total"))
    return dashboard(
        "stoa-overview",
        "Stoa / Overview",
        "Is every node up and serving: scrape health, connections, HTTP traffic and errors, "
        "the p99 latencies that users feel, memory and CPU.",
        [
            ("Health", [
                stat("Nodes up", 'sum(up{job="stoa"})', "short",
                     desc="Scrape targets of job stoa that answered the last scrape "
                          "(not filtered by the node variable: `up` has no node label)."),
                stat("Nodes down", 'count(up{job="stoa"} == 0) or vector(0)', "short",
                     steps=[(1, "red")],
                     desc="Scrape targets of job stoa that failed the last scrape. Alert: StoaNodeDown."),
                stat("Channel sessions", sum_by((), sel("stoa_ws_connections")), "short"),
                stat("Yjs sessions", sum_by((), sel("stoa_yjs_connections")), "short"),
                stat("HTTP requests", http_total, "reqps"),
                stat("HTTP 5xx ratio", ratio_5xx(), "percentunit",
                     steps=[(0.01, "yellow"), (0.05, "red")],
                     desc="Share of responses with a 5xx status. Alert: StoaHighErrorRate (above 5%)."),
            ]),
            ("Traffic", [
                timeseries("Scrape targets up", [('up{job="stoa"}', "{{instance}}")], "short",
                           w=8, max_=1,
                           desc="1 while Prometheus can scrape the target, 0 when it cannot."),
                timeseries("Connections by node", [
                    (sum_by(("node",), sel("stoa_ws_connections")), "{{node}} channels"),
                    (sum_by(("node",), sel("stoa_yjs_connections")), "{{node}} yjs"),
                ], "short", w=8, desc="Channel (/socket/websocket) and Yjs (/yjs/{id}) sessions alive."),
                timeseries("HTTP requests by node", [
                    (sum_by(("node",), rate("stoa_http_requests_total")), "{{node}}"),
                ], "reqps", w=8),
                timeseries("HTTP 5xx ratio by node", [(ratio_5xx(("node",)), "{{node}}")],
                           "percentunit", w=12,
                           desc="Alert StoaHighErrorRate fires above 5% for 5 minutes."),
                timeseries("Build versions", [
                    ("count by (version) (%s)" % sel("stoa_build_info"), "{{version}}"),
                ], "short", w=12, desc="Nodes running each version; more than one line during a rolling deploy."),
            ]),
            ("Latency (p99)", [
                timeseries("HTTP request p99", [
                    (quantile(0.99, "stoa_http_request_duration_seconds", ("node",)), "{{node}}"),
                ], "s", w=6, desc="All routes together. Alert: StoaHighLatency (above 0.5 s)."),
                timeseries("Channel fan-out p99", [
                    (quantile(0.99, "stoa_ws_fanout_latency_seconds", ("node",)), "{{node}}"),
                ], "s", w=6, desc="Event committed or broadcast received, to written on the socket."),
                timeseries("Yjs update p99", [
                    (quantile(0.99, "stoa_yjs_update_duration_seconds", ("node",)), "{{node}}"),
                ], "s", w=6, desc="Update arrived at its document actor, to applied and relayed."),
                timeseries("Database query p99", [
                    (quantile(0.99, "stoa_db_query_duration_seconds", ("node",)), "{{node}}"),
                ], "s", w=6, desc="All statements together; by statement on Stoa / Yjs and storage."),
            ]),
            ("Process", [
                timeseries("Resident memory", [
                    (sum_by(("node",), sel("stoa_process_resident_memory_bytes")), "{{node}}"),
                ], "bytes", w=8),
                timeseries("CPU (cores)", [
                    (sum_by(("node",), rate("stoa_process_cpu_seconds_total")), "{{node}}"),
                ], "short", w=8, desc="CPU seconds per second: 1 is one core busy."),
                timeseries("File descriptors used", [
                    ("%s / %s" % (sum_by(("node",), sel("stoa_process_open_fds")),
                                  sum_by(("node",), sel("stoa_process_max_fds"))), "{{node}}"),
                ], "percentunit", w=8, max_=1,
                    desc="Open descriptors over the limit. Every socket is one; at the limit new "
                         "connections fail. Alert: StoaFileDescriptorsExhausted (above 90%)."),
            ]),
        ],
    )


def realtime():
    return dashboard(
        "stoa-realtime",
        "Stoa / Real-time",
        "Phoenix Channels on /socket/websocket: sessions, joins, frames, fan-out latency, "
        "outbound queues, slow consumers, rate limits and actor crashes.",
        [
            ("Now", [
                stat("Sessions", sum_by((), sel("stoa_ws_connections")), "short"),
                stat("Sockets", sum_by((), sel("stoa_ws_sockets")), "short",
                     desc="Open at the TCP level; may exceed sessions briefly while closes complete."),
                stat("Subscriptions", sum_by((), sel("stoa_ws_subscriptions")), "short"),
                stat("Topics", sum_by((), sel("stoa_ws_topics")), "short"),
                stat("Fan-out p99", quantile(0.99, "stoa_ws_fanout_latency_seconds"), "s",
                     steps=[(0.1, "yellow"), (0.5, "red")]),
                stat("Slow consumers /s", sum_by((), rate("stoa_ws_slow_consumers_total")), "short",
                     steps=[(0.01, "yellow"), (0.1, "red")], decimals=3,
                     desc="Connections closed as slow_consumer. Alert: StoaSlowConsumers (above 0.1/s)."),
            ]),
            ("Connections", [
                timeseries("Sessions and sockets", [
                    (sum_by(("node",), sel("stoa_ws_connections")), "{{node}} sessions"),
                    (sum_by(("node",), sel("stoa_ws_sockets")), "{{node}} sockets"),
                ], "short", w=8),
                timeseries("Subscriptions and topics", [
                    (sum_by(("node",), sel("stoa_ws_subscriptions")), "{{node}} subscriptions"),
                    (sum_by(("node",), sel("stoa_ws_topics")), "{{node}} topics"),
                ], "short", w=8),
                timeseries("Joins /s by kind", [
                    (sum_by(("kind",), rate("stoa_ws_joins_total")), "{{kind}}"),
                    (sum_by((), rate("stoa_ws_joins_refused_total")), "refused"),
                ], "short", w=8, desc="Accepted joins by topic kind, and refused joins."),
            ]),
            ("Frames", [
                timeseries("Frames in /s by event", [
                    (sum_by(("event",), rate("stoa_ws_frames_in_total")), "{{event}}"),
                ], "short", stack=True, desc="Text frames received from clients."),
                timeseries("Frames out /s by event", [
                    (sum_by(("event",), rate("stoa_ws_frames_out_total")), "{{event}}"),
                ], "short", stack=True, desc="Frames queued for clients."),
            ]),
            ("Delivery", [
                timeseries("Fan-out latency", [
                    (quantile(0.5, "stoa_ws_fanout_latency_seconds"), "p50"),
                    (quantile(0.99, "stoa_ws_fanout_latency_seconds"), "p99"),
                ], "s", w=8,
                    desc="Commit of an event, or receipt of a broadcast, to written on the socket. "
                         "Alert: StoaHighLatency (p99 above 0.5 s)."),
                timeseries("Outbound queue depth", [
                    (quantile(0.5, "stoa_ws_outbound_queue_frames"), "p50"),
                    (quantile(0.99, "stoa_ws_outbound_queue_frames"), "p99"),
                ], "short", w=8,
                    desc="Frames an outbox held when the transport wrote it. A client is cut off "
                         "as slow_consumer when its queue reaches realtime.outbound_queue (1024)."),
                timeseries("Slow consumers /s by node", [
                    (sum_by(("node",), rate("stoa_ws_slow_consumers_total")), "{{node}}"),
                ], "short", w=8, desc="Channel and Yjs connections closed as slow_consumer."),
                timeseries("Replays and revocations /s", [
                    (sum_by((), rate("stoa_ws_events_replayed_total")), "events replayed"),
                    (sum_by((), rate("stoa_ws_revocations_total")), "revocations"),
                ], "short", w=8,
                    desc="Events replayed to joins with since (spikes after reconnect waves), and "
                         "channels closed by membership revocation."),
                timeseries("Bus lag p99", [
                    (quantile(0.99, "stoa_bus_lag_seconds", ("node",)), "{{node}}"),
                ], "s", w=8, desc="Cross-node part of the delivery path; details on Stoa / Cluster."),
                timeseries("Transport inboxes by node", [
                    (sum_by(("node",), sel("stoa_ws_inbox_bytes")), "{{node}}"),
                ], "bytes", w=8,
                    desc="Frames waiting for the threads that write the sockets (a fan-out's shared "
                         "bytes once). Near zero when healthy; at 64 MiB a thread refuses more and "
                         "its subscribers are cut off as slow_consumer."),
            ]),
            ("Limits", [
                timeseries("Messages refused by rate limits /s", [
                    (sum_by((), rate("stoa_ws_rate_limited_total")), "connection"),
                    (sum_by((), rate("stoa_ws_user_rate_limited_total")), "user"),
                    (sum_by((), rate("stoa_ws_topic_rate_limited_total")), "topic budget"),
                ], "short",
                    desc="realtime.messages_per_sec, user_messages_per_sec and "
                         "topic_broadcasts_per_sec at work."),
                timeseries("Shedding and refusals /s", [
                    (sum_by((), rate("stoa_ws_topic_shed_total")), "topic mailbox full"),
                    (sum_by((), rate("stoa_ws_sockets_refused_total")), "sockets refused (per user)"),
                    (sum_by((), rate("stoa_ws_presence_untracked_total")), "presence untracked"),
                ], "short"),
            ]),
            ("Actors", [
                timeseries("Actor crashes and restarts", [
                    (sum_by(("node",), increase("stoa_ws_topic_crashes_total")), "{{node}} topic crashes"),
                    (sum_by(("node",), increase("stoa_ws_topic_restarts_total")), "{{node}} topic restarts"),
                    (sum_by(("node",), increase("stoa_ws_session_crashes_total")), "{{node}} session crashes"),
                ], "short", w=24,
                    desc="Counts per interval. A crash is a panic in a topic or session actor; "
                         "restarts follow topic crashes (at most three per topic in ten seconds). "
                         "Alert: StoaActorCrashes."),
            ]),
        ],
    )


def cluster():
    return dashboard(
        "stoa-cluster",
        "Stoa / Cluster",
        "The Redis bus between nodes and the nodes' view of each other. Only nodes with "
        "redis.url set export the bus metrics.",
        [
            ("Now", [
                stat("Nodes seen (least)", "min(%s)" % sel("stoa_cluster_nodes"), "short",
                     desc="The smallest cluster any node sees, itself included."),
                stat("Nodes seen (most)", "max(%s)" % sel("stoa_cluster_nodes"), "short",
                     desc="Differs from the least while nodes disagree about who is alive."),
                stat("Bus connected (all)", "min(%s)" % sel("stoa_bus_connected"), "short",
                     steps=[(1, "green")], base="red", desc="0 if any selected node has lost its Redis subscription."),
                stat("Bus dropped /s", sum_by((), rate("stoa_bus_dropped_total")), "short",
                     steps=[(0.001, "red")], decimals=2),
                stat("Bus lag p99", quantile(0.99, "stoa_bus_lag_seconds"), "s",
                     steps=[(0.1, "yellow"), (0.5, "red")]),
                stat("Nodes expired", sum_by((), increase("stoa_cluster_nodes_expired_total")), "short",
                     steps=[(1, "yellow")], desc="In the last interval."),
            ]),
            ("Membership", [
                timeseries("Cluster nodes seen", [
                    (sum_by(("node",), sel("stoa_cluster_nodes")), "{{node}}"),
                ], "short", desc="Live nodes each node sees, itself included."),
                timeseries("Bus connected", [
                    (sum_by(("node",), sel("stoa_bus_connected")), "{{node}}"),
                ], "short", max_=1, desc="1 while the node's subscription connection to Redis is up."),
            ]),
            ("Bus traffic", [
                timeseries("Bus messages /s", [
                    (sum_by(("node",), rate("stoa_bus_messages_out_total")), "{{node}} out"),
                    (sum_by(("node",), rate("stoa_bus_messages_in_total")), "{{node}} in"),
                ], "short", w=8),
                timeseries("Published and dropped /s", [
                    (sum_by(("node",), rate("stoa_bus_published_total")), "{{node}} published"),
                    (sum_by(("node",), rate("stoa_bus_dropped_total")), "{{node}} dropped"),
                ], "short", w=8,
                    desc="Dropped: Redis away or the publish queue full. Topics read what was lost "
                         "from the event log. Alert: StoaBusDegraded."),
                timeseries("Undecodable messages /s", [
                    (sum_by(("node",), rate("stoa_bus_messages_undecodable_total")), "{{node}}"),
                ], "short", w=8, desc="Non-zero: nodes of different versions, or something else publishing."),
            ]),
            ("Health", [
                timeseries("Bus lag", [
                    (quantile(0.5, "stoa_bus_lag_seconds"), "p50"),
                    (quantile(0.99, "stoa_bus_lag_seconds", ("node",)), "{{node}} p99"),
                ], "s", w=8, desc="Sent on another node to arrived here, by the sender's clock "
                                  "(clock skew between hosts shows up here)."),
                timeseries("Bus reconnects", [
                    (sum_by(("node",), increase("stoa_bus_reconnects_total")), "{{node}}"),
                ], "short", w=8, desc="Per interval."),
                timeseries("Nodes expired by observer", [
                    (sum_by(("node",), increase("stoa_cluster_nodes_expired_total")), "{{node}}"),
                ], "short", w=8,
                    desc="Per interval: nodes taken for dead after cluster.node_expiry_ms without "
                         "heartbeats (a crash, or a network partition)."),
            ]),
        ],
    )


def yjs_storage():
    def pool_panel(state, title):
        # SQLite has a reader and a one-connection writer pool; PostgreSQL one `shared` pool.
        return timeseries(title, [
            (sum_by(("node", "pool"), sel("stoa_db_pool_connections", 'state="%s"' % state)),
             "{{node}} {{pool}}"),
        ], "short", w=8)

    def pool_max():
        return timeseries("Pool size limit", [
            (sum_by(("node", "pool"), sel("stoa_db_pool_max_connections")), "{{node}} {{pool}}"),
        ], "short", w=8, desc="database.max_connections (the SQLite writer pool is always 1).")

    return dashboard(
        "stoa-yjs-storage",
        "Stoa / Yjs and storage",
        "Yjs documents (/yjs/{id}) and the database underneath: update and persistence "
        "latency, connection pools, query latency by statement.",
        [
            ("Now", [
                stat("Yjs sessions", sum_by((), sel("stoa_yjs_connections")), "short"),
                stat("Documents open", sum_by((), sel("stoa_yjs_documents_open")), "short"),
                stat("Yjs updates /s", sum_by((), rate("stoa_yjs_updates_total")), "short"),
                stat("Update p99", quantile(0.99, "stoa_yjs_update_duration_seconds"), "s",
                     steps=[(0.1, "yellow"), (0.5, "red")]),
                stat("Persist p99", quantile(0.99, "stoa_yjs_persist_duration_seconds"), "s",
                     steps=[(0.25, "yellow"), (1, "red")]),
                stat("Busiest pool", "max(%s / %s)" % (
                    sum_by(("node", "pool"), sel("stoa_db_pool_connections", 'state="in_use"')),
                    sum_by(("node", "pool"), sel("stoa_db_pool_max_connections"))),
                    "percentunit", steps=[(0.7, "yellow"), (0.9, "red")],
                    desc="Highest in-use share of any pool. Alert: StoaDatabasePoolSaturated (above 90%)."),
            ]),
            ("Yjs", [
                timeseries("Sessions and documents", [
                    (sum_by(("node",), sel("stoa_yjs_connections")), "{{node}} sessions"),
                    (sum_by(("node",), sel("stoa_yjs_documents_open")), "{{node}} documents"),
                ], "short", w=12, desc="Documents open count against realtime.max_open_documents."),
                timeseries("Updates /s", [
                    (sum_by((), rate("stoa_yjs_updates_total")), "applied"),
                    (sum_by((), rate("stoa_yjs_updates_refused_total")), "refused (viewers)"),
                    (sum_by((), rate("stoa_yjs_updates_written_total")), "written"),
                ], "short", w=12),
                timeseries("Update latency p99", [
                    (quantile(0.99, "stoa_yjs_update_duration_seconds", ("node",)), "{{node}}"),
                ], "s", w=12, desc="Arrival at the document actor to applied and relayed to local peers."),
                timeseries("Persistence latency p99", [
                    (quantile(0.99, "stoa_yjs_persist_duration_seconds", ("node",)), "{{node}}"),
                ], "s", w=12, desc="One batch of updates written to the database."),
            ]),
            ("Database", [
                pool_panel("in_use", "Pool connections in use"),
                pool_panel("idle", "Pool connections idle"),
                pool_max(),
                timeseries("Pool utilisation", [
                    ("%s / %s" % (
                        sum_by(("node", "pool"), sel("stoa_db_pool_connections", 'state="in_use"')),
                        sum_by(("node", "pool"), sel("stoa_db_pool_max_connections"))),
                     "{{node}} {{pool}}"),
                ], "percentunit", w=8, max_=1, desc="In use over max. Alert above 90% for 5 minutes."),
                timeseries("Query latency p99 by statement", [
                    (quantile(0.99, "stoa_db_query_duration_seconds", ("statement",)), "{{statement}}"),
                ], "s", w=12),
                timeseries("Queries /s by statement", [
                    (sum_by(("statement",), rate("stoa_db_query_duration_seconds_count")), "{{statement}}"),
                ], "short", w=12, stack=True),
            ]),
        ],
    )


def http():
    total_by_route = sum_by(("method", "route"), rate("stoa_http_requests_total"))
    errors_by_route = sum_by(("method", "route"), rate("stoa_http_requests_total", 'status=~"5.."'))
    return dashboard(
        "stoa-http",
        "Stoa / HTTP",
        "The REST API and WebSocket upgrades: traffic by route and status, errors, "
        "latency by route, requests in flight and rate limits.",
        [
            ("Now", [
                stat("Requests", sum_by((), rate("stoa_http_requests_total")), "reqps"),
                stat("5xx ratio", ratio_5xx(), "percentunit", steps=[(0.01, "yellow"), (0.05, "red")]),
                stat("p99 latency", quantile(0.99, "stoa_http_request_duration_seconds"), "s",
                     steps=[(0.25, "yellow"), (0.5, "red")]),
                stat("In flight", sum_by((), sel("stoa_http_requests_in_flight")), "short"),
                stat("Rate limited /s", sum_by((), rate("stoa_rate_limited_total")) + " or vector(0)",
                     "short", steps=[(1, "yellow")], decimals=2),
                stat("Password hashing busy /s", sum_by((), rate("stoa_password_hash_busy_total")),
                     "short", steps=[(0.01, "yellow")], decimals=2,
                     desc="Logins and registrations answered 503 because every hashing slot was busy."),
            ]),
            ("Traffic", [
                timeseries("Requests by route", [
                    (total_by_route, "{{method}} {{route}}"),
                ], "reqps", stack=True),
                timeseries("Requests by status", [
                    (sum_by(("status",), rate("stoa_http_requests_total")), "{{status}}"),
                ], "reqps", stack=True),
            ]),
            ("Errors", [
                timeseries("5xx ratio by node", [
                    (ratio_5xx(), "all nodes"),
                    (ratio_5xx(("node",)), "{{node}}"),
                ], "percentunit", desc="Alert: StoaHighErrorRate (above 5% for 5 minutes)."),
                timeseries("5xx ratio by route", [
                    ("(%s or %s * 0) / %s" % (errors_by_route, total_by_route, total_by_route),
                     "{{method}} {{route}}"),
                ], "percentunit"),
            ]),
            ("Latency", [
                timeseries("p50 latency by route", [
                    (quantile(0.5, "stoa_http_request_duration_seconds", ("method", "route")),
                     "{{method}} {{route}}"),
                ], "s"),
                timeseries("p99 latency by route", [
                    (quantile(0.99, "stoa_http_request_duration_seconds", ("method", "route")),
                     "{{method}} {{route}}"),
                ], "s", desc="Alert: StoaHighLatency (p99 of all routes above 0.5 s for 10 minutes)."),
            ]),
            ("Load and limits", [
                timeseries("Requests in flight", [
                    (sum_by(("node",), sel("stoa_http_requests_in_flight")), "{{node}}"),
                ], "short"),
                timeseries("Rate limited /s by limit", [
                    (sum_by(("limit",), rate("stoa_rate_limited_total")), "{{limit}}"),
                    (sum_by((), rate("stoa_password_hash_busy_total")), "password hashing busy"),
                ], "short", desc="Requests answered 429 by each limit; password hashing answers 503."),
            ]),
        ],
    )


DASHBOARDS = {
    "stoa-overview.json": overview,
    "stoa-realtime.json": realtime,
    "stoa-cluster.json": cluster,
    "stoa-yjs-storage.json": yjs_storage,
    "stoa-http.json": http,
}


def main():
    # --check: exit 1 when a committed dashboard differs from what this file makes.
    check = "--check" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    stale = []
    for name, build in DASHBOARDS.items():
        path = os.path.join(OUT, name)
        text = json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote", os.path.relpath(path, os.getcwd()), file=sys.stderr)
    if stale:
        print("out of date (run python3 grafana/generate.py):", ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
