#!/usr/bin/env python3
"""bench/report.py OUTDIR - turn bench/run.sh's raw.tsv, mem.tsv, health.tsv into markdown.

Medians over the reps, min-max beside them; ratios are taken between medians.
Standard library only.
"""
import csv
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")


def rows(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def text(name):
    path = os.path.join(out, name)
    return open(path).read().rstrip("\n") if os.path.exists(path) else ""


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


raw = rows("raw.tsv")
mem = rows("mem.tsv")
health = rows("health.tsv")
servers = []
for r in raw:
    if r["server"] not in servers:
        servers.append(r["server"])


def runs(server, wl):
    return [r for r in raw if r["server"] == server and r["workload"] == wl]


def stat(server, wl, key):
    """(median, min, max) of a per-run value, or None."""
    vals = []
    for r in runs(server, wl):
        a, c, w = num(r["answered"]), num(r["cpu_s"]), num(r.get("wall_s"))
        if key == "cpu_us":  # CPU microseconds per answered query
            v = c * 1e6 / a if a and c is not None else None
        elif key == "server_pct":  # the server's CPU use during the run, % of one core
            v = 100 * c / w if w and c is not None else None
        elif key == "other_pct":  # server CPU busy with anything but the server (others' jobs, softirq)
            b = num(r.get("scpu_busy_s"))
            v = max(0.0, 100 * (b - c) / w) if w and b is not None and c is not None else None
        elif key == "client_pct":  # client CPU (load generator + Knot + anything else) busy
            b = num(r.get("ccpu_busy_s"))
            v = 100 * b / w if w and b is not None else None
        else:
            v = num(r[key])
        if v is not None:
            vals.append(v)
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def total(server, wl, key):
    return int(sum(num(r[key]) or 0 for r in runs(server, wl)))


def fq(s):  # qps
    if s is None:
        return "–"
    return f"{s[0] / 1000:.1f}k" if s[0] >= 1000 else f"{s[0]:.0f}"


def frange(s, scale=1000, suffix="k", digits=1):
    if s is None:
        return "–"
    return f"{s[1] / scale:.{digits}f}–{s[2] / scale:.{digits}f}{suffix}"


def fcpu(s):
    return "–" if s is None else f"{s[0]:.2f}"


def pct(s):
    return "–" if s is None else f"{s[0]:.0f}"


def ratio(a, b):
    if a is None or b is None or not b[0]:
        return "–"
    return f"{a[0] / b[0]:.2f}"


def memrow(server):
    for m in mem:
        if m["server"] == server:
            return m
    return None


def bytes_per_entry(server):
    m = memrow(server)
    if not m:
        return None
    a = num(m["answered"]) or 0
    if not a:
        return None
    return (num(m["rss_after_kb"]) - num(m["rss_before_kb"])) * 1024 / a


reps = len({r["rep"] for r in raw})
lines = []
p = lines.append
p("# kubebridge vs dnsdist, Unbound, dnsmasq (bench/run.sh)")
p("")
p("```")
p(text("versions.txt"))
p("```")
p("")
p(f"Medians of {reps} interleaved rep(s); min–max in the detail tables. Ratios are between medians. "
  "Same-server noise on these shared machines is about ±10 %: differences smaller than that are not results.")
p("")
p("## Summary")
p("")
p("| server | UDP hits/s | µs CPU/hit | × floor | × dnsdist | UDP misses/s | µs CPU/miss | × dnsdist | "
  "TCP hits/s | × dnsdist | p50 µs @ load | + p50 vs floor | bytes/cached answer |")
p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
floor_hit = stat("floor", "udp-hit", "qps")
floor_p50 = stat("floor", "latency", "p50_us")
dd = {wl: stat("dnsdist", wl, "qps") for wl in ("udp-hit", "udp-miss", "tcp-hit")}
for s in servers:
    hit, miss, tcp = stat(s, "udp-hit", "qps"), stat(s, "udp-miss", "qps"), stat(s, "tcp-hit", "qps")
    p50 = stat(s, "latency", "p50_us")
    added = f"{p50[0] - floor_p50[0]:+.0f}" if p50 and floor_p50 and s != "floor" else "–"
    bpe = bytes_per_entry(s)
    p(f"| {s} | {fq(hit)} | {fcpu(stat(s, 'udp-hit', 'cpu_us'))} | {ratio(hit, floor_hit)} | {ratio(hit, dd['udp-hit'])} "
      f"| {fq(miss)} | {fcpu(stat(s, 'udp-miss', 'cpu_us'))} | {ratio(miss, dd['udp-miss'])} "
      f"| {fq(tcp)} | {ratio(tcp, dd['tcp-hit'])} | {'–' if not p50 else f'{p50[0]:.0f}'} | {added} "
      f"| {'–' if bpe is None else f'{bpe:.0f}'} |")

details = [
    ("udp-hit", "UDP cache hits (blast: batched closed loop, hot set, no upstream traffic)", True),
    ("udp-miss", "UDP cache misses (dnsperf, every name new, forwarded to Knot)", False),
    ("tcp-hit", "TCP cache hits (dnsperf -m tcp, persistent connections)", False),
]
for wl, title, with_floor in details:
    p("")
    p(f"## {title}")
    p("")
    p("| server | qps (median) | min–max | µs CPU/query | × floor | × dnsdist | lost (all reps) "
      "| server CPU % | CPU 0 other % | CPU 1 busy % |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    for s in servers:
        q = stat(s, wl, "qps")
        if q is None:
            continue
        p(f"| {s} | {fq(q)} | {frange(q)} | {fcpu(stat(s, wl, 'cpu_us'))} | "
          f"{ratio(q, floor_hit) if with_floor else '–'} | {ratio(q, dd[wl])} | {total(s, wl, 'lost')} "
          f"| {pct(stat(s, wl, 'server_pct'))} | {pct(stat(s, wl, 'other_pct'))} | {pct(stat(s, wl, 'client_pct'))} |")

p("")
p("## Latency of cache hits at a fixed offered load (blast, paced)")
p("")
p("| server | achieved qps | p50 µs (median, min–max) | p99 µs (median) | added p50 vs floor | µs CPU/query | lost |")
p("|---|---|---|---|---|---|---|")
for s in servers:
    p50, p99, q = stat(s, "latency", "p50_us"), stat(s, "latency", "p99_us"), stat(s, "latency", "qps")
    if p50 is None:
        continue
    added = f"{p50[0] - floor_p50[0]:+.0f} µs" if floor_p50 and s != "floor" else "–"
    p(f"| {s} | {fq(q)} | {p50[0]:.0f} ({p50[1]:.0f}–{p50[2]:.0f}) | {p99[0]:.0f} | {added} | "
      f"{fcpu(stat(s, 'latency', 'cpu_us'))} | {total(s, 'latency', 'lost')} |")

if mem:
    p("")
    p("## Memory per cached answer (RSS growth over distinct names, each answered once)")
    p("")
    p("| server | RSS at start | RSS before | RSS after | names answered | bytes/entry |")
    p("|---|---|---|---|---|---|")
    for m in mem:
        bpe = bytes_per_entry(m["server"])
        mb = lambda k: f"{(num(m[k]) or 0) / 1024:.1f} MiB"
        note = " (cache preallocated, 10000 entries max)" if m["server"] == "dnsmasq" else ""
        p(f"| {m['server']} | {mb('rss_start_kb')} | {mb('rss_before_kb')} | {mb('rss_after_kb')} | "
          f"{m['answered']}/{m['names']} | {'–' if bpe is None else f'{bpe:.0f}'}{note} |")

p("")
p("Detail-table columns: *server CPU %* = the server's CPU time over the run's wall time (near 100 = the "
  "server was the limit; well below = the client side or a neighbour was); *CPU 0 other %* = time CPU 0 "
  "spent on anything but the server (other users' jobs, interrupts); *CPU 1 busy %* = the client CPU "
  "(load generator, Knot, others). Medians over the reps.")

problems = text("problems.txt")
p("")
p("## Problems seen during the run")
p("")
p("```")
p(problems if problems else "none (no lost queries, no server exited)")
p("```")

if mem:
    p("")
    p("*bytes/entry* counts only RSS growth while the names were inserted. Memory a server sets aside up "
      "front for its configured cache is in *RSS at start* instead: kubebridge touches part of "
      "`--cache-size` at start-up (its index), dnsdist sizes its packet cache for 2,000,000 entries, "
      "dnsmasq allocates all 10,000 entries.")

if health:
    p("")
    p("## Process health at the end of the run")
    p("")
    p("| server | alive | log lines | lines with error/warn/fatal |")
    p("|---|---|---|---|")
    for h in health:
        p(f"| {h['server']} | {h['alive']} | {h['log_lines']} | {h['error_lines']} |")

p("")
p("## Commands")
p("")
p("```")
p(text("commands.txt"))
seen = set()
for line in text("commands-loads.txt").splitlines():  # one example per workload/server
    key = line.split(":", 1)[0]
    if key not in seen:
        seen.add(key)
        p(line)
p("```")
p("(`blast ADDR PORT QUERYFILE SECONDS OUTSTANDING NSOCK BATCH [QPS]`; every load generator and knotd "
  "pinned with `taskset -c CLIENT_CPU`, every server with `taskset -c SERVER_CPU`.)")
print("\n".join(lines))
