#!/usr/bin/env python3
"""One range (or instant) query N times against a running ignis over one keep-alive connection.

    bench/query_loop.py PORT QUERY N [--start S] [--end E] [--step 60] [--time T] [--pid PID]
                        [--pause S]

Prints the client's median latency and, from the server's own `/metrics` read before and
after, the mean time per query of its HTTP handler (`prometheus_http_request_duration_seconds`
for /api/v1/query_range) and of the engine (`prometheus_engine_query_duration_seconds`,
slice inner_eval). Five warm-up queries first. Default range: measure.py's range queries on
session 19's 100k bench dataset (start 1795834860, end 1795856340). For A/B runs of two
servers, alternate invocations between their ports. `--time T`: an instant query at T instead.
`--pid PID`: also the server process's CPU time per query (utime + stime from /proc, in 10 ms
ticks, so run enough queries for a few seconds). `--pause S`: wait S seconds before each
query, as measure.py's client does while it parses the answer before the next run.
"""
import argparse, http.client, os, re, statistics, time, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("query")
ap.add_argument("n", type=int)
ap.add_argument("--start", type=int, default=1795834860)
ap.add_argument("--end", type=int, default=1795856340)
ap.add_argument("--step", default="60")
ap.add_argument("--time", type=int, help="run an instant query at this time instead")
ap.add_argument("--pid", type=int, help="the server's PID, for its CPU time per query")
ap.add_argument("--pause", type=float, default=0.0,
                help="seconds to wait after each query (as a client reading the answer would)")
a = ap.parse_args()
path = "/api/v1/query" if a.time is not None else "/api/v1/query_range"

conn = http.client.HTTPConnection("127.0.0.1", a.port)


def sums():
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    http_s = re.search(r'prometheus_http_request_duration_seconds_sum\{handler="%s"\} (\S+)' % path, text)
    eng_s = re.search(r'prometheus_engine_query_duration_seconds_sum\{slice="inner_eval"\} (\S+)', text)
    return float(http_s.group(1)) if http_s else 0.0, float(eng_s.group(1)) if eng_s else 0.0


if a.time is not None:
    body = urllib.parse.urlencode({"query": a.query, "time": a.time})
else:
    body = urllib.parse.urlencode({"query": a.query, "start": a.start, "end": a.end, "step": a.step})
hdr = {"Content-Type": "application/x-www-form-urlencoded"}


def once():
    if a.pause:
        time.sleep(a.pause)
    t = time.perf_counter()
    conn.request("POST", path, body=body, headers=hdr)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, data[:200]))
    return time.perf_counter() - t


def cpu_ms():
    """utime + stime of the server, in ms (0 without --pid)."""
    if a.pid is None:
        return 0.0
    f = open("/proc/%d/stat" % a.pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


for _ in range(5):
    once()
h0, e0 = sums()
c0 = cpu_ms()
lat = [once() for _ in range(a.n)]
c1 = cpu_ms()
h1, e1 = sums()
print("client median %.3f ms, server http mean %.3f ms, engine mean %.3f ms%s"
      % (statistics.median(lat) * 1e3, (h1 - h0) / a.n * 1e3, (e1 - e0) / a.n * 1e3,
         ", server cpu %.0f us/query" % ((c1 - c0) / a.n * 1e3) if a.pid else ""))
