#!/usr/bin/env bash
# bench/run.sh - compare kubebridge with dnsdist, Unbound and dnsmasq on this machine, in one run.
#
#   bash bench/run.sh                  # full run (about 6-7 minutes with the defaults)
#   BENCH_SMOKE=1 bash bench/run.sh    # ~1 s per server: only checks that each one answers
#
# Everything is on loopback. A Knot server (pinned with the load generators to the client CPU)
# is the upstream and the "kube-dns" for every server under test; every server under test is
# pinned to the server CPU. Results: a markdown table on stdout and in bench/out/results.md;
# raw numbers in bench/out/raw.tsv, every process's log in bench/out/logs/.
# See bench/README.md for the workloads and how to read the numbers.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [5]        length of every measured run
#   BENCH_REPS [3]           repetitions, interleaved across servers; median and min-max reported
#   BENCH_SMOKE [0]          1 = smoke mode (1 s per server, one rep, checks answers, exit 1 on failure)
#   BENCH_SERVERS ["kubebridge dnsdist unbound dnsmasq"]   servers under test (the echo floor always runs)
#   KUBEBRIDGE [build]       path of a kubebridge binary; unset = `swift build -c release`
#   BENCH_PORT_BASE [25300]  first of 6 loopback ports (knot, floor, kubebridge, dnsdist, unbound, dnsmasq)
#   BENCH_OUTSTANDING [200]  queries in flight for the UDP hit runs (keep <= ~200, see README)
#   BENCH_HOT_NAMES [1000]   names in the cache-hit set
#   BENCH_MISS_OUTSTANDING [100]  dnsperf -q for the miss runs
#   BENCH_TCP_CONNS [20]     TCP connections for the TCP hit runs
#   BENCH_MEM_NAMES [100000] distinct names inserted for the memory measurement
#   BENCH_LAT_QPS [20000]    offered load for the latency runs
#   BENCH_SERVER_CPU [0] / BENCH_CLIENT_CPU [1]   taskset CPUs
#   BENCH_NO_INSTALL [0]     1 = never call apt-get (fail if something is missing)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
LOGS=$OUT/logs
DATA=$OUT/data
RUN=$OUT/run

SMOKE=${BENCH_SMOKE:-0}
SECS=${BENCH_SECONDS:-5}
REPS=${BENCH_REPS:-3}
if [[ $SMOKE == 1 ]]; then SECS=1; REPS=1; fi
SERVERS=(${BENCH_SERVERS:-kubebridge dnsdist unbound dnsmasq})
PORT_BASE=${BENCH_PORT_BASE:-25300}
OUTSTANDING=${BENCH_OUTSTANDING:-200}
HOT=${BENCH_HOT_NAMES:-1000}
MISS_Q=${BENCH_MISS_OUTSTANDING:-100}
TCP_CONNS=${BENCH_TCP_CONNS:-20}
MEMN=${BENCH_MEM_NAMES:-100000}
LATQPS=${BENCH_LAT_QPS:-20000}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
NO_INSTALL=${BENCH_NO_INSTALL:-0}
DNSMASQ_CACHE=10000
ZONE_NAMES=100000

P_KNOT=$PORT_BASE
declare -A PORT=([floor]=$((PORT_BASE + 1)) [kubebridge]=$((PORT_BASE + 2)) [dnsdist]=$((PORT_BASE + 3))
                 [unbound]=$((PORT_BASE + 4)) [dnsmasq]=$((PORT_BASE + 5)))
