#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (ASan + SanitizerCoverage) and runs one of them.
#
#   scripts/fuzz.sh TARGET [RUNS] [libFuzzer flags...]   run TARGET for RUNS executions (default 1000000)
#   scripts/fuzz.sh all [RUNS]                           every target in turn, one at a time
#   scripts/fuzz.sh merge TARGET                         run, then minimise the new corpus into Fuzz/Corpus/TARGET
#   scripts/fuzz.sh build                                build only
#   scripts/fuzz.sh replay TARGET FILE...                run the given inputs once (e.g. a crash artifact)
#
# TARGET: query response forwarder cache config netlink
#
# The committed corpus Fuzz/Corpus/TARGET is copied into a scratch directory that the
# fuzzer grows; the committed seed folders are passed read-only next to it. Crash
# artifacts go to a temporary directory whose path is printed. The last lines of output
# are libFuzzer's summary (cov:, ft:, exec/s). See Fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export SWIFT_BACKTRACE=enable=no   # let libFuzzer/ASan report crashes, not Swift's backtracer
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

targets=(query response forwarder cache config netlink)

product() {
    case $1 in
        query) echo FuzzQuery ;; response) echo FuzzResponse ;; forwarder) echo FuzzForwarder ;;
        cache) echo FuzzCache ;; config) echo FuzzConfig ;; netlink) echo FuzzNetlink ;;
        *) echo "unknown target '$1' (one of: ${targets[*]})" >&2; exit 2 ;;
    esac
}

# Read-only seed folders and per-target flags.
seed_dirs() {
    case $1 in
        query|response) echo "$ROOT/Tests/DNSWireTests/Seeds" ;;
        netlink) echo "$ROOT/Tests/RouteHelperTests/Seeds" ;;
        config) echo "$ROOT/Tests/KubebridgeConfigTests/Seeds" ;;
        *) ;;
    esac
}
target_flags() {
    case $1 in
        query|response) echo "-dict=$ROOT/Fuzz/Dictionaries/dns.dict" ;;
        forwarder) echo "-dict=$ROOT/Fuzz/Dictionaries/dns.dict -max_len=2048" ;;
        config) echo "-dict=$ROOT/Fuzz/Dictionaries/config.dict -max_len=2048" ;;
        cache) echo "-max_len=2048" ;;
        netlink) echo "" ;;
    esac
}

build() {
    swift build -c release --package-path Fuzz --scratch-path Fuzz/.build \
        -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -v "^warning: 'kubebridge-fuzz'" | tail -3
}

run() {
    local t=$1 runs=$2; shift 2
    local bin="$ROOT/Fuzz/.build/release/$(product "$t")"
    local work art
    work=$(mktemp -d "/tmp/kubebridge-fuzz-$t-corpus.XXXXXX")
    art=$(mktemp -d "/tmp/kubebridge-fuzz-$t-artifacts.XXXXXX")
    mkdir -p "$ROOT/Fuzz/Corpus/$t"
    cp -r "$ROOT/Fuzz/Corpus/$t/." "$work/" 2>/dev/null || true
    echo "== $t: $runs runs; corpus $work; artifacts $art; $(date -u +%Y-%m-%dT%H:%MZ)"
    local start=$SECONDS rc=0
    # shellcheck disable=SC2046
    "$bin" -runs="$runs" -artifact_prefix="$art/" -print_final_stats=1 $(target_flags "$t") "$@" \
        "$work" $(seed_dirs "$t") 2>&1 | grep --line-buffered -v -E '^#[0-9]+\s+(NEW|REDUCE)' || rc=${PIPESTATUS[0]}
    echo "== $t: exit $rc after $((SECONDS - start)) s; corpus $(ls "$work" | wc -l) files; artifacts: $(ls "$art" | wc -l)"
    LAST_WORK=$work
    return "$rc"
}

merge() {
    local t=$1
    local bin="$ROOT/Fuzz/.build/release/$(product "$t")"
    local fresh
    fresh=$(mktemp -d "/tmp/kubebridge-fuzz-$t-merged.XXXXXX")
    # shellcheck disable=SC2046
    # -set_cover_merge keeps a small set (a few hundred files at most) with every feature.
    "$bin" -set_cover_merge=1 $(target_flags "$t") "$fresh" "$ROOT/Fuzz/Corpus/$t" "$LAST_WORK" 2>&1 | tail -2
    rm -rf "$ROOT/Fuzz/Corpus/$t"
    mkdir -p "$ROOT/Fuzz/Corpus/$t"
    cp "$fresh"/* "$ROOT/Fuzz/Corpus/$t/"
    # Seeds written by Fuzz/Seeds/make_forwarder_seeds.py keep their names.
    if [ "$t" = forwarder ]; then python3 "$ROOT/Fuzz/Seeds/make_forwarder_seeds.py" "$ROOT/Fuzz/Corpus/forwarder" >/dev/null; fi
    echo "== $t: Fuzz/Corpus/$t now holds $(ls "$ROOT/Fuzz/Corpus/$t" | wc -l) files"
}

cmd=${1:-}
case $cmd in
    ""|-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    build) build ;;
    replay)
        shift; t=$1; shift
        build
        "$ROOT/Fuzz/.build/release/$(product "$t")" "$@" ;;
    merge)
        t=$2; product "$t" >/dev/null
        build
        run "$t" "${3:-1000000}"
        merge "$t" ;;
    all)
        runs=${2:-1000000}
        build
        status=0
        for t in "${targets[@]}"; do run "$t" "$runs" || status=1; done
        exit $status ;;
    *)
        t=$1; product "$t" >/dev/null; shift
        runs=${1:-1000000}; [ $# -gt 0 ] && shift
        build
        run "$t" "$runs" "$@" ;;
esac
