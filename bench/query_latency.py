#!/usr/bin/env python3
"""Median latency of each dashboard query against a running server, over one keep-alive connection.

    bench/query_latency.py PORT INSTANT_TIME RANGE_START RANGE_END [--runs 50] [--warmup 10]
                           [--step 60] [--queries ../shared/bench/queries_dashboard.txt] [--only NAME ...]

For A/B runs of two builds (or one build with an env switch) on the same data dir, where
measure.py's five runs per query are too few to tell small differences apart.

`--verify MANIFEST` first runs measure.py's verify step (a `count_over_time` over the whole
dataset per metric name of the gen_rw.py manifest); with `--warmup 1 --runs 5` the queries then
follow measure.py's own order and count. `--pid PID` adds the server's peak and current
resident memory (VmHWM, VmRSS) after the verify step and after each query, to see which query
sets the peak of measure.py's query phase.
"""
import argparse, http.client, json, os, statistics, time, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("time"); ap.add_argument("start"); ap.add_argument("end")
ap.add_argument("--runs", type=int, default=50)
ap.add_argument("--warmup", type=int, default=10)
ap.add_argument("--step", default="60")
ap.add_argument("--queries", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "../../shared/bench/queries_dashboard.txt"))
ap.add_argument("--only", nargs="*", help="query names to run (default: all)")
ap.add_argument("--verify", metavar="MANIFEST", help="gen_rw.py manifest.json: run measure.py's verify step first")
ap.add_argument("--pid", type=int, help="the server's PID: print its VmHWM / VmRSS after each query")
a = ap.parse_args()

conn = http.client.HTTPConnection("127.0.0.1", a.port)


def get(path, params):
    """GETs path with params over the keep-alive connection; returns (status, seconds)."""
    t = time.perf_counter()
    conn.request("GET", path + "?" + urllib.parse.urlencode(params))
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.perf_counter() - t


def rss():
    """' peak/now MiB' of the server (VmHWM / VmRSS), or '' without --pid."""
    if not a.pid:
        return ""
    status = dict(l.split(":", 1) for l in open("/proc/%d/status" % a.pid) if ":" in l)
    mib = lambda k: int(status[k].split()[0]) // 1024
    return "  rss peak/now %d/%d MiB" % (mib("VmHWM"), mib("VmRSS"))


if a.verify:
    man = json.load(open(a.verify))
    end_s = int(man["last_ts_ms"] // 1000) + 1
    span = end_s - man["first_ts_ms"] // 1000 + 60
    t0 = time.perf_counter()
    for n in man["names"]:
        q = 'sum(count_over_time({__name__="%s"}[%ds]))' % (n, span)
        status, _ = get("/api/v1/query", {"query": q, "time": end_s})
        if status != 200:
            raise SystemExit("verify %s: HTTP %d" % (n, status))
    print("verify: %.1f s%s" % (time.perf_counter() - t0, rss()))
for line in open(a.queries):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    kind, name, q = (p.strip() for p in line.split("|", 2))
    if a.only and name not in a.only:
        continue
    if kind == "instant":
        path, params = "/api/v1/query", {"query": q, "time": a.time}
    else:
        path, params = "/api/v1/query_range", {"query": q, "start": a.start, "end": a.end, "step": a.step}
    lat = []
    for i in range(a.warmup + a.runs):
        status, dt = get(path, params)
        if status != 200:
            raise SystemExit("%s: HTTP %d" % (name, status))
        if i >= a.warmup:
            lat.append(dt * 1000)
    print("%-22s %-8s %8.2f ms median  %8.2f ms min%s" % (name, kind, statistics.median(lat), min(lat), rss()))