declare -A PID=() CPUOF=()
STARTED=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- clean-up: kill what we started
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${STARTED[@]}"; do
        pkill -TERM -P "$p" 2>/dev/null || true    # dnsmasq's forked TCP children
        kill -TERM "$p" 2>/dev/null || true
    done
    for _ in $(seq 1 30); do
        local alive=0
        for p in "${STARTED[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. tools
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have dnsperf || need_pkgs+=(dnsperf)
have dnsdist || need_pkgs+=(dnsdist)
have unbound || need_pkgs+=(unbound)
have dnsmasq || need_pkgs+=(dnsmasq-base)
have knotd || need_pkgs+=(knot)
have kdig || need_pkgs+=(knot-dnsutils)
have gcc || need_pkgs+=(gcc)
have taskset || need_pkgs+=(util-linux)
have python3 || need_pkgs+=(python3)
have ss || need_pkgs+=(iproute2)
dpkg -s libevent-dev >/dev/null 2>&1 || need_pkgs+=(libevent-dev)
if ((${#need_pkgs[@]})); then
    [[ $NO_INSTALL == 1 ]] && die "missing packages: ${need_pkgs[*]} (BENCH_NO_INSTALL=1)"
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${need_pkgs[@]}" >"$HERE/.apt.log" 2>&1; then
        apt-get update >>"$HERE/.apt.log" 2>&1 || true
        apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>"$HERE/.apt.log" 2>&1 \
            || { tail -20 "$HERE/.apt.log" >&2; die "apt-get install failed"; }
    fi
    rm -f "$HERE/.apt.log"
fi
# Debian's postinst may start the packaged daemons; they use their own ports (53), not ours.

mkdir -p "$OUT"
rm -rf "$LOGS" "$DATA" "$RUN"
mkdir -p "$LOGS" "$DATA" "$RUN/knot/db" "$RUN/knot/zones" "$RUN/knot/run" "$RUN/unbound"

log "building floor and blast"
FLOOR=$OUT/kbbench-floor   # distinctive names: a neighbour's `pkill floor` must not hit ours
BLAST=$OUT/kbbench-blast
gcc -O2 -Wall -o "$FLOOR" "$HERE/floor.c"
gcc -O2 -Wall -o "$BLAST" "$HERE/blast.c"

# ---------------------------------------------------------------- 2. kubebridge
if [[ " ${SERVERS[*]} " == *" kubebridge "* ]]; then
    if [[ -z ${KUBEBRIDGE:-} ]]; then
        log "swift build -c release (log: bench/out/logs/swift-build.log)"
        (cd "$ROOT" && timeout 1800 swift build -c release) >"$LOGS/swift-build.log" 2>&1 \
            || { tail -30 "$LOGS/swift-build.log" >&2; die "swift build -c release failed (set KUBEBRIDGE=path to use an existing binary)"; }
        KUBEBRIDGE=$ROOT/.build/release/kubebridge
    fi
    [[ -x $KUBEBRIDGE ]] || die "KUBEBRIDGE=$KUBEBRIDGE is not an executable"
fi

# ---------------------------------------------------------------- 3. machine and ports
NCPU=$(nproc)
if ((NCPU < 2)); then
    log "WARNING: only $NCPU CPU: no pinning, numbers are not comparable with 2-CPU runs"
    pin_c() { "$@"; }
else
    pin_c() { taskset -c "$CCPU" "$@"; }
fi
for p in "$P_KNOT" "${PORT[@]}"; do
    if ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; then
        die "port $p is in use on this machine; set BENCH_PORT_BASE to a free range"
    fi
done

# ---------------------------------------------------------------- 4. zones and query files
log "generating zones (bench.test: $ZONE_NAMES names + wildcard, cluster.local) and query files"
{
    printf '$ORIGIN bench.test.\n$TTL 3600\n'
    printf '@ SOA ns.bench.test. hostmaster.bench.test. 1 7200 1800 86400 3600\n@ NS ns\nns A 127.0.0.1\n'
    printf '* A 10.255.255.254\n'
    awk -v n="$ZONE_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "n%d A 10.%d.%d.%d\n", i, int(i/65536)%256, int(i/256)%256, i%256 }'
} >"$RUN/knot/zones/bench.test.zone"
{
    printf '$ORIGIN cluster.local.\n$TTL 30\n'
    printf '@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30\n@ NS ns.dns\nns.dns A 127.0.0.1\n'
    awk 'BEGIN { for (i = 0; i < 1000; i++) printf "svc%d.default.svc A 10.96.%d.%d\n", i, int(i/256), i%256 }'
} >"$RUN/knot/zones/cluster.local.zone"

# names n<first>..n<first+count-1>.bench.test, dnsperf format
names() { awk -v a="$1" -v n="$2" 'BEGIN { for (i = a; i < a + n; i++) printf "n%d.bench.test A\n", i }'; }
names 0 "$HOT" >"$DATA/hot.txt"
MEM_FIRST=200000                  # memory phase: n200000 .. (fits in the 100k explicit records' wildcard space)
MISS_RANGE=$((SECS * 150000))     # per (server, rep): more than any server can answer in SECS
MISS_FIRST=1000000

cat >"$RUN/knot/knot.conf" <<EOF
server:
    rundir: "$RUN/knot/run"
    user: root:root
    listen: 127.0.0.1@$P_KNOT
    udp-workers: 2
    tcp-workers: 2
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$RUN/knot/db"
template:
  - id: default
    storage: "$RUN/knot/zones"
    file: "%s.zone"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: bench.test
  - domain: cluster.local
EOF

# ---------------------------------------------------------------- 5. server configurations
cat >"$RUN/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:${PORT[dnsdist]}")
setUDPMultipleMessagesVectorSize(32)
newServer({address="127.0.0.1:$P_KNOT", name="knot", checkName="bench.test.", checkInterval=5})
pc = newPacketCache(2000000, {maxTTL=86400, minTTL=0, temporaryFailureTTL=60, staleTTL=60, dontAge=false})
getPool(""):setCache(pc)
EOF

cat >"$RUN/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: ${PORT[unbound]}
    num-threads: 1
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$RUN/unbound"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    qname-minimisation: no
    msg-cache-size: 512m
    rrset-cache-size: 1024m
    num-queries-per-thread: 4096
    outgoing-range: 8192
    incoming-num-tcp: 64
    prefetch: no
    private-domain: "bench.test"
    private-domain: "cluster.local"
    domain-insecure: "bench.test"
    domain-insecure: "cluster.local"
    local-zone: "test." nodefault
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$P_KNOT
EOF
unbound-checkconf "$RUN/unbound.conf" >"$LOGS/unbound-checkconf.log" 2>&1 \
    || { cat "$LOGS/unbound-checkconf.log" >&2; die "unbound config rejected"; }

# ---------------------------------------------------------------- 6. start everything
start() {   # start NAME CPU CMD...   (taskset execs CMD, so $! is the server's own pid)
    local name=$1 cpu=$2; shift 2
    if ((NCPU >= 2)); then set -- taskset -c "$cpu" "$@"; fi
    echo "$name: $*" >>"$OUT/commands.txt"
    "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
    CPUOF[$name]=$cpu
    STARTED+=("$!")
}
# Pins every thread of a started process to its CPU again. Knot pins its UDP workers to CPUs
# by itself (one of them landed on the server CPU and was charged to every server's misses
# before this existed); taskset at exec time only sets the starting mask.
repin() {
    local name=$1 t
    ((NCPU >= 2)) || return 0
    for t in /proc/"${PID[$name]}"/task/*; do taskset -p -c "${CPUOF[$name]}" "${t##*/}" >/dev/null 2>&1 || true; done
}
q_ok() {    # q_ok PORT NAME [kdig opts]: true when NAME has an A answer
    local port=$1 name=$2; shift 2
    timeout 5 kdig @127.0.0.1 -p "$port" "$name" A +short +timeout=1 +retry=0 "$@" 2>/dev/null | grep -q '^10\.'
}
wait_ready() {
    local name=$1 port=$2 i
    for i in $(seq 1 100); do
        kill -0 "${PID[$name]}" 2>/dev/null || { tail -20 "$LOGS/$name.log" >&2; die "$name exited during start-up"; }
        if [[ $name == floor ]]; then
            pin_c timeout 5 "$BLAST" 127.0.0.1 "$port" "$DATA/hot.txt" 0.2 1 1 1 2>/dev/null | grep -q 'answered [1-9]' && return 0
        else
            timeout 5 kdig @127.0.0.1 -p "$port" bench.test SOA +short +timeout=1 +retry=0 2>/dev/null | grep -q 'hostmaster' && { repin "$name"; return 0; }
        fi
        sleep 0.2
    done
    tail -20 "$LOGS/$name.log" >&2
    die "$name did not answer on 127.0.0.1:$port within 20 s"
}

: >"$OUT/commands.txt"
log "starting knotd on 127.0.0.1:$P_KNOT (CPU $CCPU)"
start knot "$CCPU" knotd -c "$RUN/knot/knot.conf"
wait_ready knot "$P_KNOT"

start floor "$SCPU" "$FLOOR" 127.0.0.1 "${PORT[floor]}" 64
for s in "${SERVERS[@]}"; do
    case $s in
    kubebridge)
        start kubebridge "$SCPU" "$KUBEBRIDGE" dns --listen "127.0.0.1:${PORT[kubebridge]}" \
            --upstream "127.0.0.1:$P_KNOT" --cluster-dns "127.0.0.1:$P_KNOT" --threads 1 --cache-size 256MiB ;;
    dnsdist)
        start dnsdist "$SCPU" dnsdist --supervised --disable-syslog -C "$RUN/dnsdist.conf" ;;
    unbound)
        start unbound "$SCPU" unbound -d -c "$RUN/unbound.conf" ;;
    dnsmasq)
        start dnsmasq "$SCPU" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
            --server="127.0.0.1#$P_KNOT" --listen-address=127.0.0.1 --bind-interfaces --port="${PORT[dnsmasq]}" \
            --cache-size=$DNSMASQ_CACHE --user=root --group=root --pid-file="$RUN/dnsmasq.pid" --log-facility=- ;;
    *) die "unknown server '$s' in BENCH_SERVERS" ;;
    esac
