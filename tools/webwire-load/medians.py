#!/usr/bin/env python3
"""Medians of compare.sh output (see rounds.sh).

usage: medians.py FILE [REF]   (REF: the server ratios are taken against,
default `echo`)

Rounds are delimited by compare.sh's "# uptime before" lines; a ratio is
taken only between servers of the same row in the same round (back to
back), and the median of those per-round ratios is printed with its range.
"""
import json
import statistics
import sys
from collections import defaultdict


def main():
    path = sys.argv[1]
    ref = sys.argv[2] if len(sys.argv) > 2 else "echo"
    rounds = []  # list of {(row, name): metrics}
    loads = []
    current = None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# uptime before"):
            current = {}
            rounds.append(current)
            loads.append(line.split("load average:")[-1].strip())
            continue
        if line.startswith("# uptime after"):
            loads[-1] += " -> " + line.split("load average:")[-1].strip()
            continue
        if not line or line.startswith("#") or current is None:
            continue
        row, name, data = line.split(" ", 2)
        try:
            report = json.loads(data)
        except json.JSONDecodeError:
            continue
        current[(row, name)] = metrics(row, report)
    order = []
    values = defaultdict(lambda: defaultdict(list))
    for rnd in rounds:
        for (row, name), m in rnd.items():
            if (row, name) not in order:
                order.append((row, name))
            for k, v in m.items():
                if v is not None:
                    values[(row, name)][k].append(v)
    print(f"{len(rounds)} rounds; load averages (1, 5, 15 min) before -> after each:")
    for load in loads:
        print(f"  {load}")
    print()
    print("| row | server | n | per s | p50 µs | p99 µs | server CPU µs/op | KiB/conn |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row, name in sorted(order, key=lambda k: (row_key(order, k[0]), k[1] != ref)):
        v = values[(row, name)]
        n = max((len(x) for x in v.values()), default=0)
        print(f"| {row} | {name} | {n} | {med(v, 'rps', 0)} | {med(v, 'p50', 0)} | "
              f"{med(v, 'p99', 0)} | {med(v, 'cpu', 3)} | {med(v, 'kib', 2)} |")
    print()
    print(f"Medians of the per-round ratios to `{ref}` (range):")
    print()
    print("| row | server | req/s | CPU per op | p99 | KiB/conn |")
    print("|---|---|---|---|---|---|")
    for row, name in sorted(order, key=lambda k: (row_key(order, k[0]), k[1])):
        if name == ref:
            continue
        ratios = defaultdict(list)
        for rnd in rounds:
            a, b = rnd.get((row, name)), rnd.get((row, ref))
            if not a or not b:
                continue
            for k in ("rps", "cpu", "p99", "kib"):
                if a.get(k) and b.get(k):
                    ratios[k].append(a[k] / b[k])
        cells = []
        for k in ("rps", "cpu", "p99", "kib"):
            r = ratios[k]
            cells.append(f"{statistics.median(r):.3f} ({min(r):.2f}–{max(r):.2f})" if r else "")
        print(f"| {row} | {name} | " + " | ".join(cells) + " |")


def row_key(order, row):
    rows = []
    for r, _ in order:
        if r not in rows:
            rows.append(r)
    return rows.index(row)


def metrics(row, r):
    if row.startswith("idle"):
        return {"kib": r.get("kib_per_conn")}
    if row == "flood":
        return {}
    lat = r.get("latency") or {}
    cpu = r.get("server_cpu") or {}
    return {
        "rps": r.get("per_second"),
        "p50": lat.get("p50_us"),
        "p99": lat.get("p99_us"),
        "cpu": cpu.get("us_per_op"),
    }


def med(v, key, digits):
    xs = v.get(key)
    if not xs:
        return ""
    m = statistics.median(xs)
    return f"{m:,.{digits}f}"


if __name__ == "__main__":
    main()
