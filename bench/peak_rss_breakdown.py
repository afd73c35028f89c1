#!/usr/bin/env python3
"""Where a process's resident memory sits at its peak, by kind of mapping.

    bench/peak_rss_breakdown.py PID SECONDS

Samples /proc/PID/smaps every 20 ms for SECONDS (or until SIGINT) and prints, for the sample
with the largest total, the resident MiB of: anonymous memory, head chunk files
(`chunks_head/`), block index files, block chunk files, other files. Run it beside one query
(start it, send the query, interrupt it) to see what that query's peak is made of.
"""
import re
import signal
import sys
import time

pid, secs = sys.argv[1], float(sys.argv[2])
stop = [False]
signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))


def kind(path):
    if path == "" or path.startswith("["):
        return "anon"
    if "/chunks_head/" in path:
        return "head_chunks"
    if path.endswith("/index"):
        return "block_index"
    if "/chunks/" in path:
        return "block_chunks"
    return "other_file"


best = (0, {}, 0.0)
end = time.time() + secs
while time.time() < end and not stop[0]:
    try:
        text = open(f"/proc/{pid}/smaps").read()
    except OSError:
        break
    kib, cur = {}, ""
    for line in text.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split(None, 5)
            cur = parts[5] if len(parts) > 5 else ""
        elif line.startswith("Rss:"):
            k = kind(cur)
            kib[k] = kib.get(k, 0) + int(line.split()[1])
    total = sum(kib.values())
    if total > best[0]:
        best = (total, kib, time.time())
    time.sleep(0.02)
total, kib, t = best
print("peak %d MiB at %s: %s" % (total // 1024, time.strftime("%H:%M:%S", time.localtime(t)),
                                 {k: v // 1024 for k, v in sorted(kib.items())}))
