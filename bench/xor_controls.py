#!/usr/bin/env python3
"""How often each XOR control code occurs in a block's chunks, and the value windows' sizes.

    bench/xor_controls.py BLOCK/chunks/000001 [--every 40] [--max 6000]

Reads every `--every`-th chunk of a block chunk file (at most `--max` of them; a chunk file
holds each series' chunks one after another, so this samples every metric) and walks each
chunk's bit stream: the share of timestamps stored as a '0' delta of delta, of values stored
as '0' (unchanged), '10' (inside the previous value's window) and '11' (a new window), and the
meaningful bits of the windows the '10' and '11' values use. For judging the XOR decoder's
common paths on real data (see BENCHMARKS.md, session 15).
"""
import argparse, collections


def uvarint(b, i):
    """The unsigned varint at b[i:] and the index after it."""
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return x, i


def chunk_bodies(data):
    """The XOR bodies (sample count included) of the chunks of a block chunk file."""
    at = 8  # magic, version, padding
    while at < len(data):
        try:
            n, i = uvarint(data, at)
        except IndexError:
            return
        if n == 0:
            return
        yield data[i + 1:i + 1 + n]  # after the encoding byte
        at = i + 1 + n + 4  # and the CRC


class Bits:
    """A big-endian bit reader over a chunk body after its two-byte sample count."""

    def __init__(self, body):
        self.x, self.n, self.pos = int.from_bytes(body[2:], "big"), (len(body) - 2) * 8, 0

    def read(self, k):
        v = (self.x >> (self.n - self.pos - k)) & ((1 << k) - 1) if k else 0
        self.pos += k
        return v

    def varint(self):
        x = s = 0
        while True:
            b = self.read(8)
            x |= (b & 0x7F) << s
            s += 7
            if b < 0x80:
                return x


def walk(body, counts, sigs):
    """Counts the control codes of one chunk's samples after the first."""
    n = (body[0] << 8) | body[1]
    r = Bits(body)
    r.varint(), r.read(64)  # sample 0: time, value
    if n < 2:
        return
    r.varint()  # sample 1: time delta
    window = [0, 64]  # leading zeros, meaningful bits

    def value():
        if r.read(1) == 0:
            counts["value 0"] += 1
        elif r.read(1) == 0:
            counts["value 10"] += 1
            sigs[window[1]] += 1
            r.read(window[1])
        else:
            counts["value 11"] += 1
            window[0], s = r.read(5), r.read(6)
            window[1] = s or 64
            sigs[window[1]] += 1
            r.read(window[1])

    value()
    for _ in range(2, n):
        if r.read(1) == 0:
            counts["time 0"] += 1
        else:
            counts["time dod"] += 1
            for width in (14, 17, 20):
                if r.read(1) == 0:
                    r.read(width)
                    break
            else:
                r.read(64)
        value()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("chunk_file")
    ap.add_argument("--every", type=int, default=40)
    ap.add_argument("--max", type=int, default=6000)
    a = ap.parse_args()
    data = open(a.chunk_file, "rb").read()
    counts, sigs = collections.Counter(), collections.Counter()
    bodies = list(chunk_bodies(data))
    for body in bodies[::a.every][:a.max]:
        try:
            walk(body, counts, sigs)
        except IndexError:
            counts["cut short"] += 1
    values = sum(v for k, v in counts.items() if k.startswith("value"))
    times = counts["time 0"] + counts["time dod"]
    print(f"{len(bodies)} chunks, {min(len(bodies[::a.every]), a.max)} read")
    for k in ("time 0", "time dod"):
        print(f"{k:>10}: {counts[k]:>9} ({counts[k] / max(times, 1):.1%})")
    for k in ("value 0", "value 10", "value 11"):
        print(f"{k:>10}: {counts[k]:>9} ({counts[k] / max(values, 1):.1%})")
    if counts["cut short"]:
        print(f"cut short: {counts['cut short']}")
    top = sorted(sigs.items(), key=lambda x: -x[1])[:12]
    print("meaningful bits of the windows used (bits: values):", ", ".join(f"{s}: {c}" for s, c in top))


if __name__ == "__main__":
    main()