done
ALL=(floor "${SERVERS[@]}")
for s in "${ALL[@]}"; do wait_ready "$s" "${PORT[$s]}"; done
log "all up: $(for s in "${ALL[@]}"; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"

# ---------------------------------------------------------------- 7. versions
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
    if [[ -n ${PID[kubebridge]:-} ]]; then
        echo "kubebridge: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' + uncommitted changes') ($KUBEBRIDGE)"
    fi
    echo "dnsdist: $(dnsdist --version 2>/dev/null | head -1)"
    echo "unbound: $(unbound -V 2>/dev/null | head -1)"
    echo "dnsmasq: $(dnsmasq --version 2>/dev/null | head -1)"
    echo "knotd: $(knotd -V 2>/dev/null | head -1)"
    echo "dnsperf: $(dnsperf -h 2>&1 | grep -m1 Version)"
    echo "settings: BENCH_SECONDS=$SECS BENCH_REPS=$REPS BENCH_OUTSTANDING=$OUTSTANDING BENCH_HOT_NAMES=$HOT BENCH_MISS_OUTSTANDING=$MISS_Q BENCH_TCP_CONNS=$TCP_CONNS BENCH_MEM_NAMES=$MEMN BENCH_LAT_QPS=$LATQPS servers on CPU $SCPU, clients+knot on CPU $CCPU"
} >"$OUT/versions.txt"

