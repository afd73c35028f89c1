#!/usr/bin/env python3
"""CPU of the dashboard queries in process, two builds alternated on one data dir.

    python3 bench/ab_inprocess.py OLD_EXAMPLE NEW_EXAMPLE DATA_DIR [--rounds 5] [--runs 10]
        [--kind all|instant|range]

OLD_EXAMPLE and NEW_EXAMPLE are two builds of `target/release/examples/dashboard`
(`cargo build --release -p query --example dashboard`); DATA_DIR a copy of a post-ingest
ignis data dir, opened read-write (`RW=1`, as the server opens it). Each round runs the old
build, then the new one, `--runs` times per query each (the example prints the CPU a query
takes); printed per query: the median CPU of each build and the median over the rounds of the
per-round ratio new / old. Set `Q=<name>:<kind>` to run one query only: run whole, a query
follows the others in one process, and what they left behind (allocator pages, caches) moves
it by up to ~10% either way.
"""
import argparse
import os
import re
import statistics
import subprocess

LINE = re.compile(r"\s*(\S+) (instant|range)\s+[\d.]+ ms\s+cpu\s+([\d.]+) ms")


def run(binary, data, runs, kind):
    env = dict(os.environ, RW="1")
    out = subprocess.run([binary, data, str(runs)], capture_output=True, text=True, env=env,
                         check=True).stdout
    res = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m and kind in ("all", m.group(2)):
            res["%s [%s]" % (m.group(1), m.group(2)[0])] = float(m.group(3))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("data")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kind", choices=["all", "instant", "range"], default="all")
    a = ap.parse_args()
    pairs = {}
    for _ in range(a.rounds):
        old, new = run(a.old, a.data, a.runs, a.kind), run(a.new, a.data, a.runs, a.kind)
        for k in old:
            pairs.setdefault(k, []).append((old[k], new.get(k, 0.0)))
    for k, v in pairs.items():
        ratios = [n / o for o, n in v if o > 0]
        print("%-26s old %7.1f  new %7.1f ms  new/old %.3f" % (
            k, statistics.median(o for o, _ in v), statistics.median(n for _, n in v),
            statistics.median(ratios) if ratios else float("nan")))


if __name__ == "__main__":
    main()
