#!/usr/bin/env python3
"""Medians of compare.sh output (see rounds.sh).

usage: medians.py FILE [REF] [PAIRS]   (REF: the server ratios are taken
against, default `echo`; PAIRS: comma list ROW:BASE, e.g.
`keyed64x16:64x16,hist:sig,idle21-10k:idle10k`, prints the medians of the
per-round ratios of ROW to BASE on the same server: how bench21.sh
compares webwire 2.1 with plain webwire)

Lines of rows named `resume*` (bench21.sh) hold resume-benchmark reports
and get a table of their own.

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
    pairs = [p.split(":", 1) for p in sys.argv[3].split(",")] if len(sys.argv) > 3 and sys.argv[3] else []
    resumes = defaultdict(list)  # (row, name) -> reports
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
        if row.startswith("resume"):
            resumes[(row, name)].append(report)
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
    if any(name == ref for _, name in order):
        print_ref_ratios(rounds, order, ref)
    if pairs:
        print_pairs(rounds, pairs)
    if resumes:
        print_resumes(resumes)


def print_ref_ratios(rounds, order, ref):
    """Per-round ratios of every server to the reference server, per row."""
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


def print_pairs(rounds, pairs):
    """Per-round ratios of one row to another on the same server."""
    print()
    print("Medians of the per-round ratios of a row to its base row, same server (range):")
    print()
    print("| row / base | server | n | per s | CPU per op | p99 | KiB/conn |")
    print("|---|---|---|---|---|---|---|")
    names = sorted({name for rnd in rounds for (_, name) in rnd})
    for row, base in pairs:
        for name in names:
            ratios = defaultdict(list)
            for rnd in rounds:
                a, b = rnd.get((row, name)), rnd.get((base, name))
                if not a or not b:
                    continue
                for k in ("rps", "cpu", "p99", "kib"):
                    if a.get(k) and b.get(k):
                        ratios[k].append(a[k] / b[k])
            n = max((len(x) for x in ratios.values()), default=0)
            if n == 0:
                continue
            cells = []
            for k in ("rps", "cpu", "p99", "kib"):
                r = ratios[k]
                cells.append(f"{statistics.median(r):.3f} ({min(r):.2f}–{max(r):.2f})" if r else "")
            print(f"| {row} / {base} | {name} | {n} | " + " | ".join(cells) + " |")


def print_resumes(resumes):
    """The resume benchmark: medians of the times, sums of what went wrong."""
    print()
    print("Resume benchmark (seconds from the drop; medians over the runs; "
          "problems summed over all runs):")
    print()
    print("| row | server | n | sessions | all complete s | all resumed s | session p50 s | "
          "session p99 s | incomplete | missing | doubled | losses | mismatches | "
          "restore failures | duplicates dropped | server CPU s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (row, name), reports in resumes.items():
        def m(key):
            xs = [r[key] for r in reports if r.get(key) is not None]
            return f"{statistics.median(xs):.3f}" if xs else "never"

        def total(key):
            return sum(r.get(key, 0) for r in reports)

        incomplete = sum(r["sessions"] - r["complete"] for r in reports)
        cpu = [sum(c["seconds"] for c in r.get("server_cpu", [])) for r in reports]
        print(f"| {row} | {name} | {len(reports)} | {reports[0]['sessions']} | "
              f"{m('all_complete_seconds')} | {m('all_resumed_seconds')} | "
              f"{m('complete_p50_seconds')} | {m('complete_p99_seconds')} | {incomplete} | "
              f"{total('missing')} | {total('doubled')} | {total('losses')} | "
              f"{total('mismatches')} | {total('restore_failures')} | "
              f"{total('duplicates_dropped')} | {statistics.median(cpu):.2f} |")
    print()
    print("A run counts only with incomplete, missing, doubled, losses, mismatches and "
          "restore failures all 0 (duplicates dropped by the client's stream rule "
          "are not failures); `never` means some session never completed.")


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
