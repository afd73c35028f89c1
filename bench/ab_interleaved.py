#!/usr/bin/env python3
"""Two running servers asked one query in turn, query by query, for A/B runs of two builds.

    bench/ab_interleaved.py PORT_A PORT_B QUERY N [--time T] [--start S --end E --step 60]

Each round asks both servers once, A first in even rounds and B first in odd ones, after ten
warm-up rounds; prints each server's median latency, the ratio of the medians and the median
of the per-round ratios B/A. Asking in turn spreads the machine's drift (which moves a run of
the same server by ±10% within minutes here) over both, at the price of caches warmed by the
other server; `query_loop.py` blocks show the back-to-back latency measure.py sees. Without
`--time`, a range query over measure.py's 6 h on the 100k bench dataset.
"""
import argparse, http.client, statistics, time, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("port_a", type=int)
ap.add_argument("port_b", type=int)
ap.add_argument("query")
ap.add_argument("n", type=int)
ap.add_argument("--time", help="an instant query at this time instead of a range query")
ap.add_argument("--start", default="1795881540")
ap.add_argument("--end", default="1795903140")
ap.add_argument("--step", default="60")
a = ap.parse_args()

if a.time:
    path, params = "/api/v1/query", {"query": a.query, "time": a.time}
else:
    path, params = "/api/v1/query_range", {"query": a.query, "start": a.start, "end": a.end, "step": a.step}
body = urllib.parse.urlencode(params)
headers = {"Content-Type": "application/x-www-form-urlencoded"}
conns = [http.client.HTTPConnection("127.0.0.1", p) for p in (a.port_a, a.port_b)]


def ask(i):
    """Milliseconds server i took to answer, from the client's side."""
    t = time.perf_counter()
    conns[i].request("POST", path, body=body, headers=headers)
    resp = conns[i].getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit("server %s: HTTP %d" % ("AB"[i], resp.status))
    return (time.perf_counter() - t) * 1000


for _ in range(10):
    ask(0), ask(1)
lat = ([], [])
for r in range(a.n):
    for i in ((0, 1) if r % 2 == 0 else (1, 0)):
        lat[i].append(ask(i))
ma, mb = statistics.median(lat[0]), statistics.median(lat[1])
pairs = statistics.median(b / x for x, b in zip(*lat))
print("A %.3f ms  B %.3f ms  B/A of medians %.3f  median of pair ratios %.3f" % (ma, mb, mb / ma, pairs))