# ---------------------------------------------------------------- 8. measurement helpers
TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || echo 0; }  # utime+stime+cutime+cstime
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
warm() {    # answer the hot set twice (fills caches, re-fills dnsmasq's LRU after the miss runs)
    pin_c timeout 30 dnsperf -s 127.0.0.1 -p "$1" -d "$DATA/hot.txt" -n 2 -q 50 -t 2 >/dev/null 2>&1 || true
}
RAW=$OUT/raw.tsv
printf 'rep\tserver\tworkload\tqps\tsent\tanswered\tlost\tcpu_s\tmean_us\tp50_us\tp99_us\twall_s\tscpu_busy_s\tccpu_busy_s\n' >"$RAW"
: >"$OUT/problems.txt"
# busy seconds (user+nice+system+irq+softirq+steal) of one CPU so far, from /proc/stat
cpu_busy() { awk -v c="cpu$1" -v t="$TCK" '$1 == c {printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / t}' /proc/stat; }

# run_load REP SERVER WORKLOAD TOOL ARGS...: run one measured load, append a row to raw.tsv
run_load() {
    local rep=$1 srv=$2 wl=$3; shift 3
    local pid=${PID[$srv]} f="$LOGS/rep$rep-$wl-$srv.txt"
    echo "$wl/$srv: $*" >>"$OUT/commands-loads.txt"
    local c0 c1 t0 rc=0
    if ! kill -0 "$pid" 2>/dev/null; then
        log "  $srv is not running: $wl rep $rep skipped"
        echo "rep $rep $wl: $srv was not running (exited earlier; see logs/$srv.log)" >>"$OUT/problems.txt"
        return 0
    fi
    local w0 w1 s0 s1 k0 k1
    c0=$(cpu_ticks "$pid"); s0=$(cpu_busy "$SCPU"); k0=$(cpu_busy "$CCPU"); w0=$(date +%s.%N)
    pin_c timeout $((SECS + 20)) "$@" >"$f" 2>&1 || rc=$?
    w1=$(date +%s.%N); s1=$(cpu_busy "$SCPU"); k1=$(cpu_busy "$CCPU")
    sleep 0.3
    c1=$(cpu_ticks "$pid")
    local wall sbusy cbusy
    wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')
    sbusy=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", b - a }')
    cbusy=$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.3f", b - a }')
    local cpu; cpu=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN { printf "%.3f", (b - a) / t }')
    local qps sent ans lost mean p50 p99
    if grep -q '^blast:' "$f"; then
        read -r sent ans lost < <(awk '/^blast:/ {print $3, $5, $7}' "$f") || true
        qps=$(awk '/^Queries per second:/ {print $4}' "$f")
        read -r mean p50 p99 < <(awk '/^Latency us:/ {print $4, $6, $8}' "$f") || true
    elif grep -q 'Queries completed' "$f"; then
        sent=$(awk '/Queries sent:/ {print $3}' "$f")
        ans=$(awk '/Queries completed:/ {print $3}' "$f")
        lost=$(awk '/Queries lost:/ {print $3}' "$f")
        qps=$(awk '/Queries per second:/ {print $4}' "$f")
        mean=$(awk '/Average Latency/ {printf "%.0f", $4 * 1e6}' "$f"); p50=""; p99=""
    else
        log "  $wl/$srv: no result (rc=$rc), see $f"
        sent=0 ans=0 lost=0 qps=0 mean="" p50="" p99=""
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$srv" "$wl" "${qps:-0}" "${sent:-0}" "${ans:-0}" "${lost:-0}" \
        "$cpu" "${mean:-}" "${p50:-}" "${p99:-}" "$wall" "$sbusy" "$cbusy" >>"$RAW"
    log "  rep $rep $wl $srv: ${qps%.*} qps, lost ${lost:-0}, server cpu ${cpu}s, cpu$SCPU busy ${sbusy}s, cpu$CCPU busy ${cbusy}s in ${wall}s${p50:+, p50 ${p50} us}"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "  WARNING: $srv died during $wl (see $LOGS/$srv.log)"
        echo "rep $rep $wl: $srv died during the run (see logs/$srv.log)" >>"$OUT/problems.txt"
    fi
    if [[ ${lost:-0} != 0 ]]; then echo "rep $rep $wl: $srv lost ${lost} of ${sent:-?} queries (logs/rep$rep-$wl-$srv.txt)" >>"$OUT/problems.txt"; fi
}

