#!/usr/bin/env python3
"""Server CPU and latency per dashboard query, for servers already running side by side.

    python3 bench/cpu_per_query.py --end 1795687140 --rounds 3 --runs 10 \
        ignis=PID:PORT victoriametrics=PID:PORT

For every query of queries_dashboard.txt, in every round, each server in turn gets the query
twice to warm up, then `--runs` times over one keep-alive connection; the server's CPU time
(utime + stime, and stime alone, from /proc/PID/stat) and the wall time are averaged over
those runs. Servers take turns query by query, so both see the same machine load. Prints one
line per query: each server's median over the rounds and the first server's ratio to the
second. Instant queries run at --end, range queries over --range seconds ending there at
--step (measure.py's defaults: 6h, 60 s). Only loopback addresses are queried.
"""
import argparse
import http.client
import os
import statistics
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))


def queries(path):
    out = []
    for line in open(path):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        kind, name, expr = (p.strip() for p in line.split('|', 2))
        out.append((kind, name, expr))
    return out


def cpu_ms(pid):
    """utime + stime and stime of PID, in ms."""
    f = open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()
    tick = 1000.0 / os.sysconf('SC_CLK_TCK')
    return (int(f[11]) + int(f[12])) * tick, int(f[12]) * tick


def measure(pid, port, url, runs):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=300)

    def one():
        c.request('GET', url)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit('%s: HTTP %d' % (url, r.status))

    for _ in range(2):
        one()
    (c0, s0), t0 = cpu_ms(pid), time.perf_counter()
    for _ in range(runs):
        one()
    (c1, s1), t1 = cpu_ms(pid), time.perf_counter()
    c.close()
    return (c1 - c0) / runs, (s1 - s0) / runs, (t1 - t0) * 1000 / runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('servers', nargs=2, metavar='NAME=PID:PORT')
    ap.add_argument('--end', type=int, required=True, help='instant time and range end (unix s)')
    ap.add_argument('--range', type=int, default=6 * 3600)
    ap.add_argument('--step', type=int, default=60)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--runs', type=int, default=10)
    ap.add_argument('--queries', default=os.path.join(HERE, '../../shared/bench/queries_dashboard.txt'))
    a = ap.parse_args()
    servers = []
    for s in a.servers:
        name, addr = s.split('=', 1)
        pid, port = addr.split(':')
        servers.append((name, pid, int(port)))
    qs = queries(a.queries)
    res = {}
    for _ in range(a.rounds):
        for kind, name, expr in qs:
            if kind == 'instant':
                params = {'query': expr, 'time': a.end}
                path = '/api/v1/query?'
            else:
                params = {'query': expr, 'start': a.end - a.range, 'end': a.end, 'step': a.step}
                path = '/api/v1/query_range?'
            url = path + urllib.parse.urlencode(params)
            for sname, pid, port in servers:
                res.setdefault((kind, name, sname), []).append(measure(pid, port, url, a.runs))
    (n0, _, _), (n1, _, _) = servers
    print('%-24s %-7s | %-28s | %-28s | %s' % ('query', 'kind', n0 + ' cpu (sys) / wall ms', n1 + ' cpu (sys) / wall ms', 'cpu x / wall x'))
    for kind, name, _ in qs:
        med = {}
        for sname, _, _ in servers:
            rows = res[(kind, name, sname)]
            med[sname] = [statistics.median(r[i] for r in rows) for i in range(3)]
        m0, m1 = med[n0], med[n1]
        print('%-24s %-7s | %8.1f (%5.1f) / %7.1f   | %8.1f (%5.1f) / %7.1f   | %.2f / %.2f' % (
            name, kind, m0[0], m0[1], m0[2], m1[0], m1[1], m1[2],
            m0[0] / m1[0] if m1[0] else float('nan'), m0[2] / m1[2]))


if __name__ == '__main__':
    main()
