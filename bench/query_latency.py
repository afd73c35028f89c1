#!/usr/bin/env python3
"""Median latency of each dashboard query against a running server, over one keep-alive connection.

    bench/query_latency.py PORT INSTANT_TIME RANGE_START RANGE_END [--runs 50] [--warmup 10]
                           [--step 60] [--queries ../shared/bench/queries_dashboard.txt] [--only NAME ...]

For A/B runs of two builds (or one build with an env switch) on the same data dir, where
measure.py's five runs per query are too few to tell small differences apart.
"""
import argparse, http.client, os, statistics, time, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("time"); ap.add_argument("start"); ap.add_argument("end")
ap.add_argument("--runs", type=int, default=50)
ap.add_argument("--warmup", type=int, default=10)
ap.add_argument("--step", default="60")
ap.add_argument("--queries", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "../../shared/bench/queries_dashboard.txt"))
ap.add_argument("--only", nargs="*", help="query names to run (default: all)")
a = ap.parse_args()

conn = http.client.HTTPConnection("127.0.0.1", a.port)
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
    url = path + "?" + urllib.parse.urlencode(params)
    lat = []
    for i in range(a.warmup + a.runs):
        t = time.perf_counter()
        conn.request("GET", url)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit("%s: HTTP %d" % (name, resp.status))
        if i >= a.warmup:
            lat.append((time.perf_counter() - t) * 1000)
    print("%-22s %-8s %8.2f ms median  %8.2f ms min" % (name, kind, statistics.median(lat), min(lat)))