# ---------------------------------------------------------------- 9. smoke mode
if [[ $SMOKE == 1 ]]; then
    fail=0
    : >"$OUT/commands-loads.txt"
    printf '| server | port | UDP A | TCP A | cluster.local A | 1 s hit load (qps, lost) |\n|---|---|---|---|---|---|\n' >"$OUT/smoke.md"
    for s in "${ALL[@]}"; do
        u=- t=- c=-
        if [[ $s != floor ]]; then
            q_ok "${PORT[$s]}" n1.bench.test && u=ok || { u=FAIL; fail=1; }
            q_ok "${PORT[$s]}" n2.bench.test +tcp && t=ok || { t=FAIL; fail=1; }
            q_ok "${PORT[$s]}" svc1.default.svc.cluster.local && c=ok || { c=FAIL; fail=1; }
            warm "${PORT[$s]}"
        fi
        run_load 1 "$s" udp-hit "$BLAST" 127.0.0.1 "${PORT[$s]}" "$DATA/hot.txt" 1 "$OUTSTANDING" 4 32
        read -r qps lost < <(awk -F'\t' -v s="$s" '$2 == s {print $4, $7}' "$RAW" | tail -1) || true
        awk -v q="$qps" 'BEGIN { exit !(q > 0) }' || fail=1
        kill -0 "${PID[$s]}" 2>/dev/null || { fail=1; qps="$qps (DIED)"; }
        printf '| %s | %s | %s | %s | %s | %s, %s |\n' "$s" "${PORT[$s]}" "$u" "$t" "$c" "$qps" "$lost" >>"$OUT/smoke.md"
    done
    cat "$OUT/smoke.md"
    if [[ $fail == 0 ]]; then log "smoke: all servers answer"; else log "smoke: FAILED"; fi
    exit "$fail"
fi

