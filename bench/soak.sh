#!/usr/bin/env bash
# bench/soak.sh - 10 million mixed queries through one kubebridge worker, RSS sampled every
# second; the curve must be flat after warm-up. Loopback only, bounded in count and time.
#
#   bash bench/soak.sh                       # 10,000,000 queries
#   SOAK_QUERIES=1000000 bash bench/soak.sh  # shorter
#
# Upstream: knotd with a wildcard zone (every name answers). Query mix: 90 % from 10,000
# hot names, 10 % from 200,000 other names, so the cache (--cache-size 16MiB) keeps
# evicting while hot names stay. Output: bench/out/soak-rss.tsv and a summary on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$HERE/out/soak
mkdir -p "$OUT"
QUERIES=${SOAK_QUERIES:-10000000}
KNOT_PORT=${SOAK_KNOT_PORT:-25400}
KB_PORT=${SOAK_KB_PORT:-25401}
KB=${KUBEBRIDGE:-$ROOT/.build/release/kubebridge}
[ -x "$KB" ] || (cd "$ROOT" && swift build -c release >/dev/null)
command -v knotd >/dev/null || { apt-get update -qq && apt-get install -y -qq knot >/dev/null; }
gcc -O2 -o "$OUT/blast" "$HERE/blast.c"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Zone and knot.
cat > "$OUT/soak.test.zone" <<ZONE
\$ORIGIN soak.test.
\$TTL 300
@ SOA ns.soak.test. hostmaster.soak.test. 1 3600 600 86400 60
@ NS ns.soak.test.
ns A 127.0.0.1
* A 192.0.2.1
ZONE
cat > "$OUT/knot.conf" <<KNOT
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: $OUT
    user: root:root
database:
    storage: $OUT/knotdb
zone:
  - domain: soak.test
    file: $OUT/soak.test.zone
log:
  - target: stderr
    any: error
KNOT
taskset -c 1 knotd -c "$OUT/knot.conf" 2>"$OUT/knot.log" &
pids+=($!)

# Query file: 1,000,000 lines, 90 % hot.
python3 - "$OUT/queries.txt" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        if random.random() < 0.9:
            f.write(f"h{random.randrange(10_000)}.soak.test A\n")
        else:
            f.write(f"c{random.randrange(200_000)}.soak.test A\n")
PY

taskset -c 0 "$KB" dns --listen 127.0.0.1:$KB_PORT --upstream 127.0.0.1:$KNOT_PORT --cluster-dns 127.0.0.1:$KNOT_PORT \
    --threads 1 --cache-size 16MiB 2>"$OUT/kubebridge.log" &
KBPID=$!
pids+=($KBPID)
sleep 1

# Sample RSS every second while blast runs until QUERIES are answered (bounded by time too).
echo -e "second\trss_kib" > "$OUT/soak-rss.tsv"
( s=0; while kill -0 $KBPID 2>/dev/null; do
    echo -e "$s\t$(awk '/VmRSS/ {print $2}' /proc/$KBPID/status)" >> "$OUT/soak-rss.tsv"; s=$((s+1)); sleep 1; done ) &
pids+=($!)
total=0; rounds=0
start=$(date +%s)
while [ "$total" -lt "$QUERIES" ] && [ $(( $(date +%s) - start )) -lt 900 ]; do
    n=$(taskset -c 1 "$OUT/blast" 127.0.0.1 $KB_PORT "$OUT/queries.txt" 10 200 4 32 2>&1 | awk '/answered/ {print $5}')
    total=$((total + ${n:-0})); rounds=$((rounds + 1))
done
elapsed=$(( $(date +%s) - start ))
kill -TERM $KBPID; wait $KBPID 2>/dev/null || true
python3 - "$OUT/soak-rss.tsv" "$total" "$elapsed" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]).read().splitlines()[1:] if l.strip()]
total, elapsed = int(sys.argv[2]), int(sys.argv[3])
rss = [r for _, r in rows]
warm = rss[len(rss) // 5:] if len(rss) >= 5 else rss
print(f"answered {total:,} queries in {elapsed} s ({total // max(elapsed, 1):,} qps)")
print(f"RSS KiB: start {rss[0]:,}, end of warm-up (20 %) {warm[0]:,}, max after warm-up {max(warm):,}, final {rss[-1]:,}")
print(f"growth after warm-up: {max(warm) - warm[0]:,} KiB")
PY
grep -E "served" "$OUT/kubebridge.log" || true