# ---------------------------------------------------------------- 10. memory per cached answer
: >"$OUT/commands-loads.txt"
MEM=$OUT/mem.tsv
printf 'server\trss_start_kb\trss_before_kb\trss_after_kb\tnames\tanswered\n' >"$MEM"
for s in "${SERVERS[@]}"; do
    rs=$(rss_kb "${PID[$s]}")
    warm "${PORT[$s]}"
    n=$MEMN
    [[ $s == dnsmasq ]] && ((n > DNSMASQ_CACHE - HOT - 500)) && n=$((DNSMASQ_CACHE - HOT - 500))   # must fit its cache
    names "$MEM_FIRST" "$n" >"$DATA/mem.txt"
    sleep 0.5
    r0=$(rss_kb "${PID[$s]}")
    pin_c timeout 300 dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$DATA/mem.txt" -n 1 -q "$MISS_Q" -t 2 >"$LOGS/mem-$s.txt" 2>&1 || true
    echo "memory/$s: dnsperf -s 127.0.0.1 -p ${PORT[$s]} -d mem.txt($n names) -n 1 -q $MISS_Q -t 2" >>"$OUT/commands-loads.txt"
    sleep 1
    r1=$(rss_kb "${PID[$s]}")
    a=$(awk '/Queries completed:/ {print $3}' "$LOGS/mem-$s.txt"); a=${a:-0}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$rs" "$r0" "$r1" "$n" "$a" >>"$MEM"
    log "memory $s: RSS ${r0} kB -> ${r1} kB after $a/$n distinct names"
done
rm -f "$DATA/mem.txt"

# ---------------------------------------------------------------- 11. interleaved reps
for s in "${SERVERS[@]}"; do warm "${PORT[$s]}"; done
for rep in $(seq 1 "$REPS"); do
    log "rep $rep/$REPS"
    # 1. UDP cache hits (and the echo floor), closed loop, batched client
    for s in "${ALL[@]}"; do
        [[ $s != floor ]] && warm "${PORT[$s]}"
        run_load "$rep" "$s" udp-hit "$BLAST" 127.0.0.1 "${PORT[$s]}" "$DATA/hot.txt" "$SECS" "$OUTSTANDING" 4 32
    done
    # 2. UDP cache misses: a fresh range of names per server and rep
    i=0
    for s in "${SERVERS[@]}"; do
        first=$((MISS_FIRST + ((rep - 1) * 8 + i) * MISS_RANGE)); i=$((i + 1))
        names "$first" "$MISS_RANGE" >"$DATA/miss.txt"
        run_load "$rep" "$s" udp-miss dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$DATA/miss.txt" -l "$SECS" -n 1 -q "$MISS_Q" -t 2
    done
    rm -f "$DATA/miss.txt"
    # 3. TCP cache hits over persistent connections
    for s in "${SERVERS[@]}"; do
        warm "${PORT[$s]}"
        run_load "$rep" "$s" tcp-hit dnsperf -m tcp -s 127.0.0.1 -p "${PORT[$s]}" -d "$DATA/hot.txt" -l "$SECS" -c "$TCP_CONNS" -q 200 -t 2
    done
    # 4. latency of hits at a fixed offered load
    for s in "${ALL[@]}"; do
        [[ $s != floor ]] && warm "${PORT[$s]}"
        run_load "$rep" "$s" latency "$BLAST" 127.0.0.1 "${PORT[$s]}" "$DATA/hot.txt" "$SECS" "$OUTSTANDING" 4 8 "$LATQPS"
    done
done

# ---------------------------------------------------------------- 12. health and report
HEALTH=$OUT/health.tsv
printf 'server\talive\tlog_lines\terror_lines\n' >"$HEALTH"
for s in "${ALL[@]}"; do
    alive=no; kill -0 "${PID[$s]}" 2>/dev/null && alive=yes
    printf '%s\t%s\t%s\t%s\n' "$s" "$alive" "$(wc -l <"$LOGS/$s.log")" \
        "$(grep -ciE 'error|fatal|crash|assert|panic|warn' "$LOGS/$s.log" || true)" >>"$HEALTH"
done
python3 "$HERE/report.py" "$OUT" | tee "$OUT/results.md"
log "done: bench/out/results.md (raw: bench/out/raw.tsv, logs: bench/out/logs/)"
